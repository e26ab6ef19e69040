"""The executor: long-lived workers compute what fresh processes compute, in parallel or alone.

Every identity check has its control: the reuse of a traced model really
happened (``trace_reused``), seeds really change the digest, and the two
auto-detected profiles really differ.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections import defaultdict

import pytest

from driftlab.config import ProfileConfig
from driftlab.runs.executor import Worker, execute
from driftlab.config.profiles import ProfileError, auto_profiles, profile_json, supported_isas
from driftlab.runs.spec import RunSpec
from support.factories import trainable_spec
from driftlab.storage.store import Store

pytestmark = pytest.mark.slow

DEFAULT = ProfileConfig(name="cpu-default")


def spec(profile: ProfileConfig = DEFAULT, **changes) -> RunSpec:
    return trainable_spec(profile, experiment="exec", **{"hparams": {"units": 16, "dropout": 0.2,
                                                                     "learning_rate": 0.003}, **changes})


# A small factorial: 2 init × 2 split × 2 repeats, determinism on.
PLAN = [spec(init_seed=i, split_seed=s, repeat=r) for i in (0, 1) for s in (0, 1) for r in (0, 1)]
TARGET = spec(init_seed=1, split_seed=1)


@pytest.fixture(scope="module")
def long_lived():
    """One worker that trains other runs (another architecture, determinism off) before the plan."""
    worker = Worker(DEFAULT)
    warmup = [spec(hparams={"units": 8, "learning_rate": 0.01}), spec(deterministic=False), spec(shuffle_seed=3)]
    for s in warmup:
        assert worker.run(s)["status"] == "ok"
    records = {s.key: worker.run(s) for s in PLAN}
    yield worker, records
    worker.close()


def test_run_in_a_long_lived_worker_equals_a_fresh_process(long_lived, monkeypatch):
    worker, records = long_lived
    reused = records[TARGET.key]
    assert worker.runs > 5
    assert reused["timings"]["trace_reused"] is True, "control: the long-lived worker reused a traced model"

    fresh = Worker(DEFAULT)
    try:
        alone = fresh.run(TARGET)
    finally:
        fresh.close()
    assert fresh.proc.returncode == 0, "a closed worker exits by itself, cleanly (it skips the interpreter's teardown)"
    assert alone["timings"]["trace_reused"] is False
    assert alone["weights_digest"] == reused["weights_digest"]
    assert (alone["predictions"] == reused["predictions"]).all()
    assert alone["history"] == reused["history"], "every epoch's loss, not just the end"

    # The classic path: no reuse at all, model rebuilt and traced for every run.
    monkeypatch.setenv("DRIFTLAB_REUSE_MODELS", "0")
    classic = Worker(DEFAULT)
    try:
        classic.run(PLAN[0])
        rebuilt = classic.run(TARGET)
    finally:
        classic.close()
    assert rebuilt["timings"]["trace_reused"] is False
    assert rebuilt["weights_digest"] == reused["weights_digest"]
    # Control: the digest sees the seeds (a different init seed differs).
    assert records[PLAN[0].key]["weights_digest"] != reused["weights_digest"]


def test_deterministic_repeats_are_identical_for_every_seed(long_lived):
    _, records = long_lived
    by_seeds: dict[tuple[int, int, int], set[str]] = defaultdict(set)
    for s in PLAN:
        assert records[s.key]["status"] == "ok"
        by_seeds[(s.init_seed, s.shuffle_seed, s.split_seed)].add(records[s.key]["weights_digest"])
    assert len(by_seeds) == 4
    for seeds, digests in by_seeds.items():
        assert len(digests) == 1, f"repeats of {seeds} differ: {digests}"
    # Control: the four seed combinations give four different results.
    assert len({next(iter(d)) for d in by_seeds.values()}) == 4


def test_two_parallel_workers_give_the_digests_of_one(long_lived, tmp_path):
    _, alone = long_lived
    store = Store(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    exp = store.experiment_id("exec")
    summary = execute(PLAN, DEFAULT, store, exp, jobs=2)
    assert summary.workers == 2 and summary.trained == len(PLAN) and summary.failed == 0
    stored = {r["key"]: r for r in store.load_runs("exec", "c")}
    assert set(stored) == {s.key for s in PLAN}
    for s in PLAN:
        assert stored[s.key]["weights_digest"] == alone[s.key]["weights_digest"], f"{s.key} changed in parallel"
    assert {r["fingerprint"]["intra_op_threads"] for r in stored.values()} == {1}
    again = execute(PLAN, DEFAULT, store, exp, jobs=2)
    assert (again.skipped, again.trained, again.workers) == (len(PLAN), 0, 0), "recorded keys are never retrained"


@pytest.mark.skipif(len(supported_isas()) < 2, reason="needs a CPU with at least two oneDNN ISA levels")
def test_two_auto_detected_profiles_differ_for_the_same_seeds(long_lived):
    _, records = long_lived
    auto = auto_profiles()
    assert auto[0] == DEFAULT
    capped = next(p for p in auto if p.isa)
    worker = Worker(capped)
    try:
        record = worker.run(dataclasses.replace(TARGET, profile=profile_json(capped)))
    finally:
        worker.close()
    reference = records[TARGET.key]
    assert worker.fingerprint["env"]["ONEDNN_MAX_CPU_ISA"] == capped.isa
    assert record["init_digest"] == reference["init_digest"], "same seeds, same initial weights"
    assert record["weights_digest"] != reference["weights_digest"], \
        f"{capped.name} must change the arithmetic on this CPU (the hardware-drift control)"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has a GPU")
def test_gpu_pool_without_a_gpu_is_refused_before_training():
    gpu = ProfileConfig(name="a100-pool", kind="gpu")
    with pytest.raises(ProfileError, match="'a100-pool' is a GPU pool but TensorFlow sees no GPU"):
        Worker(gpu)
