"""The compiled pipeline: golden file, placement per pool, no credentials, exit handler.

Everything about placement is asserted on the compiled YAML document (what a KFP
server receives), not on Python objects. The golden test compiles with the real
``kfp dsl compile`` command in a fresh process, as a reviewer would.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "pipelines" / "driftlab.yaml"
KFP_CLI = Path(sys.executable).with_name("kfp")
# Changes with the kfp release only; everything else must match byte for byte once parsed.
VOLATILE = ("sdkVersion",)
TRAINING_TASKS = ("tune", "retrain-across-seeds", "retrain-top-k", "retrain-across-nodes")
DATABASE_TASKS = ("prepare", "select-best", "retrain-across-seeds", "retrain-top-k", "retrain-across-nodes",
                  "aggregate-drift", "record-outcome")
# user:password@ in a URL, a password assignment, or a libpq password parameter.
CREDENTIAL = re.compile(r"://[^/\s'\"]+:[^@\s'\"]+@|password\s*[=:]\s*\S|PGPASSWORD", re.IGNORECASE)


def compile_with_cli(out: Path) -> None:
    # No PYTHONPATH: the pipeline and its components are installed with the package.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLAB_") and k != "PYTHONPATH"}
    result = subprocess.run([str(KFP_CLI), "dsl", "compile", "--py", "pipelines/driftlab_pipeline.py",
                             "--output", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def documents(path: Path) -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all(path.read_text())
    for key in VOLATILE:
        spec.pop(key, None)
    return spec, platform


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compiled") / "driftlab.yaml"
    compile_with_cli(out)
    return out


@pytest.fixture(scope="module")
def spec(compiled) -> dict:
    return documents(compiled)[0]


@pytest.fixture(scope="module")
def executors(compiled) -> dict:
    return documents(compiled)[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def task_in(spec: dict, name: str) -> tuple[str, dict]:
    """(component holding the task, task spec) for a task name anywhere in the DAGs."""
    for comp_name, comp in [("root", spec["root"]), *spec["components"].items()]:
        tasks = comp.get("dag", {}).get("tasks", {})
        if name in tasks:
            return comp_name, tasks[name]
    raise KeyError(name)


def placement_task_of(spec: dict, executors: dict, task: str) -> tuple[str, dict]:
    """The placement step whose outputs a training task's node selector comes from, and its spec."""
    selector = executors[f"exec-{task}"]["nodeSelector"]["nodeSelectorJson"]["taskOutputParameter"]
    assert selector["outputParameterKey"] == "node_selector"
    dag, _ = task_in(spec, task)
    producer_dag, producer = task_in(spec, selector["producerTask"])
    assert producer_dag == dag, f"{task}'s placement comes from another DAG ({producer_dag} vs {dag})"
    return selector["producerTask"], producer


def test_checked_in_yaml_is_what_kfp_dsl_compile_produces(compiled):
    assert documents(compiled) == documents(GOLDEN), (
        "pipelines/driftlab.yaml is stale: run `kfp dsl compile --py pipelines/driftlab_pipeline.py "
        "--output pipelines/driftlab.yaml` and review the diff")


def test_importing_the_pipeline_module_runs_nothing():
    # Compiling imports the module: it may build the graph, never start a stage.
    code = ("import sys, driftlab.stages as s\n"
            "s.prepare = s.tune = s.retrain_seeds = s.retrain_node = s.aggregate = "
            "lambda *a, **k: sys.exit('a stage ran at import')\n"
            "import driftlab.pipelines.driftlab_pipeline as p\n"
            "assert 'tensorflow' not in sys.modules, 'TensorFlow imported at compile time'\n"
            "print(p.driftlab_pipeline.name)")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # installed with the package: no path needed
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "driftlab"


def test_pipeline_parameters_are_the_experiment_text_and_campaign_only(spec):
    assert set(spec["root"]["inputDefinitions"]["parameters"]) == {"config_yaml", "campaign"}


@pytest.mark.parametrize("task, profile_source", [("tune", "reference"), ("retrain-across-seeds", "reference"),
                                                   ("retrain-across-nodes", "loop item")])
