"""Helpers for the tuning tests: experiment text, a cheap objective, worker processes.

Run as a script, this file is one tuning worker process on the cheap
objective (``python tests/support/tuning.py --config F --campaign C --worker I``);
the multi-process tests start several and read the JSON line each prints.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import optuna

HERE = Path(__file__).resolve()
ROOT = HERE.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def experiment_text(trials: int, *, sampler: str = "random", pruner: str = "none", epochs: int = 4,
                    heartbeat: int = 1, max_retry: int = 2, grid: bool = False, seed: int = 0) -> str:
    """A small experiment whose search space the cheap objective understands."""
    x = "{type: float, low: -2.0, high: 2.0, step: 1.0}" if grid else "{type: float, low: -2.0, high: 2.0}"
    return f"""\
name: tuneproc
dataset: {{name: digits}}
model: {{builder: mlp, epochs: {epochs}, batch_size: 64}}
search_space:
  x: {x}
  width: {{type: int, low: 1, high: 3}}
tuning: {{trials: {trials}, workers: 8, sampler: {sampler}, pruner: {pruner}, seed: {seed},
         heartbeat_seconds: {heartbeat}, max_retry: {max_retry}}}
profiles: {{reference: cpu-default, pools: [{{name: cpu-default}}]}}
"""


def cheap_objective(trial: optuna.Trial, config, *, sleep: float = 0.0) -> float:
    """A learning curve without learning: converges toward -(x-0.7)^2 - 0.1*width.

    Reports after each "epoch" so pruners have curves to compare; bad ``x``
    is bad from the first step, so the median pruner has something to cut.
    """
    from driftlab import tuning

    params = tuning.suggest(trial, config)
    x, width = params["x"], params["width"]
    final = -(x - 0.7) ** 2 - 0.1 * width
    value = final
    for step in range(config.model.epochs):
        value = final - math.exp(-step)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")
        if sleep:
            time.sleep(sleep)
    return value


def worker_command(config_file: Path, campaign: str, worker: int, *, sleep: float = 0.0,
                   hang_first: bool = False) -> list[str]:
    cmd = [sys.executable, str(HERE), "--config", str(config_file), "--campaign", campaign,
           "--worker", str(worker), "--sleep", str(sleep)]
    return cmd + (["--hang-first"] if hang_first else [])


def start_workers(config_file: Path, campaign: str, n: int, env: dict[str, str], *, sleep: float = 0.0,
                  log_dir: Path) -> list[subprocess.Popen]:
    """Start ``n`` worker processes; their stderr goes to files in ``log_dir``."""
    procs = []
    for i in range(n):
        err = open(log_dir / f"worker{i}.err", "w")  # noqa: SIM115 - closed with the process
        procs.append(subprocess.Popen(worker_command(config_file, campaign, i, sleep=sleep), env=env,
                                      stdout=subprocess.PIPE, stderr=err, text=True))
    return procs


def finish(procs: list[subprocess.Popen], timeout: float = 240) -> list[dict]:
    """Wait for the workers; each must exit 0 and print its JSON result."""
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"worker exited {p.returncode}: {out}"
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def study_proxy(db_url: str, log_path: Path, *, threads: int = 8) -> Iterator[str]:
    """driftlab's gRPC storage proxy (``python -m driftlab.tuning.proxy``) in front of ``db_url``.

    Yields its address (``127.0.0.1:PORT``) once it answers; stops it afterwards.
    """
    from driftlab import settings
    from driftlab.tuning.grpc_storage import SlotGrpcStorage

    port = free_port()
    env = {**os.environ, settings.DB_URL.name: db_url}
    env.pop(settings.STUDY_GRPC.name, None)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "driftlab.tuning.proxy", "--host", "127.0.0.1",
                                 "--port", str(port), "--threads", str(threads)], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        probe = SlotGrpcStorage(host="127.0.0.1", port=port, heartbeat_seconds=1, stale_callback=None)
        probe.wait_server_ready(timeout=60)
        probe.close()
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True)
    parser.add_argument("--campaign", required=True)
    parser.add_argument("--worker", type=int, required=True)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--hang-first", action="store_true", help="first trial sleeps until killed")
    args = parser.parse_args()

    from driftlab import tuning
    from driftlab.config import load_config

    config = load_config(args.config)
    hung = [not args.hang_first]

    def objective(trial: optuna.Trial) -> float:
        if not hung[0]:
            hung[0] = True
            tuning.suggest(trial, config)  # parameters first, so that the retry has them
            trial.set_user_attr("hanging", True)
            time.sleep(3600)
        return cheap_objective(trial, config, sleep=args.sleep)

    ran = tuning.run_worker(config, args.campaign, args.worker, objective)
    print(json.dumps({"worker": args.worker, "ran": ran, "pid": os.getpid()}), flush=True)


if __name__ == "__main__":
    main()
