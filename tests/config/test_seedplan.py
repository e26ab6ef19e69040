"""Seed plans: what each design crosses, the plan-size refusal, shards, and the progress lines."""

from __future__ import annotations

import io
import itertools
import json
from dataclasses import replace

import pytest

from driftlab import stages
from driftlab.config import SeedPlanConfig
from driftlab.runs.progress import RunCounter, format_eta, run_progress
from driftlab.runs.spec import RunSpec
from driftlab.config.seedplan import (PlanTooLarge, SeedPoint, ShardError, check_cap, describe, node_points, planned_total,
                               seed_points, shard, shard_count)


def plan(**kw) -> SeedPlanConfig:
    base = dict(init=[0, 1, 2], shuffle=[0, 5], split=[0, 7], repeats=2, deterministic=[True, False])
    return SeedPlanConfig(**{**base, **kw})


def test_factorial_crosses_every_source_once():
    p = plan()
    points = seed_points(p)
    expected = {SeedPoint(i, s, sp, r, d) for i, s, sp, r, d in
                itertools.product([0, 1, 2], [0, 5], [0, 7], range(2), [True, False])}
    assert set(points) == expected and len(points) == len(expected) == 3 * 2 * 2 * 2 * 2
    assert points == sorted(points), "a stable order: shards and resumes depend on it"


def test_single_value_lists_are_allowed():
    points = seed_points(plan(init=[4], shuffle=[3], split=[2], repeats=1, deterministic=[True]))
    assert points == [SeedPoint(4, 3, 2, 0, True)]


def test_one_at_a_time_varies_one_source_around_the_first_seeds():
    p = plan(design="one-at-a-time")
    points = seed_points(p)
    # per mode: repeats of the base point + the other values of each source, each alone
    assert len(points) == 2 * (2 + (3 - 1) + (2 - 1) + (2 - 1))
    base = (0, 0, 0)
    for pt in points:
        moved = [name for name, v, b in zip(("init", "shuffle", "split"),
                                            (pt.init_seed, pt.shuffle_seed, pt.split_seed), base) if v != b]
        assert len(moved) <= 1, f"{pt} varies more than one source"
        if moved:
            assert pt.repeat == 0
    assert {pt.init_seed for pt in points} == {0, 1, 2}
    assert {pt.shuffle_seed for pt in points} == {0, 5} and {pt.split_seed for pt in points} == {0, 7}
    # control: the factorial of the same lists is much larger
    assert len(seed_points(plan())) > len(points)


def test_node_points_are_the_deterministic_runs():
    p = plan()
    nodes = node_points(p)
    assert nodes and all(pt.deterministic for pt in nodes)
    assert len(nodes) == len(seed_points(p)) // 2
    only_off = plan(deterministic=[False])
    assert node_points(only_off) == seed_points(only_off), "without deterministic runs, every run repeats"


def test_plan_over_the_cap_is_refused_with_the_numbers_and_the_fixes():
    p = plan(max_runs=50)
    total = planned_total(p, n_profiles=3)
    assert total == 48 + 2 * 24
    with pytest.raises(PlanTooLarge) as err:
        check_cap(p, 3)
    message = str(err.value)
    assert "96 runs" in message and "seeds.max_runs=50" in message
    assert "one-at-a-time" in message and "raise max_runs" in message
    assert check_cap(plan(max_runs=96), 3) == 96, "exactly at the cap is allowed"


def test_describe_says_the_size_before_work_starts():
    assert describe(plan()) == ("factorial: 3 init × 2 shuffle × 2 split seeds × 2 repeats × "
                                "determinism on and off = 48 runs")
    assert describe(plan(), nodes=True).endswith("determinism on = 24 runs")
    assert describe(plan(design="one-at-a-time")).startswith("one-at-a-time around init=0, shuffle=0, split=0")


@pytest.mark.parametrize("n, count", [(48, 1), (48, 5), (7, 3), (2, 4)])
def test_shards_partition_the_plan(n, count):
    items = list(range(n))
    parts = [shard(items, i, count) for i in range(count)]
    assert sorted(itertools.chain(*parts)) == items, "every run in exactly one shard"
    sizes = [len(x) for x in parts]
    assert max(sizes) - min(sizes) <= 1, "shards are balanced"


@pytest.mark.parametrize("index, count, field", [(3, 3, "shard_index"), (-1, 2, "shard_index"),
                                                 (0, 0, "shard_count")])
def test_bad_shard_names_the_field(index, count, field):
    with pytest.raises(ShardError, match=field):
        shard([1, 2, 3], index, count)


def test_shard_count_is_one_locally_and_sized_on_a_cluster(monkeypatch):
    assert shard_count(1000, local=True) == 1
    monkeypatch.setenv("DRIFTLAB_RUNS_PER_SHARD", "10")
    assert shard_count(95, local=False) == 10
    monkeypatch.setenv("DRIFTLAB_RUNS_PER_SHARD", "zero")
    with pytest.raises(ShardError, match="DRIFTLAB_RUNS_PER_SHARD"):
        shard_count(95, local=False)