def test_each_training_task_is_placed_by_its_own_placement_step(spec, executors, task, profile_source):
    placement_name, placement = placement_task_of(spec, executors, task)
    executor = executors[f"exec-{task}"]
    # Tolerations come from the same step.
    (toleration,) = executor["tolerations"]
    assert toleration["tolerationJson"]["taskOutputParameter"] == {"outputParameterKey": "tolerations",
                                                                    "producerTask": placement_name}
    # Requests, accelerator and image are placeholders for that step's outputs.
    container = spec["deploymentSpec"]["executors"][f"exec-{task}"]["container"]
    prefix = f"pipelinechannel--{placement_name}-"
    assert container["resources"]["resourceCpuRequest"] == f"{{{{$.inputs.parameters['{prefix}cpu_request']}}}}"
    assert container["resources"]["resourceMemoryRequest"] == \
        f"{{{{$.inputs.parameters['{prefix}memory_request']}}}}"
    assert container["resources"]["accelerator"] == {
        "resourceType": f"{{{{$.inputs.parameters['{prefix}accelerator_type']}}}}",
        "resourceCount": f"{{{{$.inputs.parameters['{prefix}accelerator_count']}}}}"}
    assert container["image"] == f"{{{{$.inputs.parameters['{prefix}image']}}}}"
    _, task_spec = task_in(spec, task)
    assert task_spec["inputs"]["parameters"][f"{prefix}accelerator_type"]["taskOutputParameter"] == {
        "outputParameterKey": "accelerator_type", "producerTask": placement_name}
    # Which profile the step resolves: the reference (empty name) or this iteration's pool.
    profile = placement["inputs"]["parameters"]["profile"]
    if profile_source == "reference":
        assert profile == {"runtimeValue": {"constant": ""}}
    else:
        loop_dag, _ = task_in(spec, task)
        item = spec["components"][loop_dag]["inputDefinitions"]["parameters"]
        assert profile["componentInputParameter"] in item
        assert profile["componentInputParameter"].endswith("-loop-item")
        assert profile["parameterExpressionSelector"] == 'parseJson(string_value)["profile"]'


def test_placement_outputs_are_the_types_the_driver_reads(spec):
    outputs = spec["components"]["comp-pool-placement"]["outputDefinitions"]["parameters"]
    # The driver resolves resource placeholders with GetStringValue(): a number would resolve to "".
    assert {k: v["parameterType"] for k, v in outputs.items()} == {
        "node_selector": "STRUCT", "tolerations": "LIST", "accelerator_type": "STRING",
        "accelerator_count": "STRING", "cpu_request": "STRING", "memory_request": "STRING", "image": "STRING"}


def test_every_task_is_a_labelled_cluster_pod_without_cache(spec, executors):
    tasks = {name: task for comp in [spec["root"], *spec["components"].values()]
             for name, task in comp.get("dag", {}).get("tasks", {}).items() if "cachingOptions" in task}
    assert len(tasks) >= 11, sorted(tasks)
    for name, task in tasks.items():
        assert task["cachingOptions"] == {}, f"{name}: KFP caching must be off (driftlab resumes by run keys)"
    for name, executor in executors.items():
        assert executor["podMetadata"]["labels"] == {"app.kubernetes.io/part-of": "driftlab",
                                                     "driftlab/role": "pipeline"}, name
        assert executor["podMetadata"]["annotations"]["driftlab/where"] == "cluster", name
        assert set(executor["podMetadata"]["annotations"]) <= {"driftlab/where", "driftlab/study-proxy"}, name
        assert {"fieldPath": "metadata.annotations['driftlab/where']", "name": "DRIFTLAB_WHERE"} \
            in executor["fieldPathAsEnv"], name
    # The marker must not be a plain env value: kfp.local applies those, and a local run would think it
    # was on a cluster.
    for name, executor in spec["deploymentSpec"]["executors"].items():
        env = {e["name"] for e in executor["container"].get("env", [])}
        assert "DRIFTLAB_WHERE" not in env, name


