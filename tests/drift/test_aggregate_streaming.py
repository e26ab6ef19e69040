"""Aggregation in bounded memory gives the report the in-memory analysis gave.

``tests/fixtures/drift_reports_golden.json`` holds the report bodies that ``analyze`` produced for
the campaigns below before aggregation streamed per group (records in memory, arrays included).
The streaming analysis must reproduce them: strings, integers, lists and keys exactly, floats to
1e-12 (pair averages are now summed group by group instead of 64 groups at a time); the loss
curves plotted are left out (chosen apart, and changed since). Reading the same campaign back
from a results database must give exactly the in-memory report, curves included.

Regenerate the golden only for an intended change of the report:
``.venv/bin/python tests/drift/test_aggregate_streaming.py --write-golden``.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).resolve().parent.parent / "fixtures" / "drift_reports_golden.json"
FLOAT_REL = 1e-12
FLOAT_ABS = 1e-15  # values that are 0 up to round-off (a mean delta of equal metrics)

# name: (SyntheticPlan fields, task, whether failed/diverged records are added, plan profiles)
CAMPAIGNS: dict[str, tuple[dict[str, Any], str, bool, tuple[str, ...] | None]] = {
    "factorial": (dict(init=(0, 1, 2), shuffle=(0, 1), split=(0, 1), repeats=2, profiles=("ref", "b", "c"),
                       n_eval=60, n_classes=4, flip_rate=0.2,
                       sigmas={"init": 0.02, "shuffle": 0.01, "split": 0.01, "hardware": 0.005,
                               "init×shuffle": 0.004, "nondeterminism": 0.004},
                       versions={"b": {"cpu_model": "other"}}), "classification", True, ("ref", "b", "c", "gone")),
    "regression": (dict(task="regression", init=(0, 1), shuffle=(0, 1), split=(0, 1), repeats=2,
                        profiles=("ref", "b"), n_eval=50,
                        sigmas={"init": 0.02, "shuffle": 0.01, "hardware": 0.01, "nondeterminism": 0.003}),
                   "regression", False, None),
    "one_at_a_time": (dict(design="one-at-a-time", init=(0, 1, 2, 3, 4), shuffle=(0, 1, 2, 3), split=(0, 1, 2),
                           repeats=3, profiles=("ref", "b"), n_eval=40, n_classes=3, flip_rate=0.1,
                           sigmas={"init": 0.02, "shuffle": 0.01, "split": 0.005, "hardware": 0.004,
                                   "nondeterminism": 0.002}), "classification", False, None),
    # 72 split groups: more than one batch of 64 groups, and more groups than correlations are taken from.
    "many_groups": (dict(init=tuple(range(9)), shuffle=tuple(range(8)), split=(0, 1), repeats=2,
                         deterministic=(True,), profiles=("ref", "b"), n_eval=30, n_classes=3, flip_rate=0.3,
                         sigmas={"init": 0.01, "shuffle": 0.01, "split": 0.01, "hardware": 0.01}),
                    "classification", False, None),
}


def campaign(name: str) -> tuple[list[dict[str, Any]], Any, tuple[str, ...] | None]:
    """The records (in key order, as the results store returns them), experiment config and plan profiles."""
    from driftlab.config import ExperimentConfig
    from support.synthetic import SyntheticPlan, generate

    fields, task, with_failures, profiles = CAMPAIGNS[name]
    records = generate(SyntheticPlan(**fields))
    if with_failures:
        records.append({**records[3], "key": "failed-one", "status": "failed", "predictions": None,
                        "error": "ResourceExhaustedError: OOM when allocating tensor\n  at layer 2"})
        records.append({**records[5], "key": "diverged-one", "status": "diverged"})
    records.sort(key=lambda r: r["key"])
    dataset = {"name": "digits"} if task == "classification" else {"name": "synthetic-regression"}
    config = ExperimentConfig.model_validate({"name": "golden", "dataset": dataset, "profiles": {"auto": True},
                                             "tolerances": {"max_drift_ratio": 2.0, "max_disagreement": 0.5}})
    return records, config, profiles


def report_json(result: dict[str, Any]) -> Any:
    """The report body as report.json holds it."""
    return json.loads(json.dumps(result, default=float, sort_keys=True))


def differences(got: Any, want: Any, where: str = "$") -> list[str]:
    """Where two JSON values differ: anything but a float exactly, floats beyond 1e-12."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{where}: keys {sorted(set(got) ^ set(want))}"] if set(got) != set(want) else []
        for k in sorted(set(got) & set(want)):
            out += differences(got[k], want[k], f"{where}.{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            return [f"{where}: {len(got)} items, want {len(want)}"]
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in differences(g, w, f"{where}[{i}]")]
    if isinstance(want, float) and isinstance(got, float):
        ok = got == want or math.isclose(got, want, rel_tol=FLOAT_REL, abs_tol=FLOAT_ABS)
        return [] if ok else [f"{where}: {got!r}, want {want!r}"]
    return [] if (type(got), got) == (type(want), want) else [f"{where}: {got!r}, want {want!r}"]


