"""A training worker: one process, one profile, many runs.

The parent starts ``python -m driftlab.worker`` with the profile's knobs in the
environment, so TensorFlow is imported once per worker with those knobs. The
protocol is JSON lines: the worker sends ``{"ready": fingerprint}``, then for
each spec it reads it answers one record. Anything user code prints goes to
stderr, so the protocol channel stays clean.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any, TextIO

from driftlab import codec


def encode_record(record: dict[str, Any]) -> dict[str, Any]:
    out = dict(record)
    for name in ("predictions", "eval_labels", "weights"):
        out[name] = codec.pack_text(record.get(name))
    return out


def decode_record(message: dict[str, Any]) -> dict[str, Any]:
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


def serve(stdin: TextIO, channel: TextIO) -> None:
    from driftlab import fingerprint, training
    from driftlab.runspec import RunSpec

    import tensorflow as tf  # noqa: F401  (import here, after the profile's knobs)

    threads = int(os.environ.get("TF_NUM_INTRAOP_THREADS", "0") or 0)
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(int(os.environ.get("TF_NUM_INTEROP_THREADS", "1")))
    tf32 = os.environ.get("NVIDIA_TF32_OVERRIDE")
    if tf32 is not None:
        tf.config.experimental.enable_tensor_float_32_execution(tf32 == "1")
    fp = fingerprint.collect()
    channel.write(json.dumps({"ready": fp}) + "\n")
    for line in stdin:
        if not line.strip():
            continue
        spec = RunSpec.from_json(json.loads(line)["spec"])
        try:
            record = encode_record(training.train(spec))
        except Exception as exc:  # a run that raises is recorded as failed; the worker goes on
            record = {"key": spec.key, "status": "failed",
                      "error": f"{type(exc).__name__}: {exc}",
                      "traceback": traceback.format_exc(limit=8)}
        record["fingerprint"] = fp
        channel.write(json.dumps(record) + "\n")


def main() -> None:
    channel = _protocol_channel()
    serve(sys.stdin, channel)


if __name__ == "__main__":
    main()