def test_database_url_only_from_the_secret_and_only_where_used(spec, executors):
    for name, executor in executors.items():
        task = name.removeprefix("exec-")
        secrets = executor.get("secretAsEnv", [])
        if task in DATABASE_TASKS:
            assert secrets == [{"keyToEnv": [{"envVar": "DRIFTLAB_DB_URL", "secretKey": "DRIFTLAB_DB_URL"}],
                                "optional": False, "secretName": "driftlab-db",
                                "secretNameParameter": {"runtimeValue": {"constant": "driftlab-db"}}}], task
        else:
            assert secrets == [], f"{task} does not use the database and must not see its URL"
    for name, executor in spec["deploymentSpec"]["executors"].items():
        assert all(e["name"] != "DRIFTLAB_DB_URL" for e in executor["container"].get("env", [])), name


def test_tune_pods_reach_the_study_through_the_proxy_and_hold_no_credential(spec, executors):
    """Trials train user code: the tune Pod gets the proxy's address, never the database Secret."""
    tune = executors["exec-tune"]
    assert tune.get("secretAsEnv", []) == []
    assert {"fieldPath": "metadata.annotations['driftlab/study-proxy']", "name": "DRIFTLAB_STUDY_GRPC"} \
        in tune["fieldPathAsEnv"]
    assert tune["podMetadata"]["annotations"]["driftlab/study-proxy"] == "driftlab-study-proxy:13000"
    # Not a plain env value: kfp.local would apply it and look for a proxy that is not there.
    env = {e["name"] for e in spec["deploymentSpec"]["executors"]["exec-tune"]["container"].get("env", [])}
    assert "DRIFTLAB_STUDY_GRPC" not in env
    # Control: the retrain Pods write run records and do get the Secret.
    assert executors["exec-retrain-across-seeds"]["secretAsEnv"]


def test_compiled_yaml_contains_no_credential(compiled):
    text = compiled.read_text()
    assert not CREDENTIAL.search(text), CREDENTIAL.search(text).group(0)
    # Control: the same check catches a URL with a password, had one leaked into the document.
    leaked = text.replace("driftlab-db", "postgresql://driftlab:s3cret@driftlab-postgres:5432/driftlab", 1)
    assert CREDENTIAL.search(leaked)


def test_training_tasks_retry_with_backoff_and_loops_are_limited(spec):
    for task in TRAINING_TASKS:
        _, task_spec = task_in(spec, task)
        assert task_spec["retryPolicy"] == {"maxRetryCount": 3, "backoffDuration": "30s", "backoffFactor": 2.0,
                                            "backoffMaxDuration": "3600s"}, task
    loops = {t["taskInfo"]["name"]: t for comp in spec["components"].values()
             for t in comp.get("dag", {}).get("tasks", {}).values() if "parameterIterator" in t}
    assert {name: t["iteratorPolicy"]["parallelismLimit"] for name, t in loops.items()} == {
        "tune-workers": 4, "seed-shards": 8, "node-pools": 4}


