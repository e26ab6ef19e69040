"""The results database: engines and retries, the results store, campaigns."""
