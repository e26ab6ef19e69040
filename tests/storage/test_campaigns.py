"""A campaign belongs to one experiment plan: changed files are refused, reports never mix plans."""

from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa

from driftlab import stages
from driftlab.storage.campaigns import CampaignConflict, check_campaign, replace_campaign
from driftlab.config import canonical_json, config_hash, load_config_text, plan_hash
from driftlab.runs.spec import RunSpec
from driftlab.storage.store import Store

CONFIG = """\
name: plans
description: first
dataset: {name: digits}
model: {builder: mlp, epochs: 6, batch_size: 64}
seeds: {init: [0, 1], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles: {pools: [{name: cpu-default}]}
tolerances: {max_disagreement: 0.5}
"""


@pytest.fixture
def store(database_url):
    return Store(database_url)


def record(store: Store, config_text: str, campaign: str, seeds=(0, 1)) -> list[RunSpec]:
    config = load_config_text(config_text)
    exp = store.experiment_id(config.name)
    store.start_execution(config.name, campaign, config_hash(config), canonical_json(config))
    specs = [stages._seed_spec(config, campaign, {}, stages.SeedPoint(i, 0, 0, 0, True), {"name": "cpu-default"},
                               "seeds", "digest") for i in seeds]
    store.save_runs(exp, [(s, {"status": "ok", "metrics": {"eval_accuracy": 0.9}}) for s in specs])
    return specs


def test_runs_carry_the_plan_hash_of_the_file_that_planned_them(store):
    specs = record(store, CONFIG, "c")
    assert {s.plan for s in specs} == {plan_hash(load_config_text(CONFIG))}
    with store.engine.connect() as conn:
        stored = set(conn.execute(sa.text("SELECT plan_hash FROM driftlab_runs")).scalars())
    assert stored == {plan_hash(load_config_text(CONFIG))}


def test_the_same_plan_resumes_and_budgets_or_prose_do_not_change_it(store):
    record(store, CONFIG, "c")
    same = CONFIG.replace("description: first", "description: second").replace("0.5}", "0.1}")
    check_campaign(store, load_config_text(same), "c")  # no error: same plan


def test_a_changed_plan_is_refused_naming_the_field_and_the_two_fixes(store):
    record(store, CONFIG, "c")
    changed = load_config_text(CONFIG.replace("epochs: 6", "epochs: 1"))
    with pytest.raises(CampaignConflict) as err:
        check_campaign(store, changed, "c")
    message = str(err.value)
    assert "model.epochs: 6 → 1" in message and "2 run(s) of another plan" in message
    assert "--campaign NEW-NAME" in message and "--replace" in message
    check_campaign(store, changed, "other")  # another campaign is free


def test_replace_discards_the_old_runs_and_reports_only(store):
    record(store, CONFIG, "c")
    record(store, CONFIG, "keep")
    config = load_config_text(CONFIG)
    store.save_report(config.name, "c", "PASS", {"x": 1})
    assert replace_campaign(store, config, "c") == 2
    assert store.load_runs("plans", "c") == [] and len(store.load_runs("plans", "keep")) == 2
    assert [r["campaign"] for r in store.iter_reports("plans")] == []


def test_aggregation_reads_only_the_current_plans_runs(store):
    old = record(store, CONFIG, "c")
    new_text = CONFIG.replace("epochs: 6", "epochs: 1")
    # Recorded behind the check's back (as a racing older version might): the reader still keeps them apart.
    new = record(store, new_text, "c")
    got = store.load_runs("plans", "c", plan=plan_hash(load_config_text(new_text)), with_arrays=False)
    assert {r["key"] for r in got} == {s.key for s in new} and not {r["key"] for r in got} & {s.key for s in old}


def test_version_1_tables_gain_the_plan_column_in_place(tmp_path):
    url = f"sqlite:///{tmp_path / 'v1.sqlite'}"
    Store(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # make it look like a version-1 database holding a run
        conn.execute(sa.text("DROP INDEX ix_driftlab_runs_scan"))  # made with the column, after version 3
        conn.execute(sa.text("ALTER TABLE driftlab_runs DROP COLUMN plan_hash"))
        conn.execute(sa.text("UPDATE driftlab_meta SET value='1' WHERE key='schema_version'"))
    store = Store(url)
    assert "plan_hash" in {c["name"] for c in sa.inspect(store.engine).get_columns("driftlab_runs")}
    assert "ix_driftlab_runs_scan" in {ix["name"] for ix in sa.inspect(store.engine).get_indexes("driftlab_runs")}
    spec = dataclasses.replace(record(store, CONFIG, "c")[0])
    assert spec.plan
