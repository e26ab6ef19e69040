"""The HTML report in a real headless browser: it renders its plots and runs no script."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze
from support.synthetic import SyntheticPlan, generate
from driftlab.report import write_all

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")
EVIL = "<script>document.title='PWNED'</script>"


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                           "--enable-logging=stderr", "--v=0", *args], capture_output=True, text=True, timeout=120)


def test_report_renders_in_chromium_with_plots_and_no_script(tmp_path):
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True}})
    plan = SyntheticPlan(profiles=("ref", EVIL), sigmas={"init": 0.02, "hardware": 0.01}, n_eval=50)
    res = analyze(generate(plan), cfg, reference="ref")
    res["experiment"] = {"name": EVIL, "campaign": "browser"}
    html = write_all(res, tmp_path)["html"]
    dom = _chromium("--dump-dom", f"file://{html}")
    assert dom.returncode == 0, dom.stderr[-2000:]
    page = dom.stdout
    assert len(re.findall(r"<svg\b", page)) >= 5
    assert "<script" not in page.lower()  # the escaped name stayed text
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert title.startswith("driftlab report:")  # a script that ran would have set it to 'PWNED'
    assert "&lt;script&gt;" in title
    console_errors = [line for line in dom.stderr.splitlines() if "CONSOLE" in line and "rror" in line]
    assert console_errors == []
    shot = tmp_path / "report.png"
    _chromium("--hide-scrollbars", "--window-size=1100,3000", f"--screenshot={shot}", f"file://{html}")
    assert shot.exists() and shot.stat().st_size > 10_000  # a blank page compresses far below this
