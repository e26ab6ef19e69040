"""Faults inside a stage: user code that raises, a NaN loss, a report path that is read-only or full.

One real retrain stage (worker process, TensorFlow, SQLite results store)
trains a campaign that mixes a run whose user builder raises, a run whose
loss diverges and two good runs; the tests check that the stage goes on,
what it tells the user, what is kept, and that a re-run trains only what is
not finished. The aggregate stage then writes its reports into a read-only
folder and into a full filesystem (real tmpfs mounts): a clear error, no
report row half-written, the previous report intact, and a re-run that works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import time
from pathlib import Path

import pytest

from driftlab import stages
from driftlab.config.seedplan import seed_points
from driftlab.storage.store import Store
from support.faults import figure, fill, small_filesystem

pytestmark = pytest.mark.slow

CAMPAIGN = "mixed"
CONFIG = """\
name: faults
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 16}}
seeds: {init: [0, 1], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""
DIVERGING = {"learning_rate": 1e12, "optimizer": "sgd"}  # the loss becomes inf/NaN in the first epoch


def _plan():
    config = stages.load(CONFIG)
    profile = stages._profiles(config).reference
    points = seed_points(config.seeds)
    good = stages._run_specs(config, CAMPAIGN, {}, profile, points, "seeds")
    diverging = stages._run_specs(config, CAMPAIGN, DIVERGING, profile, points[:1], "seeds")
    broken = [dataclasses.replace(good[0], builder="user_builders:broken")]
    # The faulty runs come first: the good ones after them must still train.
    return config, profile, broken + diverging + good


def _execute(config, profile, specs) -> tuple[dict, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        summary = stages._execute(config, specs, profile, jobs=1, quiet=True, label="retrain across seeds")
    return summary, err.getvalue()


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """The mixed campaign, trained once by a real stage; yields (store, specs, first summary, stderr, home)."""
    home = tmp_path_factory.mktemp("faults-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLAB_HOME", str(home))
        mp.delenv("DRIFTLAB_DB_URL", raising=False)
        mp.delenv("DRIFTLAB_WHERE", raising=False)
        config, profile, specs = _plan()
        summary, err = _execute(config, profile, specs)
        yield Store.from_config(config), (config, profile, specs), summary, err, home


def _by_key(store: Store) -> dict[str, dict]:
    return {r["key"]: r for r in store.load_runs("faults", CAMPAIGN, with_arrays=False)}


def test_user_code_that_raises_fails_its_run_and_the_stage_goes_on(campaign, request):
    store, (config, profile, specs), summary, err, _ = campaign
    row = figure(request, "run raising inside user model code", cases=1)
    broken, diverging, *good = specs
    assert summary["planned"] == 4 and summary["failed"] == 1 and summary["trained"] == 3, summary
    assert ("cpu-default: 1 run(s) failed: model.builder: 'user_builders:broken' raised ValueError: "
            "width must be positive") in err and "user_builders.py" in err, err
    assert "Traceback" not in err
    runs = _by_key(store)
    assert runs[broken.key]["status"] == "failed" and "raised ValueError" in runs[broken.key]["error"]
    assert all(runs[s.key]["status"] == "ok" for s in good), "the runs after the failing one trained"

    # A re-run retries the failed key (the user may have fixed the builder) and nothing else.
    before = {k: (r["weights_digest"], r["created_at"]) for k, r in runs.items() if r["status"] != "failed"}
    again, err2 = _execute(config, profile, specs)
    assert (again["skipped"], again["trained"], again["failed"]) == (3, 0, 1), again
    after = _by_key(store)
    assert len(after) == 4 and store.count_runs("faults") == 4, "the failed key is updated, never duplicated"
    assert {k: (r["weights_digest"], r["created_at"]) for k, r in after.items() if k in before} == before
    row.update(lost=0, duplicates=store.count_runs("faults") - len(after), wasted=0)


def test_nan_loss_is_recorded_as_diverged_and_kept(campaign, request):
    store, (_, _, specs), _, _, _ = campaign
    row = figure(request, "NaN loss (learning rate 1e12)", cases=1)
    diverging = specs[1]
    run = _by_key(store)[diverging.key]
    assert run["status"] == "diverged" and "lower the learning rate" in run["error"]
    assert diverging.key in store.done_keys([diverging.key]), "a diverged run is final: a re-run does not retrain it"
    row.update(lost=0, duplicates=0, wasted=0)


def _report_rows(store: Store) -> int:
    return len(list(store.iter_reports("faults")))


def _aggregate(out_dir: Path, home: Path) -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIFTLAB_HOME", str(home))
        mp.delenv("DRIFTLAB_DB_URL", raising=False)
        return stages.aggregate(CONFIG, CAMPAIGN, str(out_dir))


def test_aggregate_counts_failed_and_diverged_runs(campaign, tmp_path):
    store, _, _, _, home = campaign
    result = _aggregate(tmp_path / "report", home)
    report = json.loads(Path(result["paths"]["json"]).read_text())
    assert report["counts"] == {**report["counts"], "runs": 4, "ok": 2, "failed": 1, "diverged": 1}
    assert report["counts"]["reference_runs"] == 2, "only finished runs are compared"


def test_read_only_report_folder_is_a_clear_error_and_a_rerun_works(campaign, tmp_path, request):
    store, _, _, _, home = campaign
    row = figure(request, "read-only report folder", cases=1)
    runs_before, reports_before = store.count_runs("faults"), _report_rows(store)
    with small_filesystem(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(OSError) as info:
            _aggregate(ro / "report", home)
        message = str(info.value)
        assert str(ro / "report") in message and "writable" in message, message
        assert info.value.errno in (errno.EROFS, errno.EACCES)
    assert store.count_runs("faults") == runs_before, "no run record touched"
    assert _report_rows(store) == reports_before, "no report row for a report that was not written"

    t0 = time.monotonic()
    result = _aggregate(tmp_path / "writable", home)
    row.update(lost=0, duplicates=0, wasted=0, recover_s=time.monotonic() - t0)
    assert Path(result["paths"]["html"]).exists() and _report_rows(store) == reports_before + 1


def test_full_disk_keeps_the_previous_report_and_a_rerun_works(campaign, tmp_path, request):
    store, _, _, _, home = campaign
    row = figure(request, "disk full on the report path", cases=1)
    with small_filesystem(tmp_path / "small", size="1m") as disk:
        out = disk / "report"
        first = _aggregate(out, home)
        previous = {name: Path(p).read_bytes() for name, p in first["paths"].items()}
        reports_before = _report_rows(store)

        filler = fill(disk, leave_bytes=1024)
        with pytest.raises(OSError) as info:
            _aggregate(out, home)
        assert info.value.errno == errno.ENOSPC
        assert str(out) in str(info.value) and "free space" in str(info.value), str(info.value)
        for name, p in first["paths"].items():
            assert Path(p).read_bytes() == previous[name], f"the previous {name} report was damaged"
        assert not list(out.glob("*.tmp")), "no half-written file left behind"
        assert _report_rows(store) == reports_before

        filler.unlink()
        t0 = time.monotonic()
        again = _aggregate(out, home)
        row.update(lost=0, duplicates=0, wasted=0, recover_s=time.monotonic() - t0)
        assert json.loads(Path(again["paths"]["json"]).read_text())["counts"]["ok"] == 2
        assert _report_rows(store) == reports_before + 1


MINIMAL = """\
name: minimal
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 16}}
seeds: {init: [0], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""


def test_experiment_without_tuning_on_one_profile_runs_end_to_end(tmp_path, request):
    """No search space (nothing to tune) and one profile (no other node pool): both loops are empty.

    ``driftlab validate`` accepts the file, so ``driftlab run`` must finish it: an
    empty ParallelFor and the collected outputs of an empty loop must not fail the run.
    """
    import os
    import subprocess
    import sys

    row = figure(request, "`driftlab run`: nothing to tune, one profile (empty loops)", cases=1)
    config = tmp_path / "minimal.yaml"
    config.write_text(MINIMAL)
    env = {**os.environ}
    env.pop("DRIFTLAB_DB_URL", None)
    proc = subprocess.run([sys.executable, "-m", "driftlab", "run", str(config), "--home", str(tmp_path / "home")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(next((tmp_path / "home").glob("reports/default/*/report.json")).read_text())
    assert report["counts"]["ok"] == 1
    row.update(lost=0, duplicates=0, wasted=0)
