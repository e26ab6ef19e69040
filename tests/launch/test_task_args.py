"""The bound on a task's argument is the real ceiling, and it covers what kfp.local really hands every task.

Two measurements with kfp itself: a kfp.local task whose executor input is exactly
``MAX_TASK_ARGUMENT`` bytes starts and one byte more fails with "Argument list too long"; and
for every task of the compiled pipeline, the executor input kfp.local builds (its own
``construct_executor_input``) from the largest values each parameter can hold is within the
bound ``task_args.check`` computes, and close to it.
"""

# No "from __future__ import annotations": KFP reads the real annotation types of the component below.
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from driftlab.config import load_config_text
from driftlab.contracts import (MAX_PARAMS_TEXT, MAX_TASK_ARGUMENT, MAX_TUNING_TEXT, TooLargeForTask,
                                bounded_tuning_summary, escaped_size)
from driftlab.launch import task_args

STAMP = "-2025-01-01-00-00-00-000000"  # kfp.local names a run after its pipeline, then a fixed-width time stamp


def executor_input_size(component: dict, arguments: dict, pipeline_root: str, task: str,
                        pipeline: str = "driftlab") -> int:
    """The length of the executor input kfp.local puts in the task's one argument (its own functions)."""
    from google.protobuf import json_format
    from kfp.local import executor_input_utils as eiu
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(component, pipeline_spec_pb2.ComponentSpec())
    root = eiu.construct_local_task_root(pipeline_root=pipeline_root, pipeline_resource_name=pipeline + STAMP,
                                         task_resource_name=task)
    message = eiu.construct_executor_input(spec, arguments, root, False)
    return len(json.dumps(eiu.executor_input_to_dict(message, spec)))


def test_the_ceiling_is_linuxs_limit_on_one_argument(tmp_path, monkeypatch):
    from kfp import dsl, local

    @dsl.component(install_kfp_package=False)
    def echo(text: str) -> int:
        return len(text)

    @dsl.pipeline(name="ceiling")
    def ceiling(text: str):
        echo(text=text)

    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    root = str(tmp_path / "kfp")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True)
    component = _component_dict(echo)
    fixed = executor_input_size(component, {"text": ""}, root, "echo", "ceiling")
    n = MAX_TASK_ARGUMENT - fixed
    assert executor_input_size(component, {"text": "a" * n}, root, "echo", "ceiling") == MAX_TASK_ARGUMENT
    ceiling(text="a" * n)  # exactly the limit: the task starts
    with pytest.raises(Exception, match="Argument list too long"):
        ceiling(text="a" * (n + 1))


def _component_dict(component) -> dict:
    from google.protobuf import json_format

    spec = component.pipeline_spec
    return json_format.MessageToDict(spec.components[next(iter(spec.components))])


CONFIG = """\
name: bound-check
description: "Ünïcødé and quotes \\" take more room escaped: {}"
dataset: {{name: digits}}
model: {{builder: mlp, epochs: 1, hyperparameters: {{layers: 1}}}}
search_space:
  units: {{type: int, low: -100000, high: 96}}
  learning_rate: {{type: float, low: 0.0005, high: 0.01, log: true}}
  activation: {{type: categorical, choices: [relu, "tanh \\"quoted\\" {}"]}}
tuning: {{trials: 5000, workers: 2, top_k: 1000, retrain_top_k: 10}}
seeds: {{init: [0, 1], repeats: 1, deterministic: [true]}}
profiles:
  reference: cpu-default
  pools:
{}
"""


def _config_text(pools: int = 12) -> str:
    names = "".join(f"    - {{name: cpu-{'p' * 50}-{i:03d}, node_selector: {{pool: big-{i}}}}}\n" for i in range(pools))
    return CONFIG.format("é" * 2000, "x" * 300, "    - {name: cpu-default}\n" + names)


def _largest_tuning_text(config) -> str:
    import optuna

    from driftlab.tuning.results import summarize

    worst = task_args.worst_params(config)
    dists = {"units": optuna.distributions.IntDistribution(-100000, 96),
             "learning_rate": optuna.distributions.FloatDistribution(-1.0, 1.0),  # holds the longest float
             "activation": optuna.distributions.CategoricalDistribution(
                 config.search_space["activation"].choices)}
    trials = [optuna.trial.create_trial(params=worst, distributions=dists, value=-1e-300 - i * 1e-310)
              for i in range(1200)]
    for number, t in enumerate(trials):
        t.number = number + 100_000
    summary = summarize(f"driftlab.{config.name}.{'c' * 128}", trials, direction="maximize", top_k=1000)
    summary.update(budget=100_000, source={"kind": "driftlab", "study": summary["study"], "storage": "s" * 200,
                                           "trial": summary["best_trial"]},
                   open_with={k: "optuna x --storage " + "s" * 200 for k in ("a", "b", "c")},
                   trials_per_worker=[100_000, 100_000])
    return bounded_tuning_summary(summary, keep=config.tuning.retrain_top_k)


