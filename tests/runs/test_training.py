"""One seeded run, in its own worker process: identity, the knobs that break it, separated RNGs.

Each check has a control: the thing held fixed gives identical digests, and
the one knob changed gives a different digest, proving the knob really acts.
"""

from __future__ import annotations


import pytest

from driftlab.config import ProfileConfig
from driftlab.runs.executor import Worker
from driftlab.config.profiles import supported_isas
from driftlab.runs.spec import RunSpec
from support.factories import trainable_spec

pytestmark = pytest.mark.slow

DEFAULT = ProfileConfig(name="cpu-default")
SSE41 = ProfileConfig(name="cpu-sse41", isa="SSE41")


def spec(profile: ProfileConfig = DEFAULT, **changes) -> RunSpec:
    return trainable_spec(profile, experiment="t", **changes)


@pytest.fixture(scope="module")
def default_worker():
    worker = Worker(DEFAULT)
    yield worker
    worker.close()


@pytest.fixture(scope="module")
def base_record(default_worker):
    record = default_worker.run(spec())
    assert record["status"] == "ok", record.get("error")
    return record


def test_record_has_everything_a_report_needs(base_record, default_worker):
    r = base_record
    assert set(r["metrics"]) == {"eval_accuracy", "val_accuracy"}
    assert 0.5 < r["metrics"]["eval_accuracy"] <= 1.0
    assert len(r["history"]["loss"]) == 2 and len(r["history"]["val_metric"]) == 2
    assert r["predictions"].shape == (round(1797 * 0.2), 10)  # default eval_fraction 0.2
    assert r["weights"].size == r["n_params"] and r["weights_kind"] == "full"
    assert r["timings"]["fit_s"] > 0
    fp = r["fingerprint"]
    assert fp["tensorflow"].startswith("2.") and fp["keras"].startswith("3.")
    assert fp["env"]["TF_NUM_INTRAOP_THREADS"] == "1" and fp["intra_op_threads"] == 1
    assert "ONEDNN_MAX_CPU_ISA" not in fp["env"]


def test_same_spec_deterministic_is_bitwise_identical(base_record, default_worker):
    again = default_worker.run(spec())
    assert again["weights_digest"] == base_record["weights_digest"]
    assert (again["predictions"] == base_record["predictions"]).all()
    # Control: a different init seed really changes the weights.
    other = default_worker.run(spec(init_seed=1))
    assert other["init_digest"] != base_record["init_digest"]
    assert other["weights_digest"] != base_record["weights_digest"]


def test_same_spec_in_a_fresh_process_is_identical(base_record):
    fresh = Worker(DEFAULT)
    try:
        assert fresh.run(spec())["weights_digest"] == base_record["weights_digest"]
    finally:
        fresh.close()


def test_shuffle_seed_changes_order_not_initial_weights(base_record, default_worker):
    shuffled = default_worker.run(spec(shuffle_seed=1))
    assert shuffled["init_digest"] == base_record["init_digest"], "batch order must not touch weight init"
    assert shuffled["weights_digest"] != base_record["weights_digest"], "a new shuffle seed must change training"


def test_split_seed_changes_training_rows(base_record, default_worker):
    split = default_worker.run(spec(split_seed=1))
    assert split["init_digest"] == base_record["init_digest"]
    assert split["weights_digest"] != base_record["weights_digest"]
    assert (split["eval_labels"] == base_record["eval_labels"]).all(), "the evaluation set never moves"


@pytest.mark.skipif("SSE41" not in supported_isas() or "AVX2" not in supported_isas(),
                    reason="needs a CPU whose default oneDNN ISA is above SSE4.1")
def test_isa_cap_changes_digest_on_this_machine(base_record):
    capped = Worker(SSE41)
    try:
        record = capped.run(spec(SSE41))
        repeat = capped.run(spec(SSE41))
    finally:
        capped.close()
    assert capped.fingerprint["env"]["ONEDNN_MAX_CPU_ISA"] == "SSE41"
    assert record["weights_digest"] == repeat["weights_digest"], "a capped profile is still deterministic"
    assert record["init_digest"] == base_record["init_digest"], "initial weights do not depend on the ISA"
    assert record["weights_digest"] != base_record["weights_digest"], \
        "ONEDNN_MAX_CPU_ISA=SSE41 must change the arithmetic (the hardware-drift control)"


def test_user_builder_module_function(default_worker):
    record = default_worker.run(spec(builder="user_builders:small_model", hparams={"width": 8}))
    assert record["status"] == "ok", record.get("error")
    assert record["n_params"] == 64 * 8 + 8 + 8 * 10 + 10


@pytest.mark.parametrize("builder, needle", [
    ("user_builders:broken", "raised ValueError: width must be positive"),
    ("user_builders:not_a_model", "returned dict, not a keras.Model"),
    ("no_such_module_xyz:build", "cannot import module 'no_such_module_xyz'"),
    ("user_builders:missing", "has no function 'missing'"),
])
def test_bad_user_builders_fail_the_run_not_the_worker(default_worker, builder, needle):
    record = default_worker.run(spec(builder=builder))
    assert record["status"] == "failed"
    assert needle in record["error"]
    assert default_worker.run(spec())["status"] == "ok", "the worker must survive a failing run"


def test_diverging_run_is_recorded_as_diverged(default_worker):
    record = default_worker.run(spec(hparams={"units": 16, "learning_rate": 1e12, "optimizer": "sgd"}))
    assert record["status"] == "diverged"
    assert "lower the learning rate" in record["error"]
