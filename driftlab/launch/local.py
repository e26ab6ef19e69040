"""Run the driftlab pipeline on this machine with ``kfp.local``.

The pipeline definition is the one that compiles for a cluster; here
``kfp.local.SubprocessRunner(use_venv=False)`` executes each task as a
subprocess of this Python. kfp.local prints every task's full log; driftlab
keeps all of it in a log file and shows people only its own progress lines
and the task status lines.

Each run gets its own report folder and log, named by the time and a short
random suffix (``run_folders``: two runs started in the same second never
share them), and its own temporary folder: kfp.local's tasks leave a
``tmp.*`` folder each in ``$TMPDIR``, so ``TMPDIR`` (and ``tempfile.tempdir``
in this process) point at a folder of the run's own, removed when the run
ends however it ends. Task outputs live under ``<home>/kfp``, never there.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import re
import secrets
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

from driftlab.errors import DriftlabError
from driftlab import settings
from driftlab.storage import temp_folders

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SHOWN = re.compile(r"\[driftlab\]|finished with status")
FOLDER_ATTEMPTS = 20
TMPDIR = "TMPDIR"  # where kfp.local's task command (mktemp -d) and Python's tempfile put temporary files


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


@dataclass(frozen=True)
class RunFolders:
    """One run's report folder, full log and temporary folder."""

    report_dir: Path
    log_path: Path
    tmp_dir: Path


