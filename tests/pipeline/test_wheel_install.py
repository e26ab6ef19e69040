"""The built wheel works outside the checkout: the KFP layer is inside the package.

The wheel is built from this tree and installed into a fresh virtual environment in a
temporary folder; its dependencies (the pinned set, several GB) come from this test
environment's site-packages through a ``.pth`` line instead of a second download. The
commands run from a folder that has no driftlab checkout in it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel = next((tmp / "dist").glob("driftlab-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    # Dependencies from this environment (a .pth line; the editable driftlab here is not activated by it).
    Path(site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--quiet", str(wheel)], check=True,
                   capture_output=True, timeout=600)
    work = tmp / "elsewhere"
    work.mkdir()
    shutil.copy(ROOT / "examples" / "quickstart.yaml", work / "experiment.yaml")
    return {"wheel": wheel, "venv": venv, "work": work}


def run(installed, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DRIFTLAB_DB_URL", "DRIFTLAB_HOME")}
    return subprocess.run([str(installed["venv"] / "bin" / "driftlab"), *args], cwd=installed["work"],
                          capture_output=True, text=True, timeout=timeout, env=env)


def test_the_wheel_holds_the_kfp_layer_and_the_golden_pipeline(installed):
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())
    for member in ("driftlab/components/tune.py", "driftlab/pipelines/driftlab_pipeline.py",
                   "driftlab/pipelines/driftlab.yaml", "driftlab/stages.py"):
        assert member in names, member
    assert not any(n.startswith(("components/", "pipelines/", "tests/", "docker/")) for n in names)


def test_help_and_compile_work_from_the_installed_package(installed):
    help_ = run(installed, "--help")
    assert help_.returncode == 0 and "run" in help_.stdout and "compile" in help_.stdout
    where = subprocess.run([str(installed["venv"] / "bin" / "python"), "-c",
                            "import driftlab.pipelines, driftlab.components; print(driftlab.pipelines.__file__)"],
                           cwd=installed["work"], capture_output=True, text=True, timeout=120)
    assert str(installed["venv"]) in where.stdout, "the package comes from the fresh environment, not the checkout"
    proc = run(installed, "compile", "--output", "pipeline.yaml")
    assert proc.returncode == 0, proc.stderr
    golden = (ROOT / "pipelines" / "driftlab.yaml").read_text()
    assert (installed["work"] / "pipeline.yaml").read_text().split("\n", 2)[2] == golden.split("\n", 2)[2]


def test_run_of_an_example_copied_elsewhere(installed):
    experiment = installed["work"] / "experiment.yaml"
    small = experiment.read_text().replace("epochs: 6", "epochs: 1").replace("trials: 6", "trials: 2")
    small = small.replace("shuffle: [0, 1]", "shuffle: [0]").replace("split: [0, 1]", "split: [0]")
    experiment.write_text(small)
    proc = run(installed, "run", "experiment.yaml", "--home", "home")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert list((installed["work"] / "home" / "reports" / "default").glob("*/report.html"))
