"""Discover a cluster's GPU node pools and write them as driftlab profiles.

Lists the nodes with the ``kubernetes`` client and groups them by what names
their GPU, most precise label first:

- ``nvidia.com/gpu.product`` (NVIDIA GPU feature discovery: GPU Operator or the
  device plugin's GFD; also ``nvidia.com/gpu.family`` for the architecture),
- ``cloud.google.com/gke-accelerator`` (set by GKE on every GPU node),
- ``k8s.amazonaws.com/accelerator`` (EKS node groups that set the convention),
- ``node.kubernetes.io/instance-type`` (set by Kubernetes everywhere).

A group becomes a ``kind: gpu`` profile: that label as node selector (plus the
instance type when two groups share a GPU), tolerations for the taints all its
nodes carry, one ``nvidia.com/gpu``, and CPU/memory requests that fit a
node's share per GPU. GPUs with TF32 (Ampere and newer) get a second profile
with ``tf32: true``, because TF32 is a drift source of its own. Only nodes
that exist are seen: a pool scaled to zero needs a node, or a hand-written profile.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Iterable

from driftlab.errors import DriftlabError

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT = "nvidia.com/gpu.product"
GPU_FAMILY = "nvidia.com/gpu.family"
GKE_ACCELERATOR = "cloud.google.com/gke-accelerator"
EKS_ACCELERATOR = "k8s.amazonaws.com/accelerator"
INSTANCE_TYPE = "node.kubernetes.io/instance-type"
INSTANCE_TYPE_BETA = "beta.kubernetes.io/instance-type"
# Most precise first: the label that names the GPU model whatever the machine.
IDENTITY_LABELS = (GPU_PRODUCT, GKE_ACCELERATOR, EKS_ACCELERATOR)

# Taints Kubernetes and cloud controllers put on and take off nodes by themselves.
TRANSIENT_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/",
                            "ToBeDeletedByClusterAutoscaler", "DeletionCandidateOfClusterAutoscaler")
TF32_FAMILIES = {"ampere", "hopper", "ada-lovelace", "ada", "blackwell"}
NO_TF32_FAMILIES = {"turing", "volta", "pascal", "maxwell", "kepler"}
TF32_PRODUCT = re.compile(r"(^|-)(a100|a10g?|a30|a40|a16|a2|a800|l4|l40s?|h100|h800|h200|h20|gh200|b100|b200|gb200"
                          r"|rtx-a\d+|a[4-6]000|rtx-[34]0\d0)(-|$)")
NO_TF32_PRODUCT = re.compile(r"(^|-)(t4|v100|p100|p4|k80|m60|rtx-20\d0)(-|$)")
# A node keeps a quarter of its share per GPU for the kubelet, daemon sets and the TF runtime.
REQUEST_SHARE = 0.75
NAME_LIMIT = 63


class DiscoveryError(DriftlabError, RuntimeError):
    """The cluster could not be read, or holds no node pool driftlab can use."""


def quantity(text: str | int | float | None, field: str | None = None) -> Decimal:
    """A Kubernetes resource quantity (``7910m``, ``100n``, ``32880872Ki``, ``16Gi``, ``8``) as a number.

    Parsed by the kubernetes client's own ``kubernetes.utils.parse_quantity``
    (every suffix the API server writes: ``n u m k M G T P E`` and ``Ki`` to ``Ei``).

    Args:
        text: The quantity as the API server returns it.
        field: What the value is (``node gpu-1 status.allocatable.cpu``), named in the error.

    Returns:
        Its value in base units (cores, bytes, devices); 0 for None.

    Raises:
        ValueError: Not a finite quantity; the message names ``field`` when given.
    """
    if text is None:
        return Decimal(0)
    from kubernetes.utils import parse_quantity  # lazily: it imports the whole kubernetes client

    where = f"{field}: " if field else ""
    try:
        value = parse_quantity(text.strip() if isinstance(text, str) else text)
    except (ValueError, TypeError, ArithmeticError):
        raise ValueError(f"{where}not a Kubernetes quantity: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"{where}not a Kubernetes quantity (not finite): {text!r}")
    return value


@dataclass(frozen=True)
class Node:
    """What discovery needs of one Node object."""

    name: str
    labels: dict[str, str]
    gpus: int
    cpu: Decimal
    memory: Decimal
    taints: tuple[tuple[str, str, str], ...]
    unschedulable: bool = False

    @property
    def instance_type(self) -> str:
        return self.labels.get(INSTANCE_TYPE) or self.labels.get(INSTANCE_TYPE_BETA) or ""

    @property
    def identity(self) -> tuple[str, str] | None:
        for key in IDENTITY_LABELS:
            if self.labels.get(key):
                return key, self.labels[key]
        return None


def node_from_api(obj: Any) -> Node:
    """A ``Node`` from a ``V1Node`` (kubernetes client model) or its JSON dict.

    Args:
        obj: One item of a NodeList.

    Returns:
        The node's labels, GPU capacity, allocatable CPU/memory and taints.
    """
    if not isinstance(obj, dict):
        from kubernetes.client import ApiClient

        obj = ApiClient().sanitize_for_serialization(obj)
    meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {})
    allocatable = status.get("allocatable") or {}
    capacity = status.get("capacity") or {}
    name = meta["name"]

    def resource(key: str) -> Decimal:
        source = "allocatable" if key in allocatable else "capacity"
        return quantity(allocatable.get(key, capacity.get(key)), f"node {name} status.{source}.{key}")

    gpus = int(resource(GPU_RESOURCE))
    taints = tuple(sorted((t["key"], t.get("value") or "", t["effect"]) for t in spec.get("taints") or []
                          if not t["key"].startswith(TRANSIENT_TAINT_PREFIXES)))
    return Node(name=name, labels=dict(meta.get("labels") or {}), gpus=gpus,
                cpu=resource("cpu"), memory=resource("memory"),
                taints=taints, unschedulable=bool(spec.get("unschedulable")))


@dataclass
class Pool:
    """Nodes that are one driftlab profile: same GPU, same machine type."""

    identity: tuple[str, str]
    instance_type: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def gpus_per_node(self) -> int:
        return min(n.gpus for n in self.nodes)

    @property
    def family(self) -> str:
        families = {n.labels.get(GPU_FAMILY, "").lower() for n in self.nodes}
        return families.pop() if len(families) == 1 else ""

    @property
    def taints(self) -> list[tuple[str, str, str]]:
        common = set(self.nodes[0].taints)
        for node in self.nodes[1:]:
            common &= set(node.taints)
        return sorted(common)

    @property
    def provider(self) -> str:
        labels = self.nodes[0].labels
        if any(k.startswith("cloud.google.com/") for k in labels):
            return "gke"
        if any(k.startswith(("eks.amazonaws.com/", "k8s.amazonaws.com/")) for k in labels):
            return "eks"
        return "gpu"


def slug(text: str) -> str:
    """A profile-name fragment: lower case, ``[a-z0-9-]``, vendor words dropped.

    Args:
        text: A label value such as ``NVIDIA-A100-SXM4-40GB`` or ``nvidia-tesla-t4``.

    Returns:
        e.g. ``a100-sxm4-40gb``, ``t4``.
    """
    value = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    for vendor in ("nvidia-", "tesla-", "geforce-"):
        while value.startswith(vendor):
            value = value[len(vendor):]
    return value or "gpu"


def has_tf32(pool: Pool) -> bool | None:
    """Whether the pool's GPU computes float32 matmuls in TF32 by default (Ampere and newer).

    Args:
        pool: A GPU pool.

    Returns:
        True or False when the family or product says so; None when unknown.
    """
    if pool.family in TF32_FAMILIES:
        return True
    if pool.family in NO_TF32_FAMILIES:
        return False
    product = slug(pool.identity[1])
    if TF32_PRODUCT.search(product):
        return True
    if NO_TF32_PRODUCT.search(product):
        return False
    return None


def group_nodes(nodes: Iterable[Node]) -> tuple[list[Pool], list[str]]:
    """Group GPU nodes into pools; say why other nodes were left out.

    Args:
        nodes: Every listed node.

    Returns:
        ``(pools, notes)``: pools sorted by name-giving label, and one note per node group skipped.
    """
    pools: dict[tuple[str, str, str], Pool] = {}
    notes: list[str] = []
    cpu_only = 0
    for node in nodes:
        identity = node.identity
        if node.gpus <= 0:
            if identity:
                notes.append(f"node {node.name}: labelled {identity[0]}={identity[1]} but reports no "
                             f"{GPU_RESOURCE} capacity (is the NVIDIA device plugin running?); left out")
            else:
                cpu_only += 1
            continue
        if identity is None:
            identity = (INSTANCE_TYPE, node.instance_type) if node.instance_type else ("kubernetes.io/hostname",
                                                                                        node.name)
        key = (identity[0], identity[1], node.instance_type)
        pools.setdefault(key, Pool(identity, node.instance_type)).nodes.append(node)
    if cpu_only:
        notes.append(f"{cpu_only} node(s) without GPUs left out "
                     "(driftlab's CPU profiles come from the experiment file)")
    return [pools[k] for k in sorted(pools)], notes


def _requests(pool: Pool) -> tuple[str, str]:
    per_gpu_cpu = min(n.cpu for n in pool.nodes) / pool.gpus_per_node
    per_gpu_mem = min(n.memory for n in pool.nodes) / pool.gpus_per_node
    cpu = max(1, math.floor(per_gpu_cpu * Decimal(REQUEST_SHARE)))
    memory_gi = max(1, math.floor(per_gpu_mem * Decimal(REQUEST_SHARE) / 2**30))
    return str(cpu), f"{memory_gi}Gi"


def _tolerations(pool: Pool) -> list[dict[str, str]]:
    return [{"key": key, "operator": "Equal", "value": value, "effect": effect} if value
            else {"key": key, "operator": "Exists", "effect": effect} for key, value, effect in pool.taints]


def profiles_section(pools: list[Pool]) -> dict[str, Any]:
    """The ``profiles:`` section of an experiment file for these pools.

    Args:
        pools: From ``group_nodes``.

    Returns:
        ``{"reference": name, "pools": [...]}``, validated by driftlab's schema.

    Raises:
        DiscoveryError: No pools.
    """
    from driftlab.config import ProfilesConfig

    if not pools:
        raise DiscoveryError("no GPU nodes found: no node reports nvidia.com/gpu capacity "
                             "(a pool scaled to zero has no nodes to see; write its profile by hand, "
                             "see manifests/profiles/)")
    shared = {}
    for pool in pools:
        shared.setdefault(pool.identity, []).append(pool)
    entries, names = [], set()
    for pool in pools:
        selector = {pool.identity[0]: pool.identity[1]}
        base = f"{pool.provider}-{slug(pool.identity[1])}"
        if len(shared[pool.identity]) > 1 and pool.identity[0] != INSTANCE_TYPE:
            selector[INSTANCE_TYPE] = pool.instance_type
            base += f"-{slug(pool.instance_type)}"
        cpu, memory = _requests(pool)
        profile = {"name": _unique(base[:NAME_LIMIT - 5].rstrip("-"), names), "kind": "gpu",
                   "node_selector": selector, "tolerations": _tolerations(pool),
                   "accelerator": {"type": GPU_RESOURCE, "count": 1}, "tf32": False,
                   "cpu_request": cpu, "memory_request": memory}
        entries.append(profile)
        if has_tf32(pool):
            # A copy, not shared sub-objects: the YAML must read as plain mappings, not anchors.
            entries.append({**copy.deepcopy(profile), "name": _unique(f"{profile['name']}-tf32", names),
                            "tf32": True})
    section = {"reference": entries[0]["name"], "pools": entries}
    ProfilesConfig.model_validate(section)
    return section


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate in taken:
        candidate = f"{name}-{n}"
        n += 1
    taken.add(candidate)
    return candidate


def list_nodes(api_client, *, label_selector: str = "", page_size: int = 500) -> list[Node]:
    """Every node, page by page, through the Kubernetes API.

    Args:
        api_client: A ``kubernetes.client.ApiClient``.
        label_selector: Restrict to matching nodes (e.g. ``nvidia.com/gpu.present=true``).
        page_size: Nodes per request.

    Returns:
        The nodes.
    """
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    nodes, token = [], None
    while True:
        kwargs = {"limit": page_size, "label_selector": label_selector}
        if token:
            kwargs["_continue"] = token
        page = core.list_node(**kwargs)
        nodes.extend(node_from_api(item) for item in page.items)
        token = page.metadata._continue if page.metadata else None
        if not token:
            return nodes


def api_client(kubeconfig: str | None = None, context: str | None = None):
    """A Kubernetes API client: the kubeconfig (``--kubeconfig``, ``KUBECONFIG``, ``~/.kube/config``), else in-cluster.

    Args:
        kubeconfig: A kubeconfig file.
        context: A context in it.

    Returns:
        A ``kubernetes.client.ApiClient``.

    Raises:
        DiscoveryError: No configuration found.
    """
    from kubernetes import client, config

    try:
        return config.new_client_from_config(config_file=kubeconfig, context=context, persist_config=False)
    except (config.ConfigException, FileNotFoundError, TypeError) as exc:
        if kubeconfig or context:
            raise DiscoveryError(f"--kubeconfig/--context: cannot use {kubeconfig or 'the kubeconfig'}"
                                 f"{f' context {context}' if context else ''}: {exc}") from None
        try:
            config.load_incluster_config()
        except config.ConfigException:
            raise DiscoveryError("no Kubernetes configuration: pass --kubeconfig FILE (or set KUBECONFIG), "
                                 "or run inside a cluster with a service account that may list nodes") from None
        return client.ApiClient()


def discover(kubeconfig: str | None = None, context: str | None = None, *,
             label_selector: str = "") -> tuple[dict[str, Any], list[Pool], list[str]]:
    """List nodes and return the profiles section, the pools and notes on what was left out.

    Args:
        kubeconfig: A kubeconfig file (default: KUBECONFIG, ~/.kube/config, in-cluster).
        context: A kubeconfig context.
        label_selector: Only nodes matching this selector.

    Returns:
        ``(profiles_section, pools, notes)``.

    Raises:
        DiscoveryError: The API could not be read, or no GPU pool was found.
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    client = api_client(kubeconfig, context)
    try:
        nodes = list_nodes(client, label_selector=label_selector)
    except ApiException as exc:
        hint = " (the identity needs get/list on nodes: ClusterRole driftlab-node-reader)" if exc.status == 403 else ""
        raise DiscoveryError(f"listing nodes failed: HTTP {exc.status} {exc.reason}{hint}") from None
    except HTTPError as exc:
        raise DiscoveryError(f"listing nodes failed: {client.configuration.host} unreachable ({exc})") from None
    except ValueError as exc:  # a resource quantity that does not parse; the message names the node and field
        raise DiscoveryError(f"reading nodes failed: {exc}") from None
    pools, notes = group_nodes(nodes)
    return profiles_section(pools), pools, notes


def render(section: dict[str, Any], pools: list[Pool], notes: list[str]) -> str:
    """The profiles section as an experiment-file snippet, with what was found as comments.

    Args:
        section: From ``profiles_section``.
        pools: The pools it was made from.
        notes: What was left out.

    Returns:
        YAML text with a top-level ``profiles:`` key.
    """
    import yaml

    lines = ["# driftlab profiles discovered by `driftlab pools discover` (paste into an experiment file).",
             "# Requests are three quarters of a node's allocatable CPU/memory per GPU; adjust as needed."]
    for pool in pools:
        cordoned = sum(n.unschedulable for n in pool.nodes)
        lines.append(f"#   {pool.identity[0]}={pool.identity[1]} on {pool.instance_type or 'unknown type'}: "
                     f"{len(pool.nodes)} node(s)" + (f" ({cordoned} cordoned)" if cordoned else "")
                     + f", {pool.gpus_per_node} GPU(s) each"
                     + (f", family {pool.family}" if pool.family else ""))
    lines += [f"# note: {note}" for note in notes]
    return "\n".join(lines) + "\n" + yaml.safe_dump({"profiles": section}, sort_keys=False)