class _Spec:
    """What ``Store.save_runs`` reads of a run spec, for a synthetic record (its own key)."""

    campaign, stage, plan = "c", "retrain", "p"

    def __init__(self, record: dict[str, Any]):
        self.key, self.profile_name = record["key"], record["profile"]
        for name in ("init_seed", "shuffle_seed", "split_seed", "repeat", "deterministic"):
            setattr(self, name, record[name])

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key}


def stored(url: str, records: list[dict[str, Any]]):
    from driftlab.storage.store import Store

    store = Store(url)
    store.save_runs(store.experiment_id("golden"), [(_Spec(r), r) for r in records])
    return store


def from_store(store, config, profiles, **kwargs) -> Any:
    from driftlab.drift import analyze

    return report_json(analyze(store.iter_runs("golden", "c", plan="p", with_spec=False), config, reference="ref",
                               profiles=profiles, arrays=store, **kwargs))


@pytest.mark.parametrize("name", sorted(CAMPAIGNS))
def test_the_analysis_gives_the_golden_report(name):
    from driftlab.drift import analyze

    records, config, profiles = campaign(name)
    got = report_json(analyze(records, config, reference="ref", profiles=profiles))
    want = json.loads(GOLDEN.read_text())[name]
    # Which loss curves the report plots (analysis._curves, scalars only) is chosen apart from the streaming
    # and has changed since the golden; the store test below compares the curves exactly.
    for report in (got, want):
        report.pop("curves")
    assert differences(got, want) == []


def test_the_comparison_tells_a_changed_number_from_round_off():
    want = json.loads(GOLDEN.read_text())["factorial"]
    sd = want["sources"]["init"]["metric_sd"]
    for factor, changed in ((1 + 1e-14, False), (1 + 1e-9, True)):
        got = json.loads(json.dumps(want))
        got["sources"]["init"]["metric_sd"] = sd * factor
        assert bool(differences(got, want)) is changed, factor
    got = json.loads(json.dumps(want))
    got["churn"]["init"]["unstable_rows"][0] += 1  # integers and lists compare exactly
    assert differences(got, want) == ["$.churn.init.unstable_rows[0]: "
                                      f"{want['churn']['init']['unstable_rows'][0] + 1}, "
                                      f"want {want['churn']['init']['unstable_rows'][0]}"]


@pytest.mark.parametrize("name", ["factorial", "regression", "many_groups"])
def test_the_campaign_read_back_from_the_store_gives_exactly_the_in_memory_report(database_url, name):
    from driftlab.drift import analyze

    records, config, profiles = campaign(name)
    want = report_json(analyze(records, config, reference="ref", profiles=profiles))
    store = stored(database_url, records)
    for block_bytes in (1, 20_000, 10 ** 9):  # a seed point per block, a few, all at once
        assert from_store(store, config, profiles, block_bytes=block_bytes) == want, block_bytes