def test_exit_handler_records_the_outcome_whatever_it_was(spec):
    root_tasks = spec["root"]["dag"]["tasks"]
    outcome = root_tasks["record-outcome"]
    body = outcome["dependentTasks"]
    assert body == ["exit-handler-1"]
    assert outcome["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
    assert outcome["inputs"]["parameters"]["status"] == {"taskFinalStatus": {"producerTask": "exit-handler-1"}}
    # Everything else runs inside the handled body.
    inside = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    names = {t["taskInfo"]["name"] for t in inside.values()}
    assert {"prepare", "select-best", "plan-seeds", "seed-shards", "plan-nodes", "node-pools",
            "aggregate-drift", "check-gate"} <= names
    # The training stages run inside their loops, one Pod per shard or pool item.
    loops = {t["taskInfo"]["name"]: spec["components"][t["componentRef"]["name"]]["dag"]["tasks"]
             for t in inside.values() if "parameterIterator" in t}
    assert "retrain-across-seeds" in loops["seed-shards"]
    assert "retrain-across-nodes" in loops["node-pools"]


def test_kfp_compiler_still_rejects_loop_item_fields_in_pod_settings():
    """Why a placement step exists: kfp 2.17 cannot put a loop item's field into a node selector.

    When this starts to pass compilation, the placement step can be replaced by
    ``add_node_selector_json(task, item.node_selector)`` and friends.
    """
    from kfp import compiler, dsl, kubernetes

    # This file uses postponed annotations; KFP needs real types, so set them explicitly.
    def items():
        return [{"node_selector": {"a": "b"}}]

    def use(x):
        print(x)

    items.__annotations__ = {"return": list}
    use.__annotations__ = {"x": dict}
    items_op, use_op = dsl.component(items, base_image="python:3.11"), dsl.component(use, base_image="python:3.11")

    def canary():
        with dsl.ParallelFor(items_op().output) as item:
            kubernetes.add_node_selector_json(use_op(x=item), item.node_selector)

    with pytest.raises(Exception, match="node_selector"):
        compiler.Compiler().compile(dsl.pipeline(canary, name="canary"), os.devnull)


# -- what the pipeline's own steps compute ---------------------------------------------------

def experiment_with(profiles_file: Path) -> str:
    experiment = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    experiment["profiles"] = yaml.safe_load(profiles_file.read_text())["profiles"]
    return yaml.safe_dump(experiment)


def test_pool_placement_of_gke_pools_and_the_reference():
    from driftlab.cluster.pools import pool_placement

    text = experiment_with(ROOT / "manifests" / "profiles" / "gke.yaml")
    reference = pool_placement(text, "", cpu_image="cpu:1", gpu_image="gpu:1")
    assert reference == {
        "profile": "gke-a100-fp32", "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}],
        "accelerator_type": "nvidia.com/gpu", "accelerator_count": "1", "cpu_request": "4", "memory_request": "16Gi",
        "image": "gpu:1"}
    t4 = pool_placement(text, "gke-t4", cpu_image="cpu:1", gpu_image="gpu:1")
    assert (t4["node_selector"], t4["memory_request"]) == ({"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
                                                           "12Gi")


def test_pool_placement_of_a_cpu_profile_requests_no_accelerator():
    from driftlab.cluster.pools import DEFAULT_CPU_REQUEST, DEFAULT_MEMORY_REQUEST, pool_placement

    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    # cpu-avx is capped at an ISA this machine may lack: placement must not care, the node checks.
    where = pool_placement(text, "cpu-avx", cpu_image="cpu:1", gpu_image="gpu:1")
    assert where == {"profile": "cpu-avx", "node_selector": {}, "tolerations": [], "accelerator_type": "",
                     "accelerator_count": "0", "cpu_request": DEFAULT_CPU_REQUEST,
                     "memory_request": DEFAULT_MEMORY_REQUEST, "image": "cpu:1"}


@pytest.mark.filterwarnings("ignore:You may be attemping:RuntimeWarning")  # the cluster image, unused locally
def test_pool_placement_step_runs_under_kfp_local(tmp_path):
    from kfp import local

    from driftlab.components.pool_placement import pool_placement

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path), raise_on_error=True)
    text = experiment_with(ROOT / "manifests" / "profiles" / "eks.yaml")
    task = pool_placement(config_yaml=text, profile="eks-t4", cpu_image="cpu:1", gpu_image="gpu:1")
    assert task.outputs["node_selector"] == {"node.kubernetes.io/instance-type": "g4dn.xlarge"}
    assert task.outputs["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert (task.outputs["accelerator_type"], task.outputs["accelerator_count"]) == ("nvidia.com/gpu", "1")
    assert task.outputs["image"] == "gpu:1"


@pytest.mark.db
def test_exit_record_writes_the_outcome_on_a_cluster_and_nothing_locally(pg_url, monkeypatch):
    import sqlalchemy as sa

    from driftlab.cluster.exit_record import record_outcome

    text = (ROOT / "examples" / "quickstart.yaml").read_text()
    monkeypatch.setenv("DRIFTLAB_DB_URL", pg_url)
    engine = sa.create_engine(pg_url)

    def executions():
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT campaign, status, \"where\", finished_at IS NOT NULL "
                                        "FROM driftlab_executions ORDER BY id")).all()

    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    local = record_outcome(text, "c1", {"state": "FAILED", "pipeline_job_resource_name": "run-1"})
    assert local["recorded"] is False  # `driftlab run` records local executions itself

    monkeypatch.setenv("DRIFTLAB_WHERE", "cluster")
    failed = record_outcome(text, "c1", {"state": "FAILED", "pipeline_job_resource_name": "run-1"})
    ok = record_outcome(text, "c2", {"state": "SUCCEEDED", "pipeline_job_resource_name": "run-2"})
    assert (failed["status"], ok["status"]) == ("failed", "succeeded")
    assert executions() == [("c1", "failed", "cluster", True), ("c2", "succeeded", "cluster", True)]
    engine.dispose()


