"""`driftlab pools discover` against node lists shaped as the Kubernetes API server returns them.

No cluster runs here, so a local HTTP server answers ``GET /api/v1/nodes`` with
NodeList documents modelled on real GKE, EKS and NVIDIA GPU feature discovery
nodes (labels, taints, capacity/allocatable quantities in the units the kubelet
reports), with ``limit``/``continue`` paging. The real ``kubernetes`` client
reads them through a kubeconfig that points at the server.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from driftlab.cli import main
from driftlab.cluster import discover

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "discovery-test-token"


def node(name: str, labels: dict[str, str], *, cpu: str, memory: str, gpus: int = 0,
         taints: list[dict] | None = None, unschedulable: bool = False) -> dict:
    """One item of a NodeList, with the fields a kubelet and cloud controller fill in."""
    whole_cores = str(-(-int(cpu[:-1]) // 1000)) if cpu.endswith("m") else cpu  # capacity: whole cores
    capacity = {"cpu": whole_cores,
                "ephemeral-storage": "98831908Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                "memory": memory, "pods": "110"}
    allocatable = {"cpu": cpu, "ephemeral-storage": "47060071478", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                   "memory": memory, "pods": "110"}
    if gpus:
        capacity["nvidia.com/gpu"] = allocatable["nvidia.com/gpu"] = str(gpus)
    spec: dict = {"podCIDR": "10.4.1.0/24", "podCIDRs": ["10.4.1.0/24"], "providerID": f"provider://{name}"}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "metadata": {"name": name, "uid": f"uid-{name}", "resourceVersion": "123456",
                     "creationTimestamp": "2026-01-05T10:00:00Z",
                     "labels": {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                                "kubernetes.io/hostname": name, **labels},
                     "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                                     "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": spec,
        "status": {"capacity": capacity, "allocatable": allocatable,
                   "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                   "message": "kubelet is posting ready status",
                                   "lastHeartbeatTime": "2026-01-05T10:05:00Z",
                                   "lastTransitionTime": "2026-01-05T10:01:00Z"}],
                   "addresses": [{"type": "InternalIP", "address": "10.128.0.12"},
                                 {"type": "Hostname", "address": name}],
                   "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1.100+",
                                "osImage": "Container-Optimized OS from Google", "containerRuntimeVersion":
                                "containerd://1.7.24", "kubeletVersion": "v1.30.8-gke.1051000",
                                "kubeProxyVersion": "v1.30.8-gke.1051000", "operatingSystem": "linux",
                                "architecture": "amd64"}},
    }


GPU_TAINT_GKE = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
GPU_TAINT_EKS = {"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}
CORDONED = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule", "timeAdded": "2026-01-05T11:00:00Z"}


def gke(pool: str, machine: str, accelerator: str | None) -> dict[str, str]:
    labels = {"cloud.google.com/gke-nodepool": pool, "cloud.google.com/machine-family": machine.split("-")[0],
              "cloud.google.com/gke-os-distribution": "cos", "node.kubernetes.io/instance-type": machine,
              "beta.kubernetes.io/instance-type": machine, "topology.kubernetes.io/zone": "us-central1-a",
              "cloud.google.com/gke-boot-disk": "pd-balanced"}
    if accelerator:
        labels["cloud.google.com/gke-accelerator"] = accelerator
        labels["cloud.google.com/gke-gpu-driver-version"] = "default"
    return labels


GKE_NODES = [
    node("gke-lab-default-pool-5c1e2f3a-abcd", gke("default-pool", "e2-standard-4", None),
         cpu="3920m", memory="13292572Ki"),
    node("gke-lab-a100-8f2a9c1d-x1", gke("a100", "a2-highgpu-1g", "nvidia-tesla-a100"),
         cpu="11900m", memory="76130896Ki", gpus=1, taints=[GPU_TAINT_GKE]),
    node("gke-lab-a100-8f2a9c1d-x2", gke("a100", "a2-highgpu-1g", "nvidia-tesla-a100"),
         cpu="11900m", memory="76130896Ki", gpus=1, taints=[GPU_TAINT_GKE, CORDONED], unschedulable=True),
    node("gke-lab-l4-2b7d4e6f-q9", gke("l4", "g2-standard-8", "nvidia-l4"),
         cpu="7910m", memory="29316636Ki", gpus=1, taints=[GPU_TAINT_GKE]),
    node("gke-lab-t4-9a8b7c6d-r2", gke("t4", "n1-standard-8", "nvidia-tesla-t4"),
         cpu="7910m", memory="26761304Ki", gpus=1, taints=[GPU_TAINT_GKE]),
    # A GPU node whose device plugin has not registered the GPU yet.
    node("gke-lab-t4-9a8b7c6d-new", gke("t4", "n1-standard-8", "nvidia-tesla-t4"),
         cpu="7910m", memory="26761304Ki", gpus=0, taints=[GPU_TAINT_GKE]),
]


def eks(nodegroup: str, instance: str, accelerator: str | None) -> dict[str, str]:
    labels = {"eks.amazonaws.com/nodegroup": nodegroup, "eks.amazonaws.com/capacityType": "ON_DEMAND",
              "eks.amazonaws.com/nodegroup-image": "ami-0abcdef1234567890",
              "node.kubernetes.io/instance-type": instance, "beta.kubernetes.io/instance-type": instance,
              "topology.kubernetes.io/region": "us-east-1", "topology.kubernetes.io/zone": "us-east-1a"}
    if accelerator:
        labels["k8s.amazonaws.com/accelerator"] = accelerator
    return labels


EKS_NODES = [
    node("ip-192-168-12-34.ec2.internal", eks("system", "m6i.large", None), cpu="1930m", memory="7186080Ki"),
    node("ip-192-168-40-11.ec2.internal", eks("g5", "g5.xlarge", "nvidia-a10g"),
         cpu="3920m", memory="15290148Ki", gpus=1, taints=[GPU_TAINT_EKS]),
    node("ip-192-168-40-12.ec2.internal", eks("g5", "g5.xlarge", "nvidia-a10g"),
         cpu="3920m", memory="15290148Ki", gpus=1, taints=[GPU_TAINT_EKS]),
    node("ip-192-168-55-21.ec2.internal", eks("g4dn", "g4dn.xlarge", None),
         cpu="3920m", memory="15623948Ki", gpus=1, taints=[{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]),
]


def nfd(product: str, family: str, instance: str, count: int) -> dict[str, str]:
    return {"node.kubernetes.io/instance-type": instance, "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": product, "nvidia.com/gpu.family": family, "nvidia.com/gpu.count": str(count),
            "nvidia.com/gpu.memory": "40960", "nvidia.com/cuda.driver.major": "550",
            "nvidia.com/gpu.compute.major": "8" if family == "ampere" else "7",
            "feature.node.kubernetes.io/pci-10de.present": "true"}


NFD_NODES = [
    node("gpu-a100-p4d-0", nfd("NVIDIA-A100-SXM4-40GB", "ampere", "p4d.24xlarge", 8),
         cpu="95690m", memory="1176305940Ki", gpus=8),
    node("gpu-a100-p4d-1", nfd("NVIDIA-A100-SXM4-40GB", "ampere", "p4d.24xlarge", 8),
         cpu="95690m", memory="1176305940Ki", gpus=8),
    node("gpu-a100-dgx-0", nfd("NVIDIA-A100-SXM4-40GB", "ampere", "dgx-a100", 8),
         cpu="254", memory="1056784520Ki", gpus=8),
    node("gpu-t4-0", nfd("Tesla-T4", "turing", "g4dn.12xlarge", 4), cpu="47", memory="191057452Ki", gpus=4),
    node("cpu-0", {"node.kubernetes.io/instance-type": "c6i.4xlarge"}, cpu="15890m", memory="31600000Ki"),
]


@pytest.fixture
def api_server():
    """Serves ``state.nodes`` as /api/v1/nodes with limit/continue paging; records requests."""

    class State:
        nodes: list[dict] = []
        requests: list[dict] = []
        status = 200

    state = State()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = urllib.parse.parse_qs(url.query)
            state.requests.append({"path": url.path, "query": query,
                                   "authorization": self.headers.get("Authorization")})
            if state.status != 200:
                body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": 'nodes is forbidden: User "system:serviceaccount:driftlab:default" cannot list '
                                   'resource "nodes" in API group "" at the cluster scope',
                        "reason": "Forbidden", "details": {"kind": "nodes"}, "code": state.status}
                return self._send(state.status, body)
            if url.path != "/api/v1/nodes":
                return self._send(404, {"kind": "Status", "status": "Failure", "code": 404, "reason": "NotFound"})
            start = int(query.get("continue", ["0"])[0] or 0)
            limit = int(query.get("limit", ["0"])[0] or 0) or len(state.nodes)
            page = state.nodes[start:start + limit]
            meta = {"resourceVersion": "987654"}
            if start + limit < len(state.nodes):
                meta["continue"] = str(start + limit)
                meta["remainingItemCount"] = len(state.nodes) - start - limit
            self._send(200, {"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": page})

        def _send(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def kubeconfig(api_server, tmp_path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": api_server.url}}],
        "users": [{"name": "test", "user": {"token": TOKEN}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
    }))
    return path


def run_discover(kubeconfig: Path, tmp_path: Path, capsys) -> tuple[dict, str]:
    out = tmp_path / "profiles.yaml"
    code = main(["pools", "discover", "--kubeconfig", str(kubeconfig), "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    return yaml.safe_load(out.read_text()), err


def by_name(doc: dict) -> dict[str, dict]:
    return {p["name"]: p for p in doc["profiles"]["pools"]}


def test_gke_pools_by_accelerator_label_with_tf32_twins(api_server, kubeconfig, tmp_path, capsys):
    api_server.nodes = GKE_NODES
    doc, err = run_discover(kubeconfig, tmp_path, capsys)

    pools = by_name(doc)
    assert list(pools) == ["gke-l4", "gke-l4-tf32", "gke-a100", "gke-a100-tf32", "gke-t4"]
    assert doc["profiles"]["reference"] == "gke-l4"
    a100 = pools["gke-a100"]
    assert a100["node_selector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-a100"}
    # GKE's GPU taint is tolerated; the cordon taint of one node is transient and is not.
    assert a100["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                                    "effect": "NoSchedule"}]
    assert a100["accelerator"] == {"type": "nvidia.com/gpu", "count": 1}
    # 3/4 of the smallest node's allocatable share per GPU: 11.9 cores -> 8; 72.6 GiB -> 54Gi.
    assert (a100["cpu_request"], a100["memory_request"]) == ("8", "54Gi")
    assert (pools["gke-a100"]["tf32"], pools["gke-a100-tf32"]["tf32"]) == (False, True)
    assert "gke-t4-tf32" not in pools  # Turing has no TF32
    # Left out, and said so: the CPU node and the GPU node without registered GPUs.
    assert "gke-lab-t4-9a8b7c6d-new" in err and "device plugin" in err
    assert "1 node(s) without GPUs" in err
    assert {r["authorization"] for r in api_server.requests} == {f"Bearer {TOKEN}"}


def test_eks_pools_by_accelerator_label_then_instance_type(api_server, kubeconfig, tmp_path, capsys):
    api_server.nodes = EKS_NODES
    doc, _ = run_discover(kubeconfig, tmp_path, capsys)

    pools = by_name(doc)
    assert set(pools) == {"eks-a10g", "eks-a10g-tf32", "eks-g4dn-xlarge"}
    assert pools["eks-a10g"]["node_selector"] == {"k8s.amazonaws.com/accelerator": "nvidia-a10g"}
    assert pools["eks-a10g"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "true",
                                                 "effect": "NoSchedule"}]
    # No accelerator label: the instance type names the pool; a taint without value is tolerated by Exists.
    g4dn = pools["eks-g4dn-xlarge"]
    assert g4dn["node_selector"] == {"node.kubernetes.io/instance-type": "g4dn.xlarge"}
    assert g4dn["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert g4dn["tf32"] is False


def test_gpu_feature_discovery_product_label_disambiguated_by_instance_type(api_server, kubeconfig, tmp_path):
    api_server.nodes = NFD_NODES
    with discover.api_client(str(kubeconfig)) as client:
        nodes = discover.list_nodes(client, page_size=2)

    # Paging: three requests, each after the first carrying the server's continue token.
    pages = [r["query"] for r in api_server.requests]
    assert [q.get("continue") for q in pages] == [None, ["2"], ["4"]]
    assert [n.name for n in nodes] == [n["metadata"]["name"] for n in NFD_NODES]

    pools, notes = discover.group_nodes(nodes)
    section = discover.profiles_section(pools)
    named = {p["name"]: p for p in section["pools"]}
    # One product on two machine types: two profiles, each pinned by instance type too.
    assert named["gpu-a100-sxm4-40gb-p4d-24xlarge"]["node_selector"] == {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "node.kubernetes.io/instance-type": "p4d.24xlarge"}
    assert named["gpu-a100-sxm4-40gb-dgx-a100"]["node_selector"]["node.kubernetes.io/instance-type"] == "dgx-a100"
    assert named["gpu-a100-sxm4-40gb-p4d-24xlarge-tf32"]["tf32"] is True  # family ampere
    assert "gpu-t4-tf32" not in named  # family turing
    # 8 GPUs on 95.69 cores / 1121.8 GiB: per GPU 11.96 cores -> 8, 140.2 GiB -> 105Gi.
    p4d = named["gpu-a100-sxm4-40gb-p4d-24xlarge"]
    assert (p4d["cpu_request"], p4d["memory_request"]) == ("8", "105Gi")
    assert named["gpu-t4"]["tolerations"] == []
    assert any("1 node(s) without GPUs" in n for n in notes)


def test_discovered_profiles_make_a_valid_experiment_that_places_each_pool(api_server, kubeconfig, tmp_path, capsys):
    from driftlab.cluster.pools import pool_placement
    from driftlab.config import load_config_text

    api_server.nodes = GKE_NODES + EKS_NODES
    doc, _ = run_discover(kubeconfig, tmp_path, capsys)
    experiment = yaml.safe_load((ROOT / "examples" / "quickstart.yaml").read_text())
    experiment["profiles"] = doc["profiles"]
    text = yaml.safe_dump(experiment)

    config = load_config_text(text, "experiment")
    assert {p.kind for p in config.profiles.pools} == {"gpu"}
    where = pool_placement(text, "eks-a10g-tf32", cpu_image="cpu:1", gpu_image="gpu:1")
    assert where["node_selector"] == {"k8s.amazonaws.com/accelerator": "nvidia-a10g"}
    assert (where["accelerator_type"], where["accelerator_count"], where["image"]) == ("nvidia.com/gpu", "1", "gpu:1")


def test_forbidden_names_the_cluster_role(api_server, kubeconfig, capsys):
    api_server.status = 403
    assert main(["pools", "discover", "--kubeconfig", str(kubeconfig)]) == 1
    err = capsys.readouterr().err
    assert "HTTP 403" in err and "driftlab-node-reader" in err and "Traceback" not in err


def test_no_gpu_nodes_is_an_error_that_says_what_to_do(api_server, kubeconfig, capsys):
    api_server.nodes = [GKE_NODES[0], EKS_NODES[0]]
    assert main(["pools", "discover", "--kubeconfig", str(kubeconfig)]) == 1
    err = capsys.readouterr().err
    assert "no GPU nodes found" in err and "manifests/profiles" in err


def test_missing_kubeconfig_names_the_flag(tmp_path, capsys):
    assert main(["pools", "discover", "--kubeconfig", str(tmp_path / "nope")]) == 1
    assert "--kubeconfig" in capsys.readouterr().err


@pytest.mark.parametrize("text, value", [
    ("7910m", Decimal("7.91")), ("8", Decimal(8)), ("16Gi", Decimal(16 * 2**30)),
    ("76130896Ki", Decimal(76130896 * 1024)), ("47060071478", Decimal(47060071478)),
    ("1.5G", Decimal(1_500_000_000)), ("500M", Decimal(500_000_000)),
    # kubernetes.utils.parse_quantity: every suffix the API server writes (the hand-written parser refused 100n).
    ("100n", Decimal("1E-7")), ("500m", Decimal("0.5")), ("1.5Gi", Decimal(3 * 2**29)), ("2", Decimal(2)),
    ("250u", Decimal("0.00025")), ("1Ei", Decimal(2**60)), (" 8 ", Decimal(8)), (4, Decimal(4))])
def test_quantities_in_kubelet_units(text, value):
    assert discover.quantity(text) == value
    assert discover.quantity(text, "node n status.allocatable.cpu") == value


@pytest.mark.parametrize("text", ["eight", "", "1Zi", "1.5.5", "Gi", "1ki", "NaN", "Infinity"])
def test_quantity_refuses_garbage_naming_the_field(text):
    with pytest.raises(ValueError, match="not a Kubernetes quantity") as info:
        discover.quantity(text)
    assert str(info.value).startswith("not a Kubernetes quantity"), "no field given: none named"
    with pytest.raises(ValueError) as info:
        discover.quantity(text, "node gpu-0 status.allocatable.memory")
    assert str(info.value).startswith("node gpu-0 status.allocatable.memory: not a Kubernetes quantity")
    assert repr(text) in str(info.value)


def test_node_quantities_in_nano_units_parse_and_bad_ones_name_node_and_field():
    parsed = discover.node_from_api(node("n-0", {}, cpu="3500000000n", memory="16Gi", gpus=2))
    assert (parsed.cpu, parsed.memory, parsed.gpus) == (Decimal("3.5"), Decimal(16 * 2**30), 2)
    with pytest.raises(ValueError, match=r"^node n-1 status\.allocatable\.memory: not a Kubernetes quantity: '16 GB'$"):
        discover.node_from_api(node("n-1", {}, cpu="4", memory="16 GB", gpus=1))
    bad_gpu = node("n-2", {}, cpu="4", memory="16Gi")
    bad_gpu["status"]["capacity"]["nvidia.com/gpu"] = "one"
    with pytest.raises(ValueError, match=r"^node n-2 status\.capacity\.nvidia\.com/gpu: "):
        discover.node_from_api(bad_gpu)


def test_a_node_with_a_bad_quantity_is_a_clear_error(api_server, kubeconfig, capsys):
    api_server.nodes = [*GKE_NODES[:2], node("gke-lab-odd-0", {}, cpu="lots", memory="1Gi", gpus=1)]
    assert main(["pools", "discover", "--kubeconfig", str(kubeconfig)]) == 1
    err = capsys.readouterr().err
    assert "node gke-lab-odd-0 status.allocatable.cpu: not a Kubernetes quantity: 'lots'" in err
    assert "Traceback" not in err
