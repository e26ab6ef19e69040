"""``tuning.workers`` means what it says locally: W workers run, though kfp.local runs 2 tasks at once.

Locally ``prepare`` lists at most 2 tune tasks and each runs every 2nd worker index in
its own thread and trial process; on a cluster each worker is its own task (pod).
"""

from __future__ import annotations

import threading

import optuna
import pytest

from driftlab import stages
from driftlab.config import load_config_text
from driftlab.tuning.study import load_study

CONFIG = """\
name: workers
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 8}}
search_space: {learning_rate: {type: float, low: 0.001, high: 0.01, log: true}}
tuning: {trials: 6, workers: 3, seed: 0, sampler: random}
seeds: {init: [0], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""


def _config(workers: int):
    return load_config_text(CONFIG.replace("workers: 3", f"workers: {workers}"), "experiment")


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 5, 8])
def test_local_tasks_cover_every_worker_once(workers, monkeypatch):
    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    config = _config(workers)
    tasks = stages._tune_tasks(config)
    assert len(tasks) == min(workers, stages.LOCAL_LOOP_CONCURRENCY)
    indices = [i for t in tasks for i in stages.tune_worker_indices(config, t)]
    assert sorted(indices) == list(range(workers)), "each tuning worker runs exactly once"


def test_on_a_cluster_each_worker_is_its_own_task(monkeypatch):
    monkeypatch.setenv("DRIFTLAB_WHERE", "cluster")
    config = _config(5)
    assert stages._tune_tasks(config) == [0, 1, 2, 3, 4]
    assert [stages.tune_worker_indices(config, t) for t in range(5)] == [[0], [1], [2], [3], [4]]


@pytest.mark.slow
def test_three_workers_run_at_once_on_two_local_tasks(home, capfd):
    plan = stages.prepare(CONFIG, "w")
    assert plan["workers"] == [0, 1], "kfp.local runs two tune tasks at once"
    ran = {}
    threads = [threading.Thread(target=lambda t=t: ran.__setitem__(t, stages.tune(CONFIG, "w", t))) for t in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    study = load_study(_config(3), "w")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 6 and sum(ran.values()) == 6, "the budget is exact"
    assert {t.user_attrs["worker"] for t in done} == {0, 1, 2}, "all three tuning workers ran trials"
    err = capfd.readouterr().err
    assert "tune task 0: tuning worker(s) 0, 2 of 3" in err and "tune task 1: tuning worker(s) 1 of 3" in err
