"""Stored runs measured in helper processes give exactly the report measured in the aggregating process.

``driftlab.drift.helpers``: the parts of a campaign read from a results database go to helper
processes when there are enough runs. Here the threshold is lowered to 0 so that the small
golden campaigns go through them; each test checks that the helpers really measured (the parent
attached the arrays of one run only: the one it sizes the blocks by).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from test_aggregate_streaming import campaign, from_store, report_json, stored


@pytest.fixture
def attaches(monkeypatch):
    """How many times this process attached a run's arrays."""
    from driftlab.drift import runs as drift_runs

    count = [0]
    attach = drift_runs.Run.attach

    def counted(self, arrays, task):
        count[0] += 1
        attach(self, arrays, task)

    monkeypatch.setattr(drift_runs.Run, "attach", counted)
    return count


@pytest.fixture
def fanned(monkeypatch):
    """Helpers for every campaign, however small (2 of them)."""
    from driftlab import settings
    from driftlab.drift import helpers

    monkeypatch.setattr(helpers, "MIN_RUNS", 0)
    monkeypatch.setenv(settings.AGGREGATE_HELPERS.name, "2")
    started = []
    expect = helpers.Helpers.expect

    def spied(self, n_runs):
        expect(self, n_runs)
        started.extend(p for p in self.procs if p not in started)

    monkeypatch.setattr(helpers.Helpers, "expect", spied)
    return started


def in_memory(name: str):
    from driftlab.drift import analyze

    records, config, profiles = campaign(name)
    return records, config, profiles, report_json(analyze(records, config, reference="ref", profiles=profiles))


@pytest.mark.parametrize("name", ["factorial", "regression", "many_groups"])
def test_helpers_give_exactly_the_in_memory_report(database_url, name, fanned, attaches):
    records, config, profiles, want = in_memory(name)
    store = stored(database_url, records)
    for block_bytes in (1, 20_000, 10 ** 9):  # a seed point per part, a few, all at once
        attaches[0] = 0
        assert from_store(store, config, profiles, block_bytes=block_bytes) == want, block_bytes
        assert attaches[0] == 1, "the parent read one run's arrays (to size the blocks); the helpers the rest"
    assert len(fanned) == 2 * 3 and all(p.poll() is not None for p in fanned), "2 helpers per analysis, all gone"


def test_control_without_helpers_the_parent_reads_every_run(tmp_path, monkeypatch, attaches):
    from driftlab import settings

    monkeypatch.setenv(settings.AGGREGATE_HELPERS.name, "0")
    records, config, profiles, want = in_memory("factorial")
    store = stored(f"sqlite:///{tmp_path / 'r.sqlite'}", records)
    assert from_store(store, config, profiles) == want
    assert attaches[0] > len(records) // 2


def test_below_the_threshold_no_helper_starts(tmp_path, monkeypatch, attaches):
    from driftlab import settings
    from driftlab.drift import helpers

    monkeypatch.setenv(settings.AGGREGATE_HELPERS.name, "2")
    monkeypatch.setattr(helpers, "MIN_RUNS", 10 ** 6)
    records, config, profiles, want = in_memory("factorial")
    assert from_store(stored(f"sqlite:///{tmp_path / 'r.sqlite'}", records), config, profiles) == want
    assert attaches[0] > 1, "measured in this process"


@pytest.mark.parametrize("killed", [1, 2])
def test_a_helper_that_dies_leaves_its_parts_to_the_parent(tmp_path, monkeypatch, fanned, attaches, killed):
    from driftlab.drift import helpers

    expect = helpers.Helpers.expect

    def then_kill(self, n_runs):
        expect(self, n_runs)
        for proc in self.procs[:killed]:
            proc.kill()
            proc.wait()

    monkeypatch.setattr(helpers.Helpers, "expect", then_kill)
    records, config, profiles, want = in_memory("many_groups")
    store = stored(f"sqlite:///{tmp_path / 'r.sqlite'}", records)
    assert from_store(store, config, profiles, block_bytes=20_000) == want
    assert attaches[0] > 1, "the parent measured the parts of the helpers that died"


def test_an_error_a_helper_meets_is_raised_as_it_is(tmp_path, monkeypatch, fanned):
    import sqlalchemy as sa

    from driftlab.drift import RecordError, analysis
    from driftlab.storage.store import runs as runs_table

    records, config, profiles, _ = in_memory("factorial")
    store = stored(f"sqlite:///{tmp_path / 'r.sqlite'}", records)
    gone = records[10]["key"]
    wanted_groups = analysis.wanted_groups

    def delete_then_list(runs, **kwargs):  # the run's row is removed after its scalars were read
        with store.engine.begin() as conn:
            conn.execute(sa.delete(runs_table).where(runs_table.c.key == gone))
        return wanted_groups(runs, **kwargs)

    monkeypatch.setattr(analysis, "wanted_groups", delete_then_list)
    with pytest.raises(RecordError, match=f"run {gone}: its arrays are no longer in the results database"):
        from_store(store, config, profiles)


