"""GPU drift check: the quickstart seeds on the CPU, on the GPU with TF32 off, and with TF32 on.

    scripts/gpu_check.sh            # or: .venv/bin/python benchmarks/gpu_check.py --seeds 4

Prints, per profile, each run's weight digest, eval accuracy and fit time, then
prediction disagreement and max-abs difference against the CPU and between the
two GPU profiles: real CPU<->GPU and TF32 drift. On a machine without a usable
GPU, the GPU part is skipped with a message saying why; the CPU part still runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from driftlab.config import ProfileConfig, load_config
from driftlab.runs.datasets import data_fingerprint
from driftlab.runs.executor import Worker, WorkerDied
from driftlab.config.profiles import profile_json
from driftlab.runs.spec import RunSpec


def gpu_status() -> tuple[bool, str]:
    if not shutil.which("nvidia-smi"):
        return False, "no nvidia-smi on PATH: no NVIDIA GPU or driver on this machine"
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"nvidia-smi failed: {exc}"
    if not out:
        return False, "nvidia-smi lists no GPU"
    probe = subprocess.run([sys.executable, "-c", "import tensorflow as tf; "
                            "print(len(tf.config.list_physical_devices('GPU')))"],
                           capture_output=True, text=True, timeout=300, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if probe.stdout.strip().splitlines()[-1:] != ["0"] and probe.returncode == 0:
        return True, out
    return False, (f"{out}\n  but this TensorFlow sees no GPU (tensorflow-cpu is installed); for the GPU part: "
                   "pip install -c constraints.txt 'tensorflow[and-cuda]==2.21.0'")


def specs(config, profile: ProfileConfig, seeds: int) -> list[RunSpec]:
    digest = data_fingerprint(config.dataset)
    hp = {"units": 64, "learning_rate": 0.003, "dropout": 0.1, **config.model.hyperparameters}
    return [RunSpec(experiment=config.name, campaign="gpu-check", dataset=config.dataset.model_dump(mode="json"),
                    data_digest=digest, builder=config.model.builder, hparams=hp, epochs=config.model.epochs,
                    batch_size=config.model.batch_size, init_seed=i, shuffle_seed=0, split_seed=0, repeat=0,
                    deterministic=True, profile=profile_json(profile)) for i in range(seeds)]


def run_profile(config, profile: ProfileConfig, seeds: int) -> list[dict]:
    worker = Worker(profile)
    try:
        records = [worker.run(s) for s in specs(config, profile, seeds)]
    finally:
        worker.close()
    fp = worker.fingerprint
    gpus = ", ".join(g.get("product", "?") for g in fp.get("gpus") or []) or "none"
    print(f"\n[{profile.name}] TF {fp.get('tensorflow')} CUDA {fp.get('cuda')} cuDNN {fp.get('cudnn')} "
          f"GPUs: {gpus}; TF32 {fp.get('tf32')}")
    for seed, r in enumerate(records):
        if r["status"] != "ok":
            print(f"  init_seed={seed}: {r['status']}: {r.get('error')}")
            continue
        print(f"  init_seed={seed}: digest {r['weights_digest'][:16]}  accuracy {r['metrics']['eval_accuracy']:.4f}"
              f"  fit {r['timings']['fit_s']:.2f}s")
    return records


def compare(name_a: str, a: list[dict], name_b: str, b: list[dict]) -> None:
    pairs = [(x, y) for x, y in zip(a, b) if x["status"] == y["status"] == "ok"]
    if not pairs:
        return
    dis = [float(np.mean(np.argmax(x["predictions"], 1) != np.argmax(y["predictions"], 1))) for x, y in pairs]
    mad = [float(np.max(np.abs(x["predictions"] - y["predictions"]))) for x, y in pairs]
    same = sum(x["weights_digest"] == y["weights_digest"] for x, y in pairs)
    print(f"{name_a} vs {name_b}: identical weights {same}/{len(pairs)}, disagreement mean {np.mean(dis):.4f}, "
          f"max-abs prediction difference {max(mad):.2e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/quickstart.yaml")
    parser.add_argument("--seeds", type=int, default=4)
    args = parser.parse_args()
    config = load_config(args.config)
    t0 = time.perf_counter()
    cpu = run_profile(config, ProfileConfig(name="cpu"), args.seeds)
    ok, why = gpu_status()
    if not ok:
        print(f"\nGPU part skipped: {why}")
        print(f"done in {time.perf_counter() - t0:.0f}s (CPU only)")
        return 0
    print(f"\nGPUs: {why}")
    gpu_off = run_profile(config, ProfileConfig(name="gpu-tf32-off", kind="gpu", tf32=False), args.seeds)
    gpu_on = run_profile(config, ProfileConfig(name="gpu-tf32-on", kind="gpu", tf32=True), args.seeds)
    print()
    compare("cpu", cpu, "gpu-tf32-off", gpu_off)
    compare("cpu", cpu, "gpu-tf32-on", gpu_on)
    compare("gpu-tf32-off", gpu_off, "gpu-tf32-on", gpu_on)
    print(f"done in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except WorkerDied as exc:
        print(f"a worker died: {exc}", file=sys.stderr)
        sys.exit(1)