def test_runs_hold_their_arrays_a_few_blocks_at_a_time_and_are_read_once_per_seed_that_spans_blocks(
        tmp_path, monkeypatch):
    from driftlab.drift import runs as drift_runs
    from driftlab.drift.comparisons import wanted_groups
    from driftlab.drift.runs import from_record
    from driftlab.drift.stream import THREADS, measure_all, run_bytes

    records, config, _ = campaign("many_groups")  # 9 init x 8 shuffle x 2 split seeds; 4 runs per seed point
    store = stored(f"sqlite:///{tmp_path / 'r.sqlite'}", records)
    live, most, reads = set(), [0], {}
    attach, release = drift_runs.Run.attach, drift_runs.Run.release

    def counted_attach(self, arrays, task):
        attach(self, arrays, task)
        live.add(id(self))
        most[0] = max(most[0], len(live))
        reads[self.key] = reads.get(self.key, 0) + 1

    def counted_release(self):
        release(self)
        live.discard(id(self))

    monkeypatch.setattr(drift_runs.Run, "attach", counted_attach)
    monkeypatch.setattr(drift_runs.Run, "release", counted_release)
    per_run = run_bytes(from_record(records[0], "classification"))
    # A block's share of the budget (runs' worth; THREADS blocks and their work arrays share it) -> most reads
    # of one run: with a whole init level (64 runs) per block only the init groups span blocks; with less,
    # the shuffle groups too.
    for block_runs, most_reads in ((64, 2), (8, 3), (10 ** 6, 2)):
        budget_runs = 2 * THREADS * block_runs
        runs = [from_record(r, "classification") for r in store.iter_runs("golden", "c")]
        live.clear(), most.__setitem__(0, 0), reads.clear()
        measured = measure_all(runs, wanted_groups(runs, reference="ref", mode=True), task="classification",
                               arrays=store, block_bytes=budget_runs * per_run)
        assert measured.on_demand == 0 and not live, "every group measured in the pass, every array released"
        assert set(reads) == {r["key"] for r in records} and max(reads.values()) == most_reads, budget_runs
        assert most[0] <= min(budget_runs + 4, len(records)), (budget_runs, most[0])  # + one seed point
    assert most[0] == len(records), "the control holds every run at once: the bound above is not vacuous"


def test_a_finished_run_whose_predictions_are_not_stored_is_named(tmp_path):
    from driftlab.drift import RecordError

    records, config, profiles = campaign("regression")
    records[4] = {**records[4], "predictions": None}
    store = stored(f"sqlite:///{tmp_path / 'r.sqlite'}", records)
    with pytest.raises(RecordError, match=records[4]["key"]):
        from_store(store, config, profiles)
    del records[4]
    assert from_store(stored(f"sqlite:///{tmp_path / 'ok.sqlite'}", records), config, profiles)["counts"]["ok"] \
        == len(records), "control: without that run the campaign is analysed"


def test_the_aggregate_stage_reads_the_store_and_writes_the_in_memory_report(tmp_path, monkeypatch):
    from driftlab import settings, stages
    from driftlab.config import load_config_text, plan_hash
    from driftlab.drift import analyze
    from driftlab.drift.optimism import attach

    records, _, _ = campaign("factorial")
    text = json.dumps({"name": "golden", "dataset": {"name": "digits"},
                       "profiles": {"reference": "ref", "pools": [{"name": p} for p in ("ref", "b", "c")]},
                       "tolerances": {"max_drift_ratio": 2.0}})
    config = load_config_text(text, "experiment")
    monkeypatch.setattr(_Spec, "plan", plan_hash(config))
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    stored(url, records)
    monkeypatch.setenv(settings.DB_URL.name, url)
    tuning = {"best_value": 0.95, "direction": "maximize", "best_trial": 3}
    out = stages.aggregate(text, "c", str(tmp_path / "report"), json.dumps(tuning))
    got = json.loads(Path(out["paths"]["json"]).read_text())
    want = analyze(records, config, reference="ref", profiles=["ref", "b", "c"])
    want["tuning"] = tuning
    attach(want, records)
    assert "optimism" in got and {k: v for k, v in got.items() if k != "experiment"} == report_json(want)


