"""Run the driftlab pipeline on this machine with ``kfp.local``.

The pipeline definition is the one that compiles for a cluster; here
``kfp.local.SubprocessRunner(use_venv=False)`` executes each task as a
subprocess of this Python. kfp.local prints every task's full log; driftlab
keeps all of it in a log file and shows people only its own progress lines
and the task status lines.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import sys
from pathlib import Path
from typing import Iterator, TextIO

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SHOWN = re.compile(r"\[driftlab\]|finished with status")


class FilteredStdout(io.TextIOBase):
    """Everything to the log file; driftlab's lines and task statuses also to the terminal."""

    def __init__(self, log: TextIO, terminal: TextIO, *, verbose: bool = False):
        self.log, self.terminal, self.verbose = log, terminal, verbose
        self._partial = ""
        self._color = terminal.isatty()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.log.write(ANSI.sub("", text))
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if self.verbose or SHOWN.search(line):
                shown = line.strip()
                shown = shown.replace("[driftlab] ", "") if "[driftlab]" in shown else shown
                self.terminal.write((shown if self._color else ANSI.sub("", shown)) + "\n")
        self.terminal.flush()
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.terminal.flush()


@contextlib.contextmanager
def captured_output(log_path: Path, *, verbose: bool = False) -> Iterator[None]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        original = sys.stdout
        sys.stdout = FilteredStdout(log, original, verbose=verbose)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stdout = original


def run_pipeline(config_text: str, campaign: str, home: Path, *, verbose: bool = False) -> Path:
    """Execute the pipeline; return the folder the report was written to. Raises on task failure."""
    import warnings

    os.environ.setdefault("DRIFTLAB_PIPELINE_RETRIES", "0")
    from kfp import local

    from pipelines.driftlab_pipeline import driftlab_pipeline

    # kfp.local warns that the cluster image is not used locally: that is the point.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"kfp\.local")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"kfp")

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    report_dir = home / "reports" / campaign / stamp
    log_path = home / "logs" / f"{campaign}-{stamp}.log"
    os.environ["DRIFTLAB_HOME"] = str(home)
    os.environ["DRIFTLAB_REPORT_DIR"] = str(report_dir)
    os.environ["DRIFTLAB_LOG_DIR"] = str(log_path.parent)
    os.environ["DRIFTLAB_QUIET"] = "1"
    # Tasks run "python3 -m kfp.dsl.executor_main": make that this interpreter.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(home / "kfp"),
               raise_on_error=True)
    with captured_output(log_path, verbose=verbose):
        try:
            driftlab_pipeline(config_yaml=config_text, campaign=campaign)
        except Exception as exc:
            raise PipelineFailed(str(ANSI.sub("", str(exc))).splitlines()[0], log_path, report_dir) from None
    return report_dir


class PipelineFailed(RuntimeError):
    def __init__(self, message: str, log_path: Path, report_dir: Path):
        super().__init__(message)
        self.log_path = log_path
        self.report_dir = report_dir


def ensure_repo_on_path() -> None:
    """Make the top-level ``components``/``pipelines`` packages importable from a checkout."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pipelines" / "driftlab_pipeline.py").exists() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
