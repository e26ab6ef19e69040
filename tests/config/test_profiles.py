"""Profiles: the auto catalogue from CPU flags, what cannot run here, GPU pools, fingerprints."""

from __future__ import annotations

import json
import sys

import pytest

from driftlab.runs import fingerprint
from driftlab import stages
from driftlab.cli import main as cli_main
from driftlab.config import ProfileConfig, load_config_text
from driftlab.runs.executor import worker_env
from driftlab.config.profiles import (ProfileError, UnknownProfile, auto_profiles, check_here, cpu_flags, env_for,
                               resolve_profiles, supported_isas)

# Real flag sets (trimmed /proc/cpuinfo "flags" lines) of three CPU generations.
SSE_ONLY = {"fpu", "sse", "sse2", "ssse3", "sse4_1", "sse4_2"}
AVX2_EPYC = SSE_ONLY | {"avx", "avx2", "fma", "bmi2"}
SAPPHIRE_RAPIDS = AVX2_EPYC | {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
                               "avx512_fp16", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16"}

GPU_CONFIG = """\
name: gpu
dataset: {name: digits}
model: {epochs: 1}
seeds: {init: [0], repeats: 1, deterministic: [true]}
profiles:
  reference: cpu-default
  pools:
    - name: cpu-default
    - name: a100-pool
      kind: gpu
      tf32: true
      accelerator: {type: nvidia-tesla-a100, count: 2}
      node_selector: {cloud.google.com/gke-nodepool: a100-pool}
      tolerations: [{key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}]
"""


@pytest.mark.parametrize("flags, offered, never", [
    (SSE_ONLY, [], ["cpu-sse41", "cpu-avx"]),
    (AVX2_EPYC, ["cpu-sse41", "cpu-avx"], ["cpu-avx2", "cpu-avx512-core"]),
    (SAPPHIRE_RAPIDS, ["cpu-sse41", "cpu-avx2", "cpu-avx512-core", "cpu-avx512-core-bf16"],
     ["cpu-avx512-core-amx-fp16"]),
])
def test_auto_catalogue_offers_only_what_the_cpu_has(flags, offered, never):
    names = [p.name for p in auto_profiles(flags)]
    assert names[0] == "cpu-default" and len(set(names)) == len(names)
    assert set(offered) <= set(names)
    assert not set(never) & set(names)
    for p in auto_profiles(flags):
        if p.isa:
            assert p.isa in supported_isas(flags), f"{p.name} caps at {p.isa}, which this CPU lacks"


def test_this_machine_offers_its_lower_isas():
    flags = cpu_flags()
    isas = supported_isas(flags)
    names = {p.name for p in auto_profiles()}
    if "avx2" in flags:
        assert {"cpu-sse41", "cpu-avx"} <= names and "AVX2" in isas
    if "avx512f" not in flags:
        assert not any("avx512" in n for n in names)


def test_isa_the_cpu_lacks_fails_before_training_with_a_clear_message(tiny_config_text, home):
    text = tiny_config_text.replace("isa: SSE41", "isa: AVX512_CORE")
    config = load_config_text(text, "experiment")
    with pytest.raises(ProfileError) as err:
        resolve_profiles(config, flags=AVX2_EPYC)
    assert "profiles.pools[cpu-sse41].isa: this CPU cannot run AVX512_CORE" in str(err.value)
    assert "supported: AVX, AVX2, SSE41" in str(err.value) and "remove the profile" in str(err.value)
    with pytest.raises(ProfileError):
        check_here(ProfileConfig(name="x", isa="AVX512_CORE"), local=True, flags=AVX2_EPYC)
    check_here(ProfileConfig(name="x", isa="AVX2"), local=True, flags=AVX2_EPYC)  # control: a supported cap


def test_cli_refuses_an_unsupported_isa_without_a_traceback(tiny_config_file, home, capsys):
    if "amx_fp16" in cpu_flags():
        pytest.skip("this CPU supports every ISA cap")
    tiny_config_file.write_text(tiny_config_file.read_text().replace("isa: SSE41", "isa: AVX512_CORE_AMX_FP16"))
    assert cli_main(["validate", str(tiny_config_file)]) == 2
    err = capsys.readouterr().err
    assert "cannot run AVX512_CORE_AMX_FP16" in err and "Traceback" not in err


def test_gpu_pool_is_skipped_locally_with_a_notice_and_listed_on_a_cluster(monkeypatch, home, capsys):
    config = load_config_text(GPU_CONFIG, "experiment")
    local = resolve_profiles(config, local=True)
    assert local.names() == ["cpu-default"]
    assert local.skip_reason("a100-pool") == "GPU node pool: runs on a cluster only (skipped locally)"
    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    # Only the placeholder item (kfp.local cannot run an empty loop), which trains nothing.
    assert [item["profile"] for item in stages.node_tasks(GPU_CONFIG, {})] == [stages.NO_PROFILE]
    assert stages.retrain_node(GPU_CONFIG, "c", {}, stages.NO_PROFILE)["trained"] == 0
    summary = stages.retrain_node(GPU_CONFIG, "c", {}, "a100-pool", jobs=1, quiet=True)
    assert summary["trained"] == 0 and "skipped locally" in summary["skipped_profile"]
    assert "retrain across nodes · a100-pool: skipped" in capsys.readouterr().err
    with pytest.raises(ProfileError, match="runs on a cluster only"):
        check_here(config.profiles.pools[1], local=True)

    monkeypatch.setenv("DRIFTLAB_WHERE", "cluster")
    [item] = stages.node_tasks(GPU_CONFIG, {})
    assert item["profile"] == "a100-pool" and item["kind"] == "gpu" and item["tf32"] is True
    assert item["accelerator_type"] == "nvidia-tesla-a100" and item["accelerator_count"] == 2
    assert item["node_selector"] == {"cloud.google.com/gke-nodepool": "a100-pool"}
    assert item["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_unknown_profile_names_the_choices(tiny_config_text):
    profiles = resolve_profiles(load_config_text(tiny_config_text, "experiment"))
    with pytest.raises(UnknownProfile, match="'cpu-nope' is not one of .*cpu-default, cpu-sse41"):
        profiles.by_name("cpu-nope")
    with pytest.raises(KeyError):  # placement code catches KeyError
        profiles.by_name("cpu-nope")


def test_profile_knobs_pin_threads_and_reach_the_worker_environment(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX")  # a stale knob from the caller must not leak
    gpu = ProfileConfig(name="g", kind="gpu", tf32=False, accelerator={"type": "t4", "count": 2},
                        node_selector={"eks.amazonaws.com/nodegroup": "t4s"})
    assert env_for(ProfileConfig(name="c"))["TF_NUM_INTRAOP_THREADS"] == "1"
    env = worker_env(ProfileConfig(name="c", isa="SSE41", intra_op_threads=2), index=1)
    assert env["ONEDNN_MAX_CPU_ISA"] == "SSE41" and env["OMP_NUM_THREADS"] == "2"
    assert "ONEDNN_MAX_CPU_ISA" not in worker_env(ProfileConfig(name="c"))
    genv = worker_env(gpu, index=3)
    assert genv["NVIDIA_TF32_OVERRIDE"] == "0" and genv["CUDA_VISIBLE_DEVICES"] == "1"
    assert genv["DRIFTLAB_PROFILE_KIND"] == "gpu"
    assert fingerprint.node_pool(genv) == "t4s", "the pool label comes from the profile's node selector"


def test_default_jobs_respects_threads_per_worker_and_gpus(monkeypatch):
    from driftlab.runs.executor import available_cpus

    monkeypatch.delenv("DRIFTLAB_JOBS", raising=False)
    cpus = available_cpus()
    assert stages.default_jobs(ProfileConfig(name="c")) == cpus
    assert stages.default_jobs(ProfileConfig(name="c", intra_op_threads=2)) == max(1, cpus // 2)
    gpu = ProfileConfig(name="g", kind="gpu", accelerator={"type": "a100", "count": 4})
    assert stages.default_jobs(gpu) == 4
    monkeypatch.setenv("DRIFTLAB_JOBS", "0")
    with pytest.raises(ValueError, match="DRIFTLAB_JOBS: '0'"):
        stages.default_jobs()


def test_fingerprint_reads_the_node_from_downward_api_env():
    env = {"DRIFTLAB_WHERE": "cluster", "DRIFTLAB_NODE_NAME": "gke-a100-pool-1a2b", "KUBERNETES_SERVICE_HOST": "10.0.0.1",
           "DRIFTLAB_POD_NAME": "driftlab-abc-123", "DRIFTLAB_POD_NAMESPACE": "driftlab",
           "DRIFTLAB_NODE_SELECTOR": json.dumps({"cloud.google.com/gke-nodepool": "a100-pool"})}
    where = fingerprint.placement(env)
    assert where == {"where": "cluster", "node_name": "gke-a100-pool-1a2b", "node_pool": "a100-pool",
                     "pod_name": "driftlab-abc-123", "pod_namespace": "driftlab", "in_kubernetes": True,
                     "profile": None}
    assert fingerprint.placement({"DRIFTLAB_NODE_POOL": "explicit", **env})["node_pool"] == "explicit"
    local = fingerprint.placement({})
    assert local["node_name"] is None and local["node_pool"] is None and local["in_kubernetes"] is False


def test_fingerprint_parses_nvidia_smi():
    # Output shapes of nvidia-smi 550 on an A100 node (no GPU on this machine to ask).
    query = ("NVIDIA A100-SXM4-40GB, 550.54.15, 40960 MiB, 8.0, GPU-5c4d3e2f-aaaa-bbbb-cccc-0123456789ab\n"
             "NVIDIA A100-SXM4-40GB, 550.54.15, 40960 MiB, 8.0, GPU-6d5e4f3a-aaaa-bbbb-cccc-0123456789ab\n")
    banner = "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4     |"
    gpus = fingerprint.parse_nvidia_smi(query, banner)
    assert len(gpus) == 2
    assert gpus[0] == {"product": "NVIDIA A100-SXM4-40GB", "driver": "550.54.15", "memory": "40960 MiB",
                       "compute_capability": "8.0", "uuid": "GPU-5c4d3e2f-aaaa-bbbb-cccc-0123456789ab",
                       "cuda_driver": "12.4"}
    old = fingerprint.parse_nvidia_smi("Tesla T4, 470.82.01, 15109 MiB\n")
    assert old[0]["product"] == "Tesla T4" and old[0]["compute_capability"] is None


def test_fingerprint_of_this_process_without_tensorflow_knobs(monkeypatch):
    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    fp = fingerprint.collect()
    assert fp["cpu_isas"] == supported_isas() and fp["cpu_model"]
    assert fp["python"].count(".") == 2 and fp["numpy"]
    assert fp["where"] == "local", "without DRIFTLAB_WHERE (set on a cluster only) the run is local"
    monkeypatch.setenv("DRIFTLAB_WHERE", "cluster")
    assert fingerprint.collect()["where"] == "cluster"
    assert isinstance(fp["gpus"], list)
    assert "tensorflow" not in fp or "tensorflow" in sys.modules, "collect() must not import TensorFlow itself"
