"""One rule for which profiles run: every stage accepts or refuses the same profile set."""

from __future__ import annotations

import pytest

from driftlab import stages
from driftlab.config import load_config_text
from driftlab.config.profiles import CLUSTER, LOCAL, ProfileError, profiles_for, supported_isas

# An ISA cap above this CPU (2-core AVX2 machine; an AMX-capable CPU would make the control moot).
CAP = "AVX512_CORE_AMX"
CONFIG = f"""\
name: policy
dataset: {{name: digits}}
model: {{builder: mlp, epochs: 1, hyperparameters: {{units: 8}}}}
seeds: {{init: [0, 1], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}}
profiles:
  reference: cpu-default
  pools:
    - {{name: cpu-default}}
    - {{name: cpu-amx, isa: {CAP}}}
    - {{name: gpu-a100, kind: gpu, accelerator: {{type: nvidia.com/gpu}}, node_selector: {{pool: a100}}}}
"""

pytestmark = pytest.mark.skipif(CAP in supported_isas(), reason=f"this CPU runs {CAP}: no cap to refuse")


def planned_profiles(monkeypatch, where: str) -> dict[str, object]:
    """What each stage resolves, with DRIFTLAB_WHERE as a Pod (or driftlab run) has it."""
    monkeypatch.setenv("DRIFTLAB_WHERE", where)
    config = load_config_text(CONFIG)
    seen: dict[str, object] = {}
    for stage, call in {
        "prepare": lambda: stages.prepare(CONFIG, "c")["profiles"],
        "plan_nodes": lambda: sorted({t["profile"] for t in stages.node_tasks(CONFIG, {})}),
        "retrain/aggregate": lambda: sorted(p for p in stages._profiles(config).names() if p != "cpu-default"),
        "submit/placement": lambda: sorted(p for p in profiles_for(config, CLUSTER if where == "cluster" else LOCAL)
                                           .names() if p != "cpu-default"),
    }.items():
        try:
            seen[stage] = sorted(call())
        except ProfileError as exc:
            seen[stage] = f"refused: {str(exc).split(':')[0]}"
    return seen


def test_on_a_cluster_every_stage_accepts_the_same_profiles(monkeypatch, home):
    seen = planned_profiles(monkeypatch, "cluster")
    assert len({str(v) for v in seen.values()}) == 1, seen
    assert seen["prepare"] == ["cpu-amx", "gpu-a100"], "the planning Pod's CPU does not judge other pools"


def test_locally_every_stage_refuses_the_same_cap(monkeypatch, home):
    seen = planned_profiles(monkeypatch, "local")
    assert set(seen.values()) == {"refused: profiles.pools[cpu-amx].isa"}, seen


def test_the_training_task_on_its_own_node_still_checks_the_cap(monkeypatch, home):
    monkeypatch.setenv("DRIFTLAB_WHERE", "cluster")
    with pytest.raises(ProfileError, match=f"this CPU cannot run {CAP}"):
        stages.retrain_node(CONFIG, "c", {}, "cpu-amx", jobs=1, quiet=True)


def test_an_unknown_where_is_refused():
    with pytest.raises(ProfileError, match="where"):
        profiles_for(load_config_text(CONFIG), "moon")
