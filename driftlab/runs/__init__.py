"""One training run and what executes it: specs, data, models, training, worker processes, the executor, fingerprints, progress."""
