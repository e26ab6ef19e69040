"""Tuning trials trained in a worker process that holds no database credential.

The tune stage keeps the study (and so the database URL); each trial's model is built
and trained by a ``driftlab.runs.worker`` process started with the reference profile's
knobs and an environment without any credential (``storage.secret_env``). After each
epoch the worker reports the validation metric and waits: the stage reports it to the
trial and answers go or stop, so the pruner decides where the study is. A trial that
exceeds its time limit (``model.run_timeout_s``, see ``runs.timeouts``) fails with the
reason and the next trial gets a fresh worker.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import optuna

from driftlab.config import ExperimentConfig, ProfileConfig
from driftlab.runs.executor import RunTimedOut, Worker, WorkerDied
from driftlab.runs.spec import RunSpec
from driftlab.runs.timeouts import RunTimeout
from driftlab.tuning.search import suggest

SpecFor = Callable[[dict], RunSpec]


class TrialWorker:
    """One worker process for the trials of one tuning worker; restarted after a timeout or a crash."""

    def __init__(self, profile: ProfileConfig, index: int, log_dir: str | None):
        self.profile, self.index, self.log_dir = profile, index, log_dir
        self.worker: Worker | None = None

    def run(self, spec: RunSpec, timeout: RunTimeout, on_epoch) -> dict:
        if self.worker is None:
            log = os.path.join(self.log_dir, f"worker-tune-{os.getpid()}-{self.index}.log") if self.log_dir else None
            self.worker = Worker(self.profile, log, index=self.index)
        try:
            return self.worker.run(spec, timeout_s=timeout.seconds(), on_epoch=on_epoch)
        except (RunTimedOut, WorkerDied):
            self.close()
            raise

    def close(self) -> None:
        if self.worker is not None:
            self.worker.close()
            self.worker = None


def keras_objective(config: ExperimentConfig, worker: TrialWorker, spec_for: SpecFor,
                    timeout: RunTimeout) -> Callable[[optuna.Trial], float]:
    """The objective of one tuning worker: suggest, train in ``worker``, return the validation metric.

    ``spec_for(hparams)`` makes the trial's run spec (the seed plan's first point on
    the reference profile). A run that fails raises, so the trial is FAIL with the
    error; a run the pruner stopped raises ``TrialPruned``.
    """
    metric = config.metric

    def objective(trial: optuna.Trial) -> float:
        spec = spec_for(suggest(trial, config))

        def on_epoch(epoch: int, values: dict[str, float]) -> str | None:
            trial.report(values[metric], epoch)
            return f"pruned at epoch {epoch + 1}" if trial.should_prune() else None

        try:
            record = worker.run(spec, timeout, on_epoch)
        except RunTimedOut as exc:
            raise RuntimeError(timeout.explain(exc.seconds)) from None
        if record["status"] == "stopped":
            raise optuna.TrialPruned(record.get("error") or "pruned")
        if record["status"] != "ok":
            raise RuntimeError(record["error"])
        timeout.observe(record.get("timings", {}).get("total_s", 0.0))
        trial.set_user_attr("eval_" + metric, record["metrics"][f"eval_{metric}"])
        trial.set_user_attr("run_key", spec.key)
        timings = record.get("timings", {})
        trial.set_user_attr("train_s", round(float(timings.get("fit_s", 0.0)) + float(timings.get("predict_s", 0.0)), 4))
        return float(record["metrics"][f"val_{metric}"])

    return objective
