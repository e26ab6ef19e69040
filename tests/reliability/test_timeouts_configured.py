"""A hung test fails instead of hanging ``make test``: pytest-timeout is configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_TIMEOUT_S = 1800


def ini_options() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["tool"]["pytest"]["ini_options"]


def test_a_per_test_timeout_is_set_and_active(request):
    options = ini_options()
    timeout = float(options["timeout"])
    assert 0 < timeout <= MAX_TIMEOUT_S, f"timeout = {timeout}: set, and at most {MAX_TIMEOUT_S} s"
    assert options.get("timeout_method", "signal") in ("signal", "thread")
    assert request.config.pluginmanager.hasplugin("timeout"), "pytest-timeout is not installed"
    assert float(request.config.getini("timeout")) == timeout, "this session does not run with that timeout"


def test_the_configured_method_really_stops_a_hung_test(tmp_path):
    method = ini_options().get("timeout_method", "signal")
    (tmp_path / "pytest.ini").write_text(f"[pytest]\ntimeout = 1\ntimeout_method = {method}\n")
    (tmp_path / "test_hangs.py").write_text("import time\n\ndef test_hangs():\n    time.sleep(60)\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=50)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Timeout" in out, out