@pytest.mark.parametrize("state, status", [("SUCCEEDED", "succeeded"), ("FAILED", "failed"),
                                           ("CANCELLED", "canceled"), ("SOMETHING_NEW", "failed")])
def test_final_states_map_to_execution_statuses(state, status):
    from driftlab.cluster.exit_record import execution_status

    assert execution_status(state) == status


def images_of(path: Path) -> set[str]:
    """Every driftlab image the compiled pipeline names: task images and the placement step's inputs."""
    return set(re.findall(r"[a-z0-9][\w.\-/:]*/driftlab-(?:cpu|gpu):[\w.]+", path.read_text()))


def test_the_image_registry_is_chosen_at_compile_time(tmp_path):
    from driftlab.cli import main

    default, custom = tmp_path / "default.yaml", tmp_path / "custom.yaml"
    assert main(["compile", "--output", str(default)]) == 0
    assert main(["compile", "--output", str(custom), "--image-registry", "europe-docker.pkg.dev/acme/ml"]) == 0
    assert images_of(default) == {"ghcr.io/driftlab/driftlab-cpu:0.1.0", "ghcr.io/driftlab/driftlab-gpu:0.1.0"}
    assert images_of(custom) == {"europe-docker.pkg.dev/acme/ml/driftlab-cpu:0.1.0",
                                 "europe-docker.pkg.dev/acme/ml/driftlab-gpu:0.1.0"}
    text = custom.read_text()
    assert "ghcr.io" not in text, "every task, and the placement step's image inputs, name the chosen registry"
    assert documents(default)[0]["root"] == documents(custom)[0]["root"], "the graph does not change"


def test_the_registry_also_comes_from_the_environment_and_bad_ones_are_refused(tmp_path, monkeypatch, capsys):
    from driftlab.cli import main

    monkeypatch.setenv("DRIFTLAB_IMAGE_REGISTRY", "registry.example.com/team")
    assert main(["compile", "--output", str(tmp_path / "env.yaml")]) == 0
    assert images_of(tmp_path / "env.yaml") == {"registry.example.com/team/driftlab-cpu:0.1.0",
                                                "registry.example.com/team/driftlab-gpu:0.1.0"}
    assert main(["compile", "--output", str(tmp_path / "bad.yaml"), "--image-registry", "https://x/y:latest"]) == 2
    assert "--image-registry" in capsys.readouterr().err and not (tmp_path / "bad.yaml").exists()


@pytest.mark.parametrize("task", TRAINING_TASKS)
def test_training_pods_tell_the_fingerprint_their_node_pod_and_namespace(executors, task):
    fields = {e["name"]: e["fieldPath"] for e in executors[f"exec-{task}"]["fieldPathAsEnv"]}
    assert fields["DRIFTLAB_NODE_NAME"] == "spec.nodeName"
    assert fields["DRIFTLAB_POD_NAME"] == "metadata.name"
    assert fields["DRIFTLAB_POD_NAMESPACE"] == "metadata.namespace"