def test_the_database_url_and_credentials_reach_helpers_by_pipe_only(tmp_path, monkeypatch, fanned, attaches):
    from driftlab import settings
    from driftlab.drift import helpers

    mark = "urlmark-7c1f"
    url = f"sqlite:///{tmp_path / mark}.sqlite"
    secret = "pw-9e2d"  # a credential in the stage's environment, as DRIFTLAB_DB_URL or libpq's PGPASSWORD
    monkeypatch.setenv(settings.DB_URL.name, f"postgresql://driftlab:{secret}@db.invalid:5432/driftlab")
    monkeypatch.setenv("PGPASSWORD", secret)
    seen = []
    expect = helpers.Helpers.expect

    def look(self, n_runs):
        expect(self, n_runs)
        for proc in self.procs:
            seen.append(Path(f"/proc/{proc.pid}/cmdline").read_bytes() + Path(f"/proc/{proc.pid}/environ").read_bytes())

    monkeypatch.setattr(helpers.Helpers, "expect", look)
    hellos = []
    send = helpers.send

    def spy(stream, message):
        if "task" in message:
            hellos.append(message)
        send(stream, message)

    monkeypatch.setattr(helpers, "send", spy)
    records, config, profiles, want = in_memory("factorial")
    assert from_store(stored(url, records), config, profiles) == want
    assert [h["secrets"]["PGPASSWORD"] for h in hellos] == [secret, secret], "what libpq would need, by pipe"
    assert len(seen) == 2 and not any(mark.encode() in s or secret.encode() in s for s in seen)
    assert attaches[0] == 1, "control: the helpers did open that database (they read every other run)"


@pytest.mark.parametrize("value", ["two", "-1", "1.5"])
def test_the_helpers_setting_is_checked(monkeypatch, value):
    from driftlab import settings
    from driftlab.drift.helpers import helper_count
    from driftlab.errors import BadInput

    monkeypatch.setenv(settings.AGGREGATE_HELPERS.name, value)
    with pytest.raises(BadInput, match=f"{settings.AGGREGATE_HELPERS.name}: '{value}' is not a whole number"):
        helper_count()
    monkeypatch.setenv(settings.AGGREGATE_HELPERS.name, "3")
    assert helper_count() == 3


def test_a_groups_numbers_do_not_depend_on_the_groups_measured_with_it():
    """The helper count sets the block size, so which groups share a batch: each group's numbers must not move."""
    import numpy as np

    from driftlab.drift.groupstats import measure
    from driftlab.drift.runs import Run

    rng = np.random.default_rng(7)

    def run(i: int) -> Run:
        p = rng.random((1000, 10)).astype(np.float32)
        return Run(key=str(i), profile="ref", init_seed=i, shuffle_seed=0, split_seed=0, repeat=0, deterministic=True,
                   metrics={}, loss=np.empty(0), predictions=p, labels=p.argmax(1), weights=None, weights_kind=None,
                   weights_digest=None, fit_s=None, n_eval=1000)

    for k in (2, 3):
        groups = [[run(10 * g + j) for j in range(k)] for g in range(7)]
        together = measure(groups, "classification", corr=True)
        alone = [measure([g], "classification", corr=True)[0] for g in groups]
        for a, b in zip(together, alone):
            assert (a.sqdiff, a.max_abs, a.disagree, a.corr) == (b.sqdiff, b.max_abs, b.disagree, b.corr), k
    # Control: the einsum these sums replaced gives other last digits for a row in a batch than alone.
    x, y = rng.random((7, 10_000)), rng.random((7, 10_000))
    assert (np.einsum("gm,gm->g", x, y) != [np.einsum("m,m->", a, b) for a, b in zip(x, y)]).any()


def test_the_report_is_the_same_for_any_helper_count(tmp_path, monkeypatch):
    from driftlab import settings
    from driftlab.config import ExperimentConfig
    from driftlab.drift import helpers
    from support.synthetic import SyntheticPlan, generate

    monkeypatch.setattr(helpers, "MIN_RUNS", 0)
    plan = SyntheticPlan(init=tuple(range(6)), shuffle=tuple(range(4)), split=(0, 1), repeats=2,
                         profiles=("ref", "b"), n_eval=1000, n_classes=10,
                         sigmas={"init": 0.01, "shuffle": 0.01, "hardware": 0.01, "nondeterminism": 0.01})
    store = stored(f"sqlite:///{tmp_path / 'r.sqlite'}", generate(plan))
    config = ExperimentConfig.model_validate({"name": "golden", "dataset": {"name": "digits"},
                                             "profiles": {"auto": True}})
    reports = []
    for count in ("0", "1", "3"):
        monkeypatch.setenv(settings.AGGREGATE_HELPERS.name, count)
        reports.append(from_store(store, config, None, block_bytes=4 * 2 ** 20))
    assert reports[0]["sources"]["init"]["correlation"] is not None
    assert reports[1] == reports[0] and reports[2] == reports[0]


def test_by_default_one_helper_per_usable_core_and_none_on_one(monkeypatch):
    from driftlab import settings
    from driftlab.drift.helpers import MAX_HELPERS, helper_count
    from driftlab.runs import executor

    monkeypatch.delenv(settings.AGGREGATE_HELPERS.name, raising=False)
    for cores, want in ((1, 0), (2, 2), (3, 3), (64, MAX_HELPERS)):
        monkeypatch.setattr(executor, "available_cpus", lambda cores=cores: cores)
        assert helper_count() == want, cores

