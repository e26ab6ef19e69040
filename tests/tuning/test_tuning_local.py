"""Tuning on the embedded default (journal file): budget, failures, resume, samplers, pruners."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from driftlab import tuning
from driftlab.config import load_config_text
from support.tuning import cheap_objective, experiment_text, finish, start_workers


def _config(text: str):
    return load_config_text(text, "experiment")


def _run(config, campaign: str, worker: int = 0, **kwargs) -> int:
    return tuning.run_worker(config, campaign, worker, lambda t: cheap_objective(t, config), **kwargs)


def _states(config, campaign: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in tuning.load_study(config, campaign).get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_two_local_worker_processes_share_the_journal(home, tmp_path):
    text = experiment_text(16)
    config = _config(text)
    tuning.create_study(config, "two")
    (tmp_path / "experiment.yaml").write_text(text)
    env = {**os.environ, "DRIFTLAB_HOME": str(home), "PYTHONPATH": str(Path(__file__).parent)}
    env.pop("DRIFTLAB_DB_URL", None)
    results = finish(start_workers(tmp_path / "experiment.yaml", "two", 2, env, sleep=0.01, log_dir=tmp_path))
    assert _states(config, "two") == {"COMPLETE": 16}
    assert all(r["ran"] > 0 for r in results), results
    logs = (tmp_path / "worker0.err").read_text() + (tmp_path / "worker1.err").read_text()
    assert "database is locked" not in logs and "Traceback" not in logs


def test_a_trial_that_raises_is_fail_with_its_error_and_the_study_goes_on(home):
    config = _config(experiment_text(5))
    tuning.create_study(config, "raise")

    def objective(trial: optuna.Trial) -> float:
        if trial.number == 1:
            raise ValueError("loss became nan at epoch 3")
        return cheap_objective(trial, config)

    ran = tuning.run_worker(config, "raise", 0, objective)
    trials = tuning.load_study(config, "raise").get_trials(deepcopy=False)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [1]
    assert failed[0].user_attrs["error"] == "ValueError: loss became nan at epoch 3"
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 5 and ran == 6
    summary = tuning.best(config, "raise")
    assert summary["n_failed"] == 1
    assert [r["error"] for r in summary["trials"] if r["state"] == "FAIL"] == ["ValueError: loss became nan at epoch 3"]


def test_every_trial_failing_ends_the_study_instead_of_looping(home):
    config = _config(experiment_text(3))
    tuning.create_study(config, "allfail")

    def objective(trial: optuna.Trial) -> float:
        raise RuntimeError("broken model")

    ran = tuning.run_worker(config, "allfail", 0, objective)
    assert ran == 3 + tuning.budget.failure_limit(3)  # the 3 slots, then one replacement per failure up to the limit
    with pytest.raises(tuning.TuningError, match="no completed trial; errors: RuntimeError: broken model"):
        tuning.best(config, "allfail")


def test_rerun_resumes_the_study_and_never_exceeds_the_budget(home):
    config = _config(experiment_text(6))
    tuning.create_study(config, "resume")
    assert _run(config, "resume", max_trials=4) == 4  # a worker stopped early (pod preempted)
    first = {t.number: t.params for t in tuning.load_study(config, "resume").get_trials(deepcopy=False)
             if t.state == TrialState.COMPLETE}
    assert len(first) == 4

    tuning.create_study(config, "resume")  # the pipeline runs again with the same campaign
    assert _run(config, "resume") == 2
    after = {t.number: t for t in tuning.load_study(config, "resume").get_trials(deepcopy=False)}
    assert {n: after[n].params for n in first} == first  # kept, not redone
    assert _states(config, "resume") == {"COMPLETE": 6}

    tuning.create_study(config, "resume")  # and once more: nothing left to do
    assert _run(config, "resume") == 0 and _states(config, "resume") == {"COMPLETE": 6}


def test_rerun_reclaims_a_trial_left_running_by_a_dead_local_worker(home):
    config = _config(experiment_text(4))
    tuning.create_study(config, "orphan")
    study = tuning.load_study(config, "orphan")
    orphan = study.ask()  # takes a slot and never tells: the worker died
    tuning.suggest(orphan, config)

    tuning.create_study(config, "orphan")
    trial = study._storage.get_trial(orphan._trial_id)
    assert trial.state == TrialState.FAIL and trial.user_attrs["error"].startswith("abandoned")
    assert _run(config, "orphan") == 4
    assert _states(config, "orphan") == {"COMPLETE": 4, "FAIL": 1}


@pytest.mark.parametrize("sampler", ["tpe", "random", "cmaes", "grid"])
def test_each_sampler_meets_the_budget(home, sampler):
    config = _config(experiment_text(8, sampler=sampler, grid=sampler == "grid"))
    tuning.create_study(config, sampler)
    _run(config, sampler)
    trials = tuning.load_study(config, sampler).get_trials(deepcopy=False)
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 8
    points = {(t.params["x"], t.params["width"]) for t in trials}
    if sampler == "grid":
        # 5 x values times 3 widths = 15 points; 8 slots get 8 distinct ones.
        assert len(points) == 8 and {t.system_attrs["grid_id"] for t in trials} == set(range(8))
    else:
        assert len(points) >= 6, points  # a sampler, not a constant


def test_grid_budget_is_capped_by_the_grid_size(home):
    config = _config(experiment_text(50, sampler="grid", grid=True))
    assert tuning.effective_budget(config) == 15
    tuning.create_study(config, "gridall")
    _run(config, "gridall")
    trials = tuning.load_study(config, "gridall").get_trials(deepcopy=False)
    assert len({(t.params["x"], t.params["width"]) for t in trials}) == 15 == len(trials)


def test_seeded_tpe_is_reproducible_and_the_seed_matters(home):
    def proposals(seed: int, campaign: str) -> list[tuple]:
        config = _config(experiment_text(12, sampler="tpe", seed=seed))
        tuning.create_study(config, campaign)
        _run(config, campaign)
        return [(t.params["x"], t.params["width"]) for t in tuning.load_study(config, campaign).trials]

    first, again = proposals(3, "a"), proposals(3, "b")
    assert first == again
    assert proposals(4, "c") != first  # control: the seed really drives the proposals


@pytest.mark.parametrize("pruner", ["median", "hyperband"])
def test_pruner_prunes_bad_trials(home, pruner):
    config = _config(experiment_text(20, sampler="random", pruner=pruner, epochs=6))
    tuning.create_study(config, pruner)
    _run(config, pruner)
    states = _states(config, pruner)
    assert states.get("PRUNED", 0) >= 2, states
    assert states.get("COMPLETE", 0) + states.get("PRUNED", 0) == 20
    pruned = [t for t in tuning.load_study(config, pruner).trials if t.state == TrialState.PRUNED]
    assert all(max(t.intermediate_values) < config.model.epochs - 1 for t in pruned)  # stopped early


def test_without_a_pruner_nothing_is_pruned(home):
    config = _config(experiment_text(20, sampler="random", pruner="none", epochs=6))  # control for the above
    tuning.create_study(config, "nopr")
    _run(config, "nopr")
    assert _states(config, "nopr") == {"COMPLETE": 20}


def test_best_feeds_retraining_with_stability(home):
    config = _config(experiment_text(10))
    tuning.create_study(config, "best")
    _run(config, "best")
    summary = tuning.best(config, "best", top_k=4)
    values = sorted((t["value"] for t in summary["trials"] if t["state"] == "COMPLETE"), reverse=True)
    assert summary["best_value"] == values[0] and summary["top_k_values"] == values[:4]
    assert summary["top_k_spread"] == pytest.approx(values[0] - values[3], abs=1e-12)
    assert set(summary["best_params"]) == {"x", "width"}
    assert {"study", "best_trial", "n_complete", "n_pruned", "n_failed", "stability", "budget"} <= set(summary)


def test_worker_without_a_study_says_what_to_do(home):
    config = _config(experiment_text(3))
    with pytest.raises(tuning.TuningError, match="prepare stage creates it"):
        _run(config, "never-created")


def test_grid_float_without_step_is_refused_at_config_time():
    from driftlab.config import ConfigError

    with pytest.raises(ConfigError, match="sampler 'grid' needs every search_space parameter"):
        _config(experiment_text(3, sampler="grid"))


@pytest.mark.db
def test_pool_is_bounded_pre_pinged_and_the_password_never_logged(pg_url, monkeypatch, caplog):
    secret = "n0t-a-real-s3cret"
    url = pg_url.replace("postgres@", f"postgres:{secret}@", 1)  # trust auth ignores it
    monkeypatch.setenv("DRIFTLAB_DB_URL", url)
    config = _config(experiment_text(3))
    with caplog.at_level(logging.DEBUG):
        storage = tuning.storage_for(config)
        tuning.create_study(config, "pool")
        _run(config, "pool")
    assert storage.engine.pool.size() == tuning.storage.POOL_SIZE
    assert storage.engine.pool._pre_ping is True
    assert "Optuna study storage: postgresql" in caplog.text  # the log line exists ...
    assert secret not in caplog.text  # ... without the password