def _worst_arguments(config, text: str, campaign: str) -> dict[str, object]:
    from driftlab import stages
    from driftlab.components.images import DEFAULT_REGISTRY, image_names
    from driftlab.config import params

    worst = task_args.worst_params(config)
    items = stages.node_tasks(text, worst)
    node = max(items, key=escaped_size)
    shards = stages.seed_tasks(text)

    def summary(name: str) -> dict:
        return {"profile": name, "planned": 1_000_000, "skipped": 1_000_000, "trained": 1_000_000,
                "failed": 1_000_000, "seconds": 123456.789012, "workers": 256,
                "skipped_profile": "the experiment has a single profile"}

    cpu, gpu = image_names(DEFAULT_REGISTRY)
    return {"config_yaml": text, "campaign": campaign, "tuning": _largest_tuning_text(config),
            "seeds_summary": [summary("cpu-default") for _ in shards],
            "nodes_summary": [summary(i["profile"]) for i in items], "shard_index": 999_999, "shard_count": 1_000_000,
            "node": node, "best_params": params.encode_typed(config, worst), "trials_per_worker": [100_000] * 2,
            "profile": node["profile"], "cpu_image": cpu, "gpu_image": gpu, "gate": "INCOMPLETE",
            "worker_index": 255, "status": {"state": "FAILED", "pipeline_job_resource_name": "local-pipeline-x" * 4,
                                            "pipeline_task_name": "driftlab-run", "error": {"code": 1, "message":
                                                                                            "Task x failed."}}}


def test_the_bound_covers_kfps_own_executor_input_for_every_task(tmp_path, monkeypatch):
    from kfp import compiler

    from driftlab.pipelines.driftlab_pipeline import build_pipeline

    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    package = tmp_path / "driftlab.yaml"
    compiler.Compiler().compile(build_pipeline(retries=0), str(package))
    components = next(yaml.safe_load_all(package.read_text()))["components"]
    text = _config_text()
    config = load_config_text(text)
    home = tmp_path / ("h" * 200) / ("o" * 200) / "home"
    campaign = "c" * 128
    arguments = _worst_arguments(config, text, campaign)
    assert escaped_size(arguments["tuning"]) > 0.9 * MAX_TUNING_TEXT, "control: the tuning summary is near its cap"
    bound = task_args.check(config, text, home=home, campaign=campaign, source="exp.yaml", home_field="--home")
    sizes = {}
    for name, component in components.items():
        if "executorLabel" not in component:
            continue
        wanted = component.get("inputDefinitions", {}).get("parameters", {})
        sizes[name] = executor_input_size(component, {p: arguments[p] for p in wanted}, str(home / "kfp"),
                                          name[len("comp-"):])
    assert len(sizes) >= 10, sorted(sizes)
    largest = max(sizes, key=sizes.get)
    assert largest == "comp-aggregate-drift", sizes
    assert sizes[largest] <= bound, (sizes[largest], bound)
    assert bound - sizes[largest] < 0.15 * bound, f"the bound is not vacuous: {bound:,} for {sizes[largest]:,}"
    overhead = {n: s - escaped_size(text) for n, s in sizes.items() if n in ("comp-prepare", "comp-tune")}
    assert all(s <= task_args.EXECUTOR_OVERHEAD + task_args.OUTPUT_PATHS * (escaped_size(str(home)) + 4)
               + task_args.CAMPAIGN_BYTES for s in overhead.values()), overhead


def test_a_shorter_experiment_is_accepted_and_a_longer_one_refused_at_the_same_line():
    text = _config_text(pools=120)  # their summaries leave the file less room than the loader's own limit
    config = load_config_text(text)
    home = Path("/tmp/home")
    bound = task_args.check(config, text, home=home, campaign="default", source="exp.yaml", home_field="--home")
    room = MAX_TASK_ARGUMENT - bound
    assert room > 0, "control: the file as it is fits"
    longer = text.replace("Ünïcødé", "Ünïcødé" + "x" * room)
    assert task_args.check(load_config_text(longer), longer, home=home, campaign="default", source="exp.yaml",
                           home_field="--home") == MAX_TASK_ARGUMENT
    too_long = text.replace("Ünïcødé", "Ünïcødé" + "x" * (room + 1))
    # The largest part is named: here the 121 profiles' summaries, more than the file itself.
    with pytest.raises(TooLargeForTask, match=r"^profiles.pools: task 'aggregate-drift' would get a "
                                              rf"{MAX_TASK_ARGUMENT + 1:,}-byte argument"):
        task_args.check(load_config_text(too_long), too_long, home=home, campaign="default", source="exp.yaml",
                        home_field="--home")


def test_worst_params_take_the_longest_text_each_parameter_can_have():
    config = load_config_text(_config_text(pools=1))
    worst = task_args.worst_params(config)
    assert worst["units"] == -100000 and worst["learning_rate"] == task_args.WORST_FLOAT
    assert len(repr(task_args.WORST_FLOAT)) == 24 and worst["activation"].startswith("tanh")
    size, field = task_args.params_share(config)
    assert field == "search_space.activation" and size <= MAX_PARAMS_TEXT
