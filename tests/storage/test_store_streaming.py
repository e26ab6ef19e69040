"""The store's streaming read path: runs without their arrays, then the arrays of the runs asked for.

``Store.iter_runs`` must give what ``load_runs(..., with_arrays=False)`` gives, in the same order,
a page at a time, resuming after a lost connection; ``Store.iter_arrays`` the arrays ``load_runs``
decodes, bit for bit. Against SQLite and the real PostgreSQL.
"""

from __future__ import annotations

import numpy as np
import pytest

from driftlab.runs import codec
from driftlab.storage import arrays
from driftlab.storage.store import Store
from support.factories import run_spec

N_RUNS = 7


@pytest.fixture
def store(database_url):
    return Store(database_url)


def record(i: int, *, predictions: bool = True) -> dict:
    rng = np.random.default_rng(i)
    return {"status": "ok" if predictions else "failed", "task": "classification",
            "metrics": {"eval_accuracy": 0.5 + i / 100}, "history": {"loss": [1.0, 1 / (i + 2)]},
            "timings": {"fit_s": 1.0 + i}, "fingerprint": {"cpu_model": "same for all"}, "weights_digest": f"w{i}",
            "predictions": rng.random((6, 3)).astype(np.float32) if predictions else None,
            "eval_labels": np.arange(6), "weights": rng.random(4).astype(np.float32), "weights_kind": "full",
            "error": None if predictions else "failed before predicting"}


def fill(store: Store, plan: str = "p1", seeds: range = range(N_RUNS), without_predictions: int | None = None
         ) -> list[str]:
    exp = store.experiment_id("exp")
    pairs = [(run_spec(campaign="c", init_seed=i, plan=plan), record(i, predictions=i != without_predictions))
             for i in seeds]
    store.save_runs(exp, pairs)
    return [s.key for s, _ in pairs]


def comparable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("predictions_stored", "created_at")} for r in records]


def test_iter_runs_gives_load_runs_without_arrays_in_the_same_order_page_by_page(store):
    fill(store, without_predictions=3)
    fill(store, plan="p2", seeds=range(100, 102))  # another plan's runs under the same campaign: left out by plan
    want = store.load_runs("exp", "c", with_arrays=False, plan="p1")
    assert len(want) == N_RUNS
    for page in (1, 3, 1000):
        got = list(store.iter_runs("exp", "c", plan="p1", page=page))
        assert comparable(got) == comparable(want), f"page {page}"
    got = list(store.iter_runs("exp", "c", plan="p1"))
    assert [r["predictions_stored"] for r in got] == [r["status"] == "ok" for r in want]
    assert len({id(r["fingerprint"]) for r in got}) == 1, "one decoded fingerprint shared by equal ones"
    assert all(r["spec"] for r in got) and not any(r["spec"] for r in store.iter_runs("exp", "c", with_spec=False))
    assert len(list(store.iter_runs("exp", "c"))) == N_RUNS + 2 and not list(store.iter_runs("exp", "other"))


def test_iter_arrays_gives_the_arrays_load_runs_decodes(store):
    keys = fill(store)
    full = {r["key"]: r for r in store.load_runs("exp", "c")}
    asked = keys[::2] + keys[1:2]
    got = dict(store.iter_arrays(asked, chunk=2))
    assert sorted(got) == sorted(asked)
    for key, lazy in got.items():
        for name in ("predictions", "eval_labels", "weights"):
            a, b = lazy.get(name), full[key][name]
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), (key, name)
    assert not dict(store.iter_arrays(["no-such-key"])), "a key that is not there gives nothing"


@pytest.mark.db
def test_a_connection_lost_midway_resumes_after_the_last_run_read(pg_url):
    from support.faults import terminate_backends

    store = Store(pg_url)
    fill(store)
    stream = store.iter_runs("exp", "c", page=2)
    first = [next(stream) for _ in range(2)]
    assert terminate_backends(pg_url.rsplit("/", 1)[1]) >= 1, "the stream's connection was there to cut"
    rest = list(stream)
    keys = [r["key"] for r in first + rest]
    assert keys == [r["key"] for r in store.load_runs("exp", "c", with_arrays=False)], "every run once, in order"


@pytest.mark.parametrize("array", [
    np.random.default_rng(0).random((5, 3)).astype(np.float32), np.arange(7), np.asfortranarray(np.ones((4, 6))),
    np.zeros((0, 3)), np.array([1.5]), np.arange(3, dtype=">f8"), np.array(["a", "bc"]), np.array(True)],
    ids=["float32", "int64", "fortran", "empty", "one", "big-endian", "text", "scalar"])
def test_unpack_gives_what_codec_unpack_gives(array):
    blob = codec.pack(array)
    got, want = arrays.unpack(blob), codec.unpack(blob)
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    assert arrays.unpack(None) is None


def test_lazy_arrays_decode_on_first_use_and_share_equal_eval_labels():
    labels = codec.pack(np.arange(6))
    a = arrays.LazyArrays({"predictions": codec.pack(np.ones((2, 2))), "eval_labels": labels, "weights": None})
    b = arrays.LazyArrays({"predictions": None, "eval_labels": bytes(labels), "weights": None})
    assert a.get("weights") is None and b.get("predictions") is None
    assert a.get("eval_labels") is b.get("eval_labels"), "equal eval labels decoded once"
    assert a.get("predictions") is a.get("predictions") and a.get("predictions").sum() == 4
    assert not a.get("eval_labels").flags.writeable, "shared arrays are read-only"