def run_folders(home: Path, campaign: str) -> RunFolders:
    """Create this run's folders: ``<stamp>-<4 hex>`` under ``reports/<campaign>``, its log, a temporary folder.

    The report folder is created with ``exist_ok=False`` and another suffix is drawn if it exists,
    so concurrent runs never share a report folder or a log. The temporary folder is made in the
    system's temporary directory (``driftlab-run-...``), owned by this process; those of killed
    runs are removed first (``storage.temp_folders``).
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = home / "reports" / campaign
    parent.mkdir(parents=True, exist_ok=True)
    temp_folders.sweep(Path(tempfile.gettempdir()))  # what killed runs left behind
    for _ in range(FOLDER_ATTEMPTS):
        name = f"{stamp}-{secrets.token_hex(2)}"
        try:
            (parent / name).mkdir(exist_ok=False)
        except FileExistsError:
            continue
        tmp_dir = Path(tempfile.mkdtemp(prefix=f"driftlab-run-{name}-", dir=tempfile.gettempdir()))
        temp_folders.claim(tmp_dir)
        return RunFolders(parent / name, home / "logs" / f"{campaign}-{name}.log", tmp_dir)
    raise DriftlabError(f"{parent}: no free report folder name for {stamp} after {FOLDER_ATTEMPTS} tries; "
                        "remove old report folders there")


@contextlib.contextmanager
def temporary_files_in(folder: Path) -> Iterator[None]:
    """Point ``TMPDIR`` (task subprocesses) and ``tempfile.tempdir`` (this process) at ``folder``, then remove it."""
    before_env, before_tempdir = os.environ.get(TMPDIR), tempfile.tempdir
    os.environ[TMPDIR], tempfile.tempdir = str(folder), str(folder)
    try:
        yield
    finally:
        if before_env is None:
            os.environ.pop(TMPDIR, None)
        else:
            os.environ[TMPDIR] = before_env
        tempfile.tempdir = before_tempdir
        shutil.rmtree(folder, ignore_errors=True)


def run_pipeline(config_text: str, campaign: str, home: Path, *, verbose: bool = False) -> Path:
    """Execute the pipeline; return the folder the report was written to. Raises on task failure."""
    folders = run_folders(home, campaign)
    try:
        with temporary_files_in(folders.tmp_dir):
            return _run(config_text, campaign, home, folders, verbose=verbose)
    finally:
        with contextlib.suppress(OSError):
            folders.report_dir.rmdir()  # only while empty: a run that wrote no report leaves no folder


def _run(config_text: str, campaign: str, home: Path, folders: RunFolders, *, verbose: bool) -> Path:
    import warnings

    hide_docker_folders()
    from kfp import local

    from driftlab.launch.task_env import credentials_by_pipe
    from driftlab.runs import depot
    from driftlab.runs.executor import available_cpus
    from driftlab.pipelines.driftlab_pipeline import build_pipeline

    driftlab_pipeline = build_pipeline(retries=0)  # locally a failure is a bug to read, not to wait for

    # kfp.local warns that the cluster image is not used locally: that is the point.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"kfp\.local")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"kfp")

    report_dir, log_path = folders.report_dir, folders.log_path
    os.environ[settings.HOME.name] = str(home)
    os.environ[settings.REPORT_DIR.name] = str(report_dir)
    os.environ[settings.LOG_DIR.name] = str(log_path.parent)
    os.environ[settings.LOG_FILE.name] = str(log_path)  # stages name it after their failures ("full log: ...")
    os.environ[settings.DB_WAIT_AT_OPEN.name] = "1"  # the database was reachable at start: tasks wait out outages
    os.environ[settings.QUIET.name] = "1"
    # Tasks run "python3 -m kfp.dsl.executor_main": make that this interpreter.
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(home / "kfp"),
               raise_on_error=True)
    start = log_path.stat().st_size if log_path.exists() else 0  # this run's part of the log
    # Warm workers lent across the tasks: one TensorFlow import per profile and core, not per task.
    with captured_output(log_path, verbose=verbose), credentials_by_pipe(), \
            depot.serving(folders.tmp_dir, log_dir=str(log_path.parent), max_idle=available_cpus()) as lender:
        try:
            driftlab_pipeline(config_yaml=config_text, campaign=campaign)
            print(f"[driftlab] training workers: {lender.started} started (logs: worker-*-run{os.getpid()}-*.log), "
                  f"lent {lender.lent} time(s) across the run's checks and tasks", flush=True)
        except Exception as exc:
            kfp_line = (ANSI.sub("", str(exc)).strip().splitlines() or [type(exc).__name__])[0]
            sys.stdout.flush()
            log_text = _read_from(log_path, start)
            raise PipelineFailed(failure_message(kfp_line, log_text), log_path, report_dir,
                                 task=failing_task(kfp_line, log_text)) from None
    return report_dir


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


TASK_NAME = re.compile(r"Inner task failed: '([^']+)'|Task '([^']+)' finished with status FAILURE")
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*(?::.*)?)$")  # driftlab.storage.store.StoreError: ...
KFP_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ - [A-Z]+ - ")  # kfp.local's own logging, not the task's
MAX_REASON = 500


def failing_task(kfp_message: str, log_text: str = "") -> str | None:
    """The innermost failed task's name, from kfp's exception (else the log's last FAILURE line)."""
    for text in (kfp_message, log_text):
        found = [m.group(1) or m.group(2) for m in TASK_NAME.finditer(ANSI.sub("", text))]
        if found:
            return found[0] if text is kfp_message else found[-1]
    return None


def task_error(log_text: str, task: str | None = None) -> str | None:
    """The one line that says why ``task`` failed, read from the captured log (see ``failure_message``).

    In order: the last line of the task's last Python traceback (``StoreError: ...``, module path
    dropped), else its last ``[driftlab] ... failed`` line, else the last line it printed
    (a ``SystemExit`` message). The task's part of the log is the text after its last
    ``Executing task '<task>'`` line; the whole text when that is not found.
    """
    text = ANSI.sub("", log_text)
    if task:
        marker = f"Executing task '{task}'"
        at = text.rfind(marker)
        if at >= 0:
            text = text[at + len(marker):]
            end = text.find(f"Task '{task}' finished with status")
            text = text if end < 0 else text[:text.rfind("\n", 0, end) + 1]
    lines = [line.rstrip() for line in text.splitlines()]
    reason = None
    headers = [i for i, line in enumerate(lines) if line.strip() == "Traceback (most recent call last):"]
    if headers:
        indent = len(lines[headers[-1]]) - len(lines[headers[-1]].lstrip())
        for line in lines[headers[-1] + 1:]:
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                match = EXCEPTION_LINE.match(line.strip())
                reason = match.group(1) if match else line.strip()
                break
    if reason is None:
        tagged = [line for line in lines if "[driftlab]" in line and re.search(r"\bfailed\b|\berror\b", line)]
        if tagged:
            reason = tagged[-1].split("[driftlab]", 1)[1].strip()
    if reason is None:
        printed = [line.strip() for line in lines if line.strip() and not line.strip().startswith("[KFP Executor")
                   and "[driftlab]" not in line and not KFP_LOG_LINE.match(line) and line.strip()[0] not in '{}[]"']
        reason = printed[-1] if printed else None
    if not reason:
        return None
    return reason if len(reason) <= MAX_REASON else reason[:MAX_REASON - 1] + "…"


def failure_message(kfp_message: str, log_text: str) -> str:
    """``task '<name>' failed: <why>`` (the task's own error from the log), else kfp's own line."""
    task = failing_task(kfp_message, log_text)
    reason = task_error(log_text, task)
    if not reason:
        return kfp_message
    # cli prints this with rich: keep "[...]" in the reason from being read as markup.
    try:
        from rich.markup import escape
    except ImportError:  # pragma: no cover - rich is a dependency of the CLI
        def escape(text: str) -> str:
            return text
    return f"task '{task}' failed: {escape(reason)}" if task else f"{kfp_message}: {escape(reason)}"


class PipelineFailed(DriftlabError, RuntimeError):
    """A task of the local pipeline failed; ``task`` names it (``check-gate``: the gate did not pass)."""

    GATE_TASK = "check-gate"

    def __init__(self, message: str, log_path: Path, report_dir: Path, *, task: str | None = None):
        super().__init__(message)
        self.log_path = log_path
        self.report_dir = report_dir
        self.task = task

    @property
    def gate_only(self) -> bool:
        """Only the gate check failed: the measurement and its report are complete."""
        return self.task == self.GATE_TASK and (self.report_dir / "report.json").exists()


def hide_docker_folders() -> None:
    """Make ``import docker`` fail unless the docker SDK itself is installed.

    kfp.local imports its Docker runner when ``import docker`` succeeds. A folder
    named ``docker/`` in the working directory (this repository's Dockerfiles, or a
    user project's) imports as an empty namespace package and breaks kfp.local with an
    AttributeError. driftlab runs tasks as subprocesses and needs no Docker SDK.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("docker")
    except (ImportError, ValueError):
        return
    if spec is not None and spec.origin in (None, "namespace"):  # a folder, not the SDK
        sys.modules["docker"] = None  # type: ignore[assignment]  # ``import docker`` now raises ImportError