def test_the_block_size_setting_is_checked_and_changes_no_number(tmp_path, monkeypatch):
    from driftlab import settings, stages
    from driftlab.config import load_config_text, plan_hash
    from driftlab.errors import BadInput

    records, _, _ = campaign("one_at_a_time")
    text = json.dumps({"name": "golden", "dataset": {"name": "digits"},
                       "profiles": {"reference": "ref", "pools": [{"name": "ref"}, {"name": "b"}]}})
    monkeypatch.setattr(_Spec, "plan", plan_hash(load_config_text(text, "experiment")))
    url = f"sqlite:///{tmp_path / 'r.sqlite'}"
    stored(url, records)
    monkeypatch.setenv(settings.DB_URL.name, url)
    monkeypatch.setenv(settings.AGGREGATE_BLOCK_BYTES.name, "a lot")
    with pytest.raises(BadInput, match=f"{settings.AGGREGATE_BLOCK_BYTES.name}: 'a lot' is not a size"):
        stages.aggregate(text, "c", str(tmp_path / "bad"))
    reports = []
    for value in ("1KiB", "1GiB"):  # a seed point per block; the whole campaign in one
        monkeypatch.setenv(settings.AGGREGATE_BLOCK_BYTES.name, value)
        out = stages.aggregate(text, "c", str(tmp_path / value))
        reports.append(json.loads(Path(out["paths"]["json"]).read_text()))
    assert reports[0] == reports[1] and reports[0]["counts"]["ok"] == len(records)


def _peak_traced(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_aggregating_from_the_store_holds_a_fraction_of_the_campaigns_arrays(tmp_path):
    from driftlab.config import ExperimentConfig
    from driftlab.drift import analyze
    from support.synthetic import SyntheticPlan, generate

    # 400 runs x 1,000 rows x 10 classes: 16 MB of float32 predictions.
    plan = SyntheticPlan(init=tuple(range(10)), shuffle=tuple(range(5)), split=(0, 1), repeats=2,
                         deterministic=(True,), profiles=("ref", "b"), n_eval=1000, n_classes=10,
                         sigmas={"init": 0.01, "shuffle": 0.01, "hardware": 0.01})
    records = generate(plan)
    arrays_bytes = sum(r["predictions"].nbytes for r in records)
    store = stored(f"sqlite:///{tmp_path / 'r.sqlite'}", records)
    del records
    config = ExperimentConfig.model_validate({"name": "golden", "dataset": {"name": "digits"},
                                             "profiles": {"auto": True}})
    warm, _, _ = campaign("one_at_a_time")
    analyze(warm, config, reference="ref")  # modules imported on first use (scipy.stats) are not the campaign's
    streamed = _peak_traced(lambda: from_store(store, config, None, block_bytes=2 * 2 ** 20))
    whole = _peak_traced(lambda: analyze(store.load_runs("golden", "c"), config, reference="ref"))
    assert whole > arrays_bytes, "control: reading the campaign whole holds all its arrays"
    assert streamed < arrays_bytes / 3, f"{streamed:,} bytes at peak for {arrays_bytes:,} bytes of predictions"
    print(f"traced peak: {streamed / 2 ** 20:.1f} MiB streamed, {whole / 2 ** 20:.1f} MiB whole, "
          f"{arrays_bytes / 2 ** 20:.1f} MiB of predictions")


def write_golden() -> None:
    from driftlab.drift import analyze

    out = {}
    for name in CAMPAIGNS:
        records, config, profiles = campaign(name)
        out[name] = report_json(analyze(records, config, reference="ref", profiles=profiles))
    GOLDEN.write_text(json.dumps(out, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN} ({GOLDEN.stat().st_size:,} bytes)")


if __name__ == "__main__" and "--write-golden" in sys.argv:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/, for support.synthetic
    write_golden()
