"""A run that hangs becomes one failed run within its time limit; the rest of the campaign completes.

The hanging builder is written the way such a bug looks in user code: it blocks
(here: forever, the first time it is called, marked by a file) and never returns.
The control: without a limit the same run is still hanging long after the limit.
"""

from __future__ import annotations

import os
import time

import optuna
import pytest

from driftlab.config import ExperimentConfig, ProfileConfig
from driftlab.runs.executor import RunTimedOut, Worker, execute
from driftlab.runs.timeouts import BASE_S, FLOOR_S, PER_EPOCH_S, SLOWER_THAN_SEEN, RunTimeout
from driftlab.storage.store import Store
from driftlab.tuning.trial_worker import TrialWorker, keras_objective
from support.factories import trainable_spec
from support.faults import figure

HANGS_ONCE = '''
import os, time


def build(hparams, *, n_features, n_outputs, task):
    import keras

    marker = os.environ["HANG_MARKER"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        while True:
            time.sleep(3600)
    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(hparams["units"], activation="relu"),
                             keras.layers.Dense(n_outputs, activation="softmax")])
'''
LIMIT_S = 15.0  # a 1-epoch digits run takes about 2 s once its worker is up
DEFAULT = ProfileConfig(name="cpu-default")


@pytest.fixture
def hanging_builder(tmp_path, monkeypatch):
    (tmp_path / "hangs.py").write_text(HANGS_ONCE)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.setenv("HANG_MARKER", str(tmp_path / "hung-once"))
    return "hangs:build"


def test_the_limit_is_derived_from_epochs_then_from_runs_seen():
    clock = RunTimeout(None, epochs=10)
    assert clock.seconds() == BASE_S + 10 * PER_EPOCH_S
    clock.observe(2.0)
    assert clock.seconds() == FLOOR_S, "fast runs: never below the floor"
    clock.observe(100.0)
    assert clock.seconds() == min(BASE_S + 10 * PER_EPOCH_S, SLOWER_THAN_SEEN * 100.0)
    assert RunTimeout(7.5, epochs=10).seconds() == 7.5, "model.run_timeout_s wins"
    assert "model.run_timeout_s" in RunTimeout(7.5, 1).explain(7.5)


@pytest.mark.slow
def test_a_hanging_run_fails_within_its_limit_and_the_rest_completes(hanging_builder, tmp_path, request):
    row = figure(request, "user builder that hangs forever (per-run timeout)", cases=1)
    specs = [trainable_spec(DEFAULT, builder=hanging_builder, hparams={"units": 8}, init_seed=i, epochs=1)
             for i in range(3)]
    store = Store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    exp = store.experiment_id("exec")
    t0 = time.monotonic()
    summary = execute(specs, DEFAULT, store, exp, jobs=1, run_timeout_s=LIMIT_S)
    seconds = time.monotonic() - t0
    assert (summary.trained, summary.failed) == (2, 1), summary
    assert f"run timed out after {LIMIT_S:.0f} s (model.run_timeout_s)" in summary.errors[0]
    assert "worker was stopped and replaced" in summary.errors[0]
    assert seconds < LIMIT_S + 120, "the hang cost its limit, not the campaign"
    statuses = sorted(r["status"] for r in store.load_runs("exec"))
    assert statuses == ["failed", "ok", "ok"], "every planned run recorded once"
    row.update(lost=0, duplicates=0, wasted=0, recover_s=round(seconds, 1),
               note=f"limit {LIMIT_S:g} s; 3 runs, 1 hung: campaign done in {seconds:.0f} s")


@pytest.mark.slow
def test_control_without_a_limit_the_run_is_still_hanging(hanging_builder):
    worker = Worker(DEFAULT)
    try:
        spec = trainable_spec(DEFAULT, builder=hanging_builder, hparams={"units": 8}, epochs=1)
        with pytest.raises(RunTimedOut):
            worker.run(spec, timeout_s=2 * LIMIT_S)  # twice the limit: still no answer
        assert worker.proc.wait(timeout=30) == -9, "the timed-out worker is killed, not left training"
    finally:
        worker.close()


@pytest.mark.slow
def test_a_hanging_trial_fails_and_the_study_completes(hanging_builder, tmp_path):
    config = ExperimentConfig.model_validate({
        "name": "hang", "dataset": {"name": "digits"},
        "model": {"builder": hanging_builder, "epochs": 1, "run_timeout_s": LIMIT_S, "hyperparameters": {"units": 8}},
        "search_space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.01}},
        "tuning": {"trials": 3}, "profiles": {"reference": "cpu-default", "pools": [{"name": "cpu-default"}]}})
    study = optuna.create_study(direction=config.direction)
    worker = TrialWorker(DEFAULT, 0, None)
    timeout = RunTimeout(config.model.run_timeout_s, config.model.epochs)

    def spec_for(params):
        return trainable_spec(DEFAULT, builder=hanging_builder, hparams={"units": 8, **params}, epochs=1)

    try:
        study.optimize(keras_objective(config, worker, spec_for, timeout), n_trials=3, catch=(RuntimeError,))
    finally:
        worker.close()
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 1 and states.count(optuna.trial.TrialState.COMPLETE) == 2


@pytest.mark.slow
def test_the_stage_prunes_a_trial_in_the_worker():
    """The pruner's decision travels to the worker: the run stops after the epoch it was pruned at."""
    config = ExperimentConfig.model_validate({
        "name": "prune", "dataset": {"name": "digits"}, "model": {"epochs": 4},
        "search_space": {"learning_rate": {"type": "float", "low": 0.001, "high": 0.01}}})

    class AlwaysPrune(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    study = optuna.create_study(direction=config.direction, pruner=AlwaysPrune())
    worker = TrialWorker(DEFAULT, 0, None)
    try:
        study.optimize(keras_objective(config, worker, lambda p: trainable_spec(DEFAULT, epochs=4),
                                       RunTimeout(None, 4)), n_trials=1)
        runs_before = worker.worker.runs
        never = study.ask()
        record = worker.run(trainable_spec(DEFAULT, epochs=2), RunTimeout(None, 2), lambda e, v: None)
        study.tell(never, record["metrics"]["val_accuracy"])
    finally:
        worker.close()
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED and list(trial.intermediate_values) == [0]
    assert record["status"] == "ok" and len(record["history"]["loss"]) == 2, \
        "control: without a stop the same worker trains every epoch"
    assert runs_before == 1
