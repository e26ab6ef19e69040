"""The results database: engines and retries, the results store, campaigns."""

from driftlab.storage.secret_env import adopt_handed_over

adopt_handed_over()  # in a task started by `driftlab run`, the database credentials arrive by pipe