def test_stage_refuses_an_oversized_plan_before_any_worker_starts(tiny_config_text, home):
    big = tiny_config_text.replace("repeats: 2", "repeats: 2\n  max_runs: 3")
    with pytest.raises(PlanTooLarge, match="max_runs=3"):
        stages.retrain_seeds(big, "c", {"learning_rate": 0.003}, jobs=1, quiet=True)
    assert not (home / "driftlab.sqlite").exists() or stages._store(stages.load(big)).count_runs() == 0


def test_validate_prints_the_planned_run_count(tiny_config_file, home, capsys):
    from driftlab.cli import main

    assert main(["validate", str(tiny_config_file)]) == 0
    assert "8 training runs on 2 profile(s)" in capsys.readouterr().out


def test_node_tasks_items_carry_placement_and_shards(tiny_config_text, monkeypatch):
    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    local = stages.node_tasks(tiny_config_text, {"learning_rate": 0.004})
    assert [(t["profile"], t["shard_index"], t["shard_count"], t["runs"]) for t in local] == [("cpu-sse41", 0, 1, 4)]
    item = json.loads(local[0]["best_params"])  # JSON text: a KFP dict would turn ints into floats
    assert item == {"values": {"learning_rate": 0.004}, "kinds": {"learning_rate": "float"}}
    assert {"node_selector", "tolerations", "accelerator_type", "accelerator_count", "kind"} <= set(local[0])
    assert None not in local[0].values(), "kfp.local refuses None in loop items"
    monkeypatch.setenv("DRIFTLAB_WHERE", "cluster")
    monkeypatch.setenv("DRIFTLAB_RUNS_PER_SHARD", "3")
    cluster = stages.node_tasks(tiny_config_text, json.dumps({"learning_rate": 0.004}))
    assert [(t["shard_index"], t["shard_count"], t["runs"]) for t in cluster] == [(0, 2, 2), (1, 2, 2)]


def _spec(i: int) -> RunSpec:
    return RunSpec(experiment="t", campaign="c", dataset={}, data_digest="d", builder="mlp", hparams={}, epochs=1,
                   batch_size=1, init_seed=i, shuffle_seed=0, split_seed=0, repeat=0, deterministic=True,
                   profile={"name": "cpu-x"})


def test_quiet_progress_shows_done_total_eta_and_profile():
    out = io.StringIO()
    with run_progress(10, "retrain across seeds · cpu-x", completed=4, quiet=True, stream=out) as advance:
        for i in range(6):
            advance(_spec(i), {"status": "failed" if i == 0 else "ok"})
    lines = out.getvalue().splitlines()
    assert lines[0] == "[driftlab] retrain across seeds · cpu-x: 4/10 runs already recorded"
    assert lines[-1].startswith("[driftlab] retrain across seeds · cpu-x: 10/10 runs, 1 failed, ETA ")
    assert all("ETA" in line for line in lines[1:]) and len(lines) <= 1 + 6


def test_eta_counts_only_runs_trained_in_this_session():
    now = [0.0]
    counter = RunCounter(total=10, completed=6, clock=lambda: now[0])
    assert counter.eta() is None
    now[0] = 5.0  # worker start-up and the first run
    counter.advance({"status": "ok"})
    now[0] = 7.0
    counter.advance({"status": "ok"})
    assert counter.eta() == pytest.approx(2.0 * 2, abs=1e-9)  # 2 s a run since the first, 2 runs left
    assert format_eta(3725) == "1h02m" and format_eta(185) == "3m05s" and format_eta(None) == "?"


def test_spec_key_ignores_the_stage_but_not_the_profile():
    a = _spec(1)
    assert replace(a, stage="nodes").key == a.key
    assert replace(a, profile={"name": "cpu-y"}).key != a.key


@pytest.mark.parametrize("design", ["factorial", "one-at-a-time"])
@pytest.mark.parametrize("modes", [[True], [False], [True, False]])
def test_counted_plan_size_equals_the_enumerated_plan(design, modes):
    from driftlab.config import SeedPlanConfig
    from driftlab.config.seedplan import count_points, node_points, planned_total, seed_points

    plan = SeedPlanConfig(design=design, init=[0, 1, 2], shuffle=[5, 6], split=[0, 9, 8, 7], repeats=3,
                          deterministic=modes)
    assert count_points(plan) == len(seed_points(plan))
    assert planned_total(plan, 3) == len(seed_points(plan)) + 2 * len(node_points(plan))


def test_a_large_plan_is_refused_by_counting():
    from driftlab.config import SeedPlanConfig
    from driftlab.config.seedplan import PlanTooLarge, check_cap

    big = list(range(100))
    plan = SeedPlanConfig(init=big, shuffle=big, split=big, repeats=1, deterministic=[True], max_runs=10)
    with pytest.raises(PlanTooLarge, match="needs 3000000 runs"):
        check_cap(plan, 3)
