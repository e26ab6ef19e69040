"""A training worker: one process, one profile, many runs.

The parent starts ``python -m driftlab.runs.worker`` with the profile's knobs in the
environment, so TensorFlow is imported once per worker with those knobs, and
the worker then trains run after run (``training.train`` clears the Keras
session and reseeds for each; it also reuses the traced train step of an
architecture it has already trained, which keeps digests equal to a fresh
process's, see ``training``).

The protocol is JSON lines: the worker sends ``{"ready": fingerprint}`` (or
``{"refused": reason}`` when this machine cannot honour the profile), then
for each ``{"check": request}`` it answers ``{"check": build_check.answer(request)}``
(``driftlab run``'s build check, see ``depot``), and for each spec it reads it answers one record (a spec sent with ``report_epochs``
first reports every epoch and waits for go or stop, see ``_epoch_reporter``).
Anything user code prints goes
to stderr, so the protocol channel stays clean.

Signals: the worker ignores SIGINT (Ctrl-C reaches the whole process group;
the parent decides what to keep and stops its workers), and on Linux it asks
the kernel to send it SIGTERM when its parent dies, so a SIGKILLed stage
leaves no orphan training on.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import traceback
from typing import Any, TextIO

from driftlab.runs import codec
from driftlab import settings

PR_SET_PDEATHSIG = 1


def encode_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its arrays as compact text, for one JSON line."""
    out = dict(record)
    for name in ("predictions", "eval_labels", "weights"):
        out[name] = codec.pack_text(record.get(name))
    return out


def decode_record(message: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``encode_record``."""
    out = dict(message)
    for name in ("predictions", "eval_labels", "weights"):
        out[name] = codec.unpack_text(message.get(name))
    return out


def _protocol_channel() -> TextIO:
    # Keep the real stdout for the protocol and point fd 1 at stderr, so that
    # prints from TensorFlow, Keras or user builders cannot corrupt it.
    proto_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(proto_fd, "w", buffering=1)


def _die_with_parent(parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _configure_tensorflow() -> str | None:
    """Pin threads, TF32 and GPU memory; return why this process cannot run its profile, if it cannot."""
    import tensorflow as tf

    threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0") or 0)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ.get("TF_NUM_INTEROP_THREADS", "1")))
    tf32 = os.environ.get("NVIDIA_TF32_OVERRIDE")
    if tf32 is not None:
        tf.config.experimental.enable_tensor_float_32_execution(tf32 == "1")
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    if settings.PROFILE_KIND.raw() == "gpu" and not gpus:
        return (f"profile '{settings.PROFILE.raw()}' is a GPU pool but TensorFlow sees no GPU "
                "on this node; check the pool's accelerator and the image (needs TensorFlow with CUDA)")
    return None


class StopRequested(Exception):
    """The parent answered an epoch report with ``stop``."""

    def __init__(self, reason: str, epoch: int):
        super().__init__(reason)
        self.epoch = epoch


def _epoch_reporter(stdin: TextIO, channel: TextIO):
    """An ``epoch_callback`` that reports each epoch's validation metrics and waits for go or stop.

    The protocol inside one run: ``{"epoch": e, "values": {...}}`` out, ``{"stop": false}``
    (or ``{"stop": true, "reason": ...}``) back. A tuning trial uses it for pruning, so the
    pruner's decision is taken where the study is, not in the process running user code.
    """

    def report(epoch: int, values: dict[str, float]) -> None:
        channel.write(json.dumps({"epoch": epoch, "values": values}) + "\n")
        answer = stdin.readline()
        if not answer:
            raise StopRequested("the stage closed the channel", epoch)
        reply = json.loads(answer)
        if reply.get("stop"):
            raise StopRequested(str(reply.get("reason") or "stopped by the stage"), epoch)

    return report


def serve(stdin: TextIO, channel: TextIO) -> None:
    """Answer ready (or refused), then one record per spec line until stdin closes."""
    from driftlab.runs import failures, fingerprint, training
    from driftlab.runs.spec import RunSpec

    refused = _configure_tensorflow()  # imports TensorFlow here, after the profile's knobs
    fp = fingerprint.collect()
    if refused:
        channel.write(json.dumps({"refused": refused, "fingerprint": fp}) + "\n")
        return
    channel.write(json.dumps({"ready": fp}) + "\n")
    for line in stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        if "check" in message:  # `driftlab run`'s build check, in the worker the first trials then use
            channel.write(json.dumps({"check": _build_check(message["check"])}) + "\n")
            continue
        spec = RunSpec.from_json(message["spec"])
        callback = _epoch_reporter(stdin, channel) if message.get("report_epochs") else None
        try:
            record = encode_record(training.train(spec, epoch_callback=callback))
        except StopRequested as stop:  # the parent asked to stop after an epoch (a pruned trial)
            record = {"key": spec.key, "status": "stopped", "error": str(stop), "epoch": stop.epoch}
        except Exception as exc:  # a run that raises is recorded as failed; the worker goes on
            # The error names the user's exception and frames (failures.describe); the full
            # traceback goes to this worker's log (stderr), never to the terminal.
            full = traceback.format_exc()
            print(f"run {spec.key} failed:\n{full}", file=sys.stderr, flush=True)
            record = {"key": spec.key, "status": "failed", "error": failures.describe(exc),
                      "traceback": traceback.format_exc(limit=8)}
        record["fingerprint"] = fp
        channel.write(json.dumps(record) + "\n")


def _build_check(request: dict[str, Any]) -> dict[str, Any]:
    """``build_check.answer`` here; the builder's module is imported without leaving a .pyc behind."""
    from driftlab.runs import build_check, failures

    before, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # a refused experiment leaves no file
    os.environ[settings.BUILD_CHECK.name] = "1"  # as in validate's own build-check process
    try:
        return build_check.answer(request)
    except Exception as exc:  # noqa: BLE001 - what the build check's own process would die of
        print(traceback.format_exc(), file=sys.stderr, flush=True)
        return {"crashed": failures.describe(exc)}
    finally:
        sys.dont_write_bytecode = before
        os.environ.pop(settings.BUILD_CHECK.name, None)


def main() -> None:
    parent = int(settings.PARENT_PID.raw() or 0)
    _die_with_parent(parent or os.getppid())
    channel = _protocol_channel()
    serve(sys.stdin, channel)
    # Every answer is written: exit without the interpreter's teardown. TensorFlow's took 1.1-1.3 s
    # of one core, and every task that closed its workers (each tune and retrain pod) waited for it.
    for stream in (channel, sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
