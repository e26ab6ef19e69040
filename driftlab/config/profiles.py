"""Profiles: where and how a run executes, and the environment knobs that make it so.

TensorFlow and oneDNN read their knobs once, at import. A profile's knobs are
therefore applied to a fresh process's environment before TensorFlow is
imported; ``apply_env`` refuses to run after the import, because then the
knobs would silently do nothing.

What cannot be honoured is decided before any training starts:

- a CPU profile capped at an ISA this CPU lacks is an error (``ProfileError``
  naming the profile, the ISA and what the CPU supports): oneDNN would silently
  fall back to a lower ISA and the profile would measure nothing;
- a GPU node pool, when running locally (``kfp.local`` or ``driftlab run``),
  is skipped with a visible notice and the rest of the plan runs: the same
  experiment file serves the laptop and the cluster. On a cluster the pool's
  task checks its own node (``check_here``): no GPU visible is an error.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from driftlab.errors import BadInput
from driftlab.config import ExperimentConfig, ProfileConfig

# oneDNN ISA caps, lowest first, with the /proc/cpuinfo flags each one needs.
ISA_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "SSE41": ("sse4_1",),
    "AVX": ("avx",),
    "AVX2": ("avx2", "fma"),
    "AVX2_VNNI": ("avx2", "avx_vnni"),
    "AVX2_VNNI_2": ("avx2", "avx_vnni", "avx_vnni_int8"),
    "AVX512_CORE": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
    "AVX512_CORE_VNNI": ("avx512f", "avx512_vnni"),
    "AVX512_CORE_BF16": ("avx512f", "avx512_bf16"),
    "AVX512_CORE_FP16": ("avx512f", "avx512_fp16"),
    "AVX512_CORE_AMX": ("amx_tile", "amx_int8", "amx_bf16"),
    "AVX512_CORE_AMX_FP16": ("amx_tile", "amx_fp16"),
}


class ProfileError(BadInput):
    """A profile this machine cannot honour."""


class UnknownProfile(ProfileError, KeyError):
    """A profile name that is not among the profiles that run here (also a KeyError)."""

    __str__ = ValueError.__str__


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The CPU's feature flags (x86 ``flags`` or ARM ``Features``); empty if unreadable."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def supported_isas(flags: set[str] | None = None) -> list[str]:
    """oneDNN ISA caps this CPU can run, lowest first."""
    flags = cpu_flags() if flags is None else flags
    return [isa for isa, need in ISA_REQUIREMENTS.items() if all(f in flags for f in need)]


def env_for(profile: ProfileConfig) -> dict[str, str]:
    """The environment knobs a profile sets; all values are strings, none secret.

    Thread counts are always pinned (1 by default): oneDNN and Eigen split work
    by thread count, so an unpinned worker's numerics would depend on the
    machine and on how many other workers share it.
    """
    env = {
        "TF_ENABLE_ONEDNN_OPTS": "1" if profile.onednn else "0",
        "TF_NUM_INTRAOP_THREADS": str(profile.intra_op_threads),
        "TF_NUM_INTEROP_THREADS": str(profile.inter_op_threads),
        "OMP_NUM_THREADS": str(profile.intra_op_threads),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    if profile.isa:
        env["ONEDNN_MAX_CPU_ISA"] = profile.isa
    if profile.kind == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    if profile.tf32 is not None:
        env["NVIDIA_TF32_OVERRIDE"] = "1" if profile.tf32 else "0"
    return env


# Knobs a previous profile may have left in an inherited environment.
PROFILE_ENV_KEYS = ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "NVIDIA_TF32_OVERRIDE")


def check_here(profile: ProfileConfig, *, local: bool, flags: set[str] | None = None) -> None:
    """Refuse, before training, a profile this machine cannot honour.

    Args:
        profile: The profile about to run in this process's workers.
        local: Running on one machine (GPU pools are skipped there, see the module docstring).
        flags: CPU flags to check against (default: this CPU's).

    Raises:
        ProfileError: the ISA cap is above this CPU, or a GPU pool is run locally.
    """
    if profile.kind == "gpu" and local:
        raise ProfileError(f"profiles.pools[{profile.name}]: a GPU node pool runs on a cluster only; "
                           "locally it is skipped (see `driftlab validate`)")
    if profile.kind == "cpu" and profile.isa:
        available = supported_isas(flags)
        if profile.isa not in available:
            raise ProfileError(
                f"profiles.pools[{profile.name}].isa: this CPU cannot run {profile.isa} "
                f"(supported: {', '.join(available) or 'none detected'}); "
                "remove the profile or choose a supported cap")


def apply_env(profile: ProfileConfig, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Set the profile's knobs in this process; only valid before TensorFlow is imported."""
    if "tensorflow" in sys.modules and environ is None:
        raise RuntimeError("profile knobs must be applied before TensorFlow is imported; "
                           "run this profile in a fresh process")
    target = os.environ if environ is None else environ
    for key in PROFILE_ENV_KEYS:
        target.pop(key, None)
    knobs = env_for(profile)
    target.update(knobs)
    return knobs


def auto_profiles(flags: set[str] | None = None) -> list[ProfileConfig]:
    """A catalogue of CPU profiles this machine can run, each a candidate for different numerics.

    The machine default (no cap) is the reference. Every ISA cap below the
    highest one the CPU supports is offered (the highest equals the default),
    plus oneDNN graph rewrites off and a two-thread variant. An ISA the CPU
    lacks is never offered. Whether a candidate really changes the arithmetic
    depends on the model: on an AVX2 CPU with TensorFlow 2.21 the SSE41 and AVX
    caps change a dense MLP's weights bitwise, while oneDNN-off and 2 threads
    leave them identical (the report shows which profiles drifted).

    Args:
        flags: CPU flags (default: this CPU's, from /proc/cpuinfo).

    Returns:
        Profiles, the reference ``cpu-default`` first.
    """
    isas = supported_isas(flags)
    profiles = [ProfileConfig(name="cpu-default")]
    for isa in isas[:-1]:
        profiles.append(ProfileConfig(name=f"cpu-{isa.lower().replace('_', '-')}", isa=isa))
    profiles.append(ProfileConfig(name="cpu-no-onednn", onednn=False))
    profiles.append(ProfileConfig(name="cpu-2-threads", intra_op_threads=2))
    return profiles


@dataclass(frozen=True)
class ResolvedProfiles:
    reference: ProfileConfig
    runnable: list[ProfileConfig]
    skipped: list[tuple[ProfileConfig, str]]

    def names(self) -> list[str]:
        return [p.name for p in self.runnable]

    def by_name(self, name: str) -> ProfileConfig:
        """The runnable profile called ``name``; ``ProfileError`` naming the choices otherwise."""
        for p in self.runnable:
            if p.name == name:
                return p
        raise UnknownProfile(f"profile '{name}' is not one of the profiles that run here "
                           f"({', '.join(self.names())}); check profiles.pools")

    def skip_reason(self, name: str) -> str | None:
        """Why the profile ``name`` is skipped here, or None if it is not skipped."""
        return next((why for p, why in self.skipped if p.name == name), None)


def resolve_profiles(config: ExperimentConfig, *, local: bool = True,
                     flags: set[str] | None = None) -> ResolvedProfiles:
    """Decide which profiles run here, or fail before any training starts.

    Locally, GPU node pools are skipped with a notice (they are honoured on a
    cluster); a CPU profile capped at an ISA this CPU lacks is an error, because
    oneDNN would silently fall back and the profile would measure nothing.
    """
    pools = list(config.profiles.pools)
    if config.profiles.auto:
        known = {p.name for p in pools}
        pools += [p for p in auto_profiles(flags) if p.name not in known]
    available = set(supported_isas(flags))
    runnable, skipped = [], []
    for p in pools:
        if p.kind == "gpu" and local:
            skipped.append((p, "GPU node pool: runs on a cluster only (skipped locally)"))
            continue
        if p.kind == "cpu" and p.isa and p.isa not in available:
            raise ProfileError(
                f"profiles.pools[{p.name}].isa: this CPU cannot run {p.isa} "
                f"(supported: {', '.join(sorted(available)) or 'none detected'}); "
                "remove the profile or choose a supported cap")
        runnable.append(p)
    if not runnable:
        raise ProfileError("profiles: no profile can run here; add a kind: cpu profile "
                           "or set profiles.auto: true")
    ref_name = config.profiles.reference or runnable[0].name
    ref = next((p for p in runnable if p.name == ref_name), None)
    if ref is None and any(p.name == ref_name for p, _ in skipped):
        # The reference is a GPU pool skipped locally: compare against the first CPU profile here.
        ref = runnable[0]
        skipped.append((ref, f"stands in locally for reference '{ref_name}' (a GPU pool)"))
    if ref is None:
        raise ProfileError(f"profiles.reference: '{ref_name}' cannot run here "
                           f"(runnable: {', '.join(p.name for p in runnable)})")
    return ResolvedProfiles(ref, runnable, skipped)


LOCAL, CLUSTER = "local", "cluster"
WHERE = (LOCAL, CLUSTER)


def profiles_for(config: ExperimentConfig, where: str) -> ResolvedProfiles:
    """The one rule for which profiles an experiment runs on; every stage and command uses it.

    Args:
        config: A validated experiment.
        where: ``local`` (this machine: ``driftlab run``/``validate``, kfp.local) or ``cluster``
            (a Pod of the compiled pipeline, or ``driftlab submit`` planning one).

    Returns:
        Locally: GPU pools skipped with a notice, a CPU profile capped above this CPU refused
        (oneDNN would silently fall back). On a cluster: every pool; the CPU of the Pod that
        plans says nothing about other pools' nodes, so ISA caps are not checked here but by
        each training task on its own node (``check_here``).

    Raises:
        ProfileError: as ``resolve_profiles``; ``where`` not one of ``local``, ``cluster``.
    """
    if where == LOCAL:
        return resolve_profiles(config, local=True)
    if where == CLUSTER:
        return resolve_profiles(config, local=False, flags={f for need in ISA_REQUIREMENTS.values() for f in need})
    raise ProfileError(f"where: {where!r} is not one of {', '.join(WHERE)}")


#: How a pool's work is split into pods does not change what a run computes.
NOT_IN_SPEC = ("shards",)


def profile_json(profile: ProfileConfig) -> dict[str, Any]:
    """The profile as it enters a run spec (and so the run's key)."""
    return profile.model_dump(mode="json", exclude=set(NOT_IN_SPEC))
