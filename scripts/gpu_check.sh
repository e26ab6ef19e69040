#!/usr/bin/env bash
# Real CPU<->GPU and TF32 drift on the quickstart seeds, in well under 10 minutes.
# Works on a CPU-only machine too: it then says the GPU part was skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
[ -x "$PY" ] || make venv >/dev/null
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "nvidia-smi: not available"
exec timeout 540 "$PY" benchmarks/gpu_check.py "$@"
