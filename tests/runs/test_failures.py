"""Errors that show: a failed run names the user's exception and frames; a failed stage says why in one line.

The user code here is a real module written to tmp_path and imported; the
exceptions are really raised through driftlab's model building, Keras and
the standard library. The database outages are real: a TCP proxy in front
of the PostgreSQL server is stopped (see ``fault_helpers``).
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from driftlab.runs import failures
from driftlab.launch import local as local_run
from support.faults import TcpProxy, scratch_database

ROOT = Path(__file__).resolve().parents[2]
DRIFTLAB_DIR = str(ROOT / "driftlab")

USER_CODE = '''\
import json


def _check(width):
    if width <= 0:
        raise ValueError("width must be positive")
    return width


def build(hparams, *, n_features, n_outputs, task):
    return _check(int(hparams.get("width", 0)))


def deep(hparams, *, n_features, n_outputs, task, depth=6):
    if depth == 0:
        raise RuntimeError("bottom of the stack")
    return deep(hparams, n_features=n_features, n_outputs=n_outputs, task=task, depth=depth - 1)


def parse(hparams, *, n_features, n_outputs, task):
    return json.loads("{not json")


def wrapped(hparams, *, n_features, n_outputs, task):
    try:
        return {}["width"]
    except KeyError as exc:
        raise RuntimeError("the experiment file sets no width") from exc


def bad_layer(hparams, *, n_features, n_outputs, task):
    import keras

    return keras.Sequential([keras.Input((n_features,)), keras.layers.Dense(-3)])


def long_message(hparams, *, n_features, n_outputs, task):
    raise ValueError("x" * 5000)


def returns_dict(hparams, *, n_features, n_outputs, task):
    return {"layers": 3}
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A user's builder module, written to tmp_path and importable: (module name, its file)."""
    name = f"mybuilders_{uuid.uuid4().hex[:8]}"
    path = tmp_path / "user_code" / f"{name}.py"
    path.parent.mkdir()
    path.write_text(USER_CODE)
    monkeypatch.syspath_prepend(str(path.parent))
    importlib.invalidate_caches()
    yield name, path
    sys.modules.pop(name, None)


def _raised_by(builder: str) -> BaseException:
    from driftlab.runs.models import build_model

    try:
        build_model(builder, {}, n_features=4, n_outputs=2, task="classification")
    except Exception as exc:
        return exc
    raise AssertionError(f"control: the builder {builder} raised nothing")


def _frames(text: str) -> list[str]:
    return [line for line in text.splitlines()[1:] if line.startswith('  File "')]


def test_builder_error_shows_the_users_exception_and_frame_not_driftlabs(user_module):
    name, path = user_module
    exc = _raised_by(f"{name}:build")
    assert type(exc).__name__ == "ModelBuildError", "control: driftlab wrapped the user's exception"
    text = failures.describe(exc)
    first, *rest = text.splitlines()
    assert first == f"model.builder: '{name}:build' raised ValueError: width must be positive"
    assert first.endswith("ValueError: width must be positive")
    frames = _frames(text)
    assert frames == rest, "every line after the first is a user frame"
    assert frames[-1] == f'  File "{path}", line 6, in _check: raise ValueError("width must be positive")'
    assert any(f'in build: return _check(' in f for f in frames), frames
    assert DRIFTLAB_DIR not in text and "models.py" not in text and "Traceback" not in text


def test_only_the_last_three_user_frames_are_shown(user_module):
    name, path = user_module
    text = failures.describe(_raised_by(f"{name}:deep"))
    assert text.splitlines()[0].endswith("RuntimeError: bottom of the stack")
    frames = _frames(text)
    assert len(frames) == failures.MAX_FRAMES and all(str(path) in f and "in deep" in f for f in frames)
    assert frames[-1].endswith('raise RuntimeError("bottom of the stack")')


def test_stdlib_frames_are_left_out(user_module):
    name, path = user_module
    text = failures.describe(_raised_by(f"{name}:parse"))
    assert text.splitlines()[0].startswith(f"model.builder: '{name}:parse' raised JSONDecodeError: Expecting")
    frames = _frames(text)
    assert len(frames) == 1 and frames[0].startswith(f'  File "{path}"') and "json.loads" in frames[0]
    assert "json/decoder.py" not in text and "json/__init__.py" not in text


def test_the_exception_the_user_raised_wins_over_its_context(user_module):
    name, path = user_module
    text = failures.describe(_raised_by(f"{name}:wrapped"))
    assert text.splitlines()[0].endswith("RuntimeError: the experiment file sets no width"), text
    assert _frames(text)[-1].endswith('raise RuntimeError("the experiment file sets no width") from exc')


@pytest.mark.slow
def test_keras_error_under_user_code_shows_keras_message_and_the_users_line(user_module):
    name, path = user_module
    text = failures.describe(_raised_by(f"{name}:bad_layer"))
    first = text.splitlines()[0]
    assert "raised ValueError:" in first and "units" in first, text
    frames = _frames(text)
    assert frames and all(f.startswith(f'  File "{path}"') for f in frames), text
    assert "keras.layers.Dense(-3)" in frames[-1]
    assert "site-packages" not in text and DRIFTLAB_DIR not in text


def test_driftlab_own_error_keeps_its_message_and_shows_no_frames(user_module):
    name, path = user_module
    text = failures.describe(_raised_by(f"{name}:returns_dict"))
    assert text.splitlines()[0] == f"ModelBuildError: model.builder: '{name}:returns_dict' returned dict, " \
                                   "not a keras.Model"
    # The only frames left are of whoever caught it (this test here; driftlab's worker in a real run).
    assert str(path) not in text and DRIFTLAB_DIR not in text
    missing = failures.describe(_raised_by("no_such_module_for_driftlab_tests:build"))
    assert missing.startswith("ModelBuildError: model.builder: cannot import module 'no_such_module_for_driftlab")
    assert DRIFTLAB_DIR not in missing and "importlib" not in missing


def test_error_text_is_bounded(user_module):
    name, _ = user_module
    text = failures.describe(_raised_by(f"{name}:long_message"))
    assert len(text) <= failures.MAX_CHARS
    first = text.splitlines()[0]
    assert len(first) <= failures.MAX_FIRST_LINE and first.startswith("ValueError: xxx")


def test_user_file_classification(tmp_path):
    import json as stdlib_json

    assert failures.is_user_file(str(tmp_path / "mine.py"))
    assert not failures.is_user_file(str(ROOT / "driftlab" / "models.py"))
    assert not failures.is_user_file(stdlib_json.__file__)
    assert not failures.is_user_file(sa.__file__)  # site-packages
    assert not failures.is_user_file("/opt/lib/python3/dist-packages/keras/layer.py")
    assert not failures.is_user_file("<frozen importlib._bootstrap>")


def test_group_counts_distinct_first_lines_with_one_full_example():
    a = 'ValueError: width must be positive\n  File "/u/b.py", line 3, in build: raise ValueError("w")'
    b = "ModelBuildError: model.builder: 'm:f' returned dict, not a keras.Model"
    groups = failures.group([b, a, a, a.replace("line 3", "line 9"), "", b])
    assert groups == [("ValueError: width must be positive", 3, a), (b, 2, b), ("unknown error", 1, "unknown error")]


# -- why a pipeline failed --------------------------------------------------------------------------------------
def _kfp_like_log(task: str, body: str) -> str:
    """How kfp.local writes a failing task: its header, the task's output indented 4, the status line."""
    indented = "\n".join("    " + line for line in body.splitlines())
    return (f"12:00:00.000 - INFO - Executing task '\x1b[96mprepare\x1b[0m'\n"
            "    [driftlab] plan: 4 runs\n12:00:00.100 - INFO - Task 'prepare' finished with status SUCCESS\n"
            f"12:00:01.000 - INFO - Executing task '{task}'\n12:00:01.000 - INFO - Streamed logs:\n\n"
            "    [KFP Executor 2026-01-01 12:00:01,000 INFO]: Looking for component\n"
            f"{indented}\n    \n\n12:00:09.000 - ERROR - Task '{task}' finished with status FAILURE\n")


def test_pipeline_failure_names_the_task_and_its_exception_from_a_real_traceback(tmp_path):
    # A real traceback of a StoreError, as a component process prints it.
    script = ("from driftlab.storage.store import StoreError\n"
              "def load():\n    raise StoreError('the results database x was unreachable for 5 s while loading runs "
              "[Errno 111]; run the same stage again to resume')\nload()\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert "Traceback (most recent call last)" in proc.stderr, "control: a real traceback"
    log = _kfp_like_log("aggregate-drift", "[driftlab] aggregate: loading runs\n" + proc.stderr)
    kfp = ("Pipeline 'driftlab' finished with status FAILURE. "
           "Inner task failed: 'aggregate-drift' inside 'driftlab-run'.")
    message = local_run.failure_message(kfp, log)
    assert message.startswith("task 'aggregate-drift' failed: StoreError: the results database x was unreachable")
    assert "\n" not in message and "Traceback" not in message and "driftlab.storage.store." not in message
    from rich.console import Console

    console = Console(file=open(os.devnull, "w"), record=True, highlight=False)
    console.print(f"[red]pipeline failed[/]: {message}")  # as cli.cmd_run prints it: no markup error
    assert "[Errno 111]" in console.export_text()


def test_pipeline_failure_without_traceback_uses_the_tasks_last_words():
    log = _kfp_like_log("check-gate", "[driftlab] tolerance gate: FAIL\ndriftlab tolerance gate: FAIL (see the report)")
    message = local_run.failure_message("Task 'check-gate' finished with status FAILURE", log)
    assert message == "task 'check-gate' failed: driftlab tolerance gate: FAIL (see the report)"
    assert "check-gate" in message, "cli tells a failed gate by the task name"
    assert local_run.failure_message("Task 'x' finished with status FAILURE", "") == \
        "Task 'x' finished with status FAILURE", "nothing in the log: kfp's own line"


# -- the results database goes away ------------------------------------------------------------------------------
OK = {"status": "ok", "metrics": {"eval_accuracy": 0.5}}


@pytest.fixture
def proxied_url():
    with scratch_database() as url:
        proxy = TcpProxy("127.0.0.1", sa.engine.make_url(url).port or 5432)
        proxy.start()
        try:
            yield proxy.url_for(url), proxy
        finally:
            proxy.stop()


def _spec(init_seed: int):
    from driftlab.runs.spec import RunSpec

    return RunSpec(experiment="exp", campaign="c", dataset={"name": "digits"}, data_digest="d", builder="mlp",
                   hparams={}, epochs=1, batch_size=8, init_seed=init_seed, shuffle_seed=0, split_seed=0,
                   repeat=0, deterministic=True, profile={"name": "cpu-default"})


def _outage(proxy: TcpProxy, seconds: float) -> None:
    proxy.stop()
    threading.Timer(seconds, proxy.start).start()


@pytest.mark.db
def test_store_reads_and_report_writes_ride_out_a_short_outage(proxied_url, monkeypatch, capsys):
    from driftlab.storage.store import Store

    url, proxy = proxied_url
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "30")
    store = Store(url)
    exp = store.experiment_id("exp")
    assert store.save_runs(exp, [(_spec(0), OK)]) == 1
    execution = store.start_execution("exp", "c", "h" * 16, "{}")

    calls = {
        "load_runs": lambda: len(store.load_runs("exp", "c")) == 1,
        "count_runs": lambda: store.count_runs("exp") == 1,
        "save_report": lambda: store.save_report("exp", "c", "PASS", {"gate": {"status": "PASS"}}) > 0,
        "iter_reports": lambda: [r["report"] for r in store.iter_reports("exp")][-1] == {"gate": {"status": "PASS"}},
        "experiment_id": lambda: store.experiment_id("exp") == exp,
        "start_execution": lambda: store.start_execution("exp", "c", "h" * 16, "{}") > execution,
        "finish_execution": lambda: store.finish_execution(execution, "succeeded") is None,
    }
    original_experiment_id = store.experiment_id
    for what, call in calls.items():
        if what in ("save_report", "start_execution"):
            # Cut after their experiment lookup, so that their own write meets the outage.
            def experiment_id_then_cut(name):
                found = original_experiment_id(name)
                _outage(proxy, 1.5)
                return found

            monkeypatch.setattr(store, "experiment_id", experiment_id_then_cut)
        else:
            _outage(proxy, 1.5)
        t0 = time.monotonic()
        assert call(), what
        assert time.monotonic() - t0 >= 1.0, f"control: {what} really waited for the database"
        monkeypatch.setattr(store, "experiment_id", original_experiment_id)
    err = capsys.readouterr().err
    for what in ("loading runs", "counting runs", "saving the report", "reading reports", "recording the experiment",
                 "recording the execution (", "recording the execution's outcome"):
        assert f"results database unreachable while {what}" in err, (what, err)
    assert err.count("reachable again") >= len(calls)
    reports = list(store.iter_reports("exp"))
    assert len(reports) == 1, "the report written during the outage is stored once"
    store.engine.dispose()


@pytest.mark.db
def test_store_gives_up_after_the_window_with_one_clear_line(proxied_url, monkeypatch):
    from driftlab.storage.store import Store, StoreError

    url, proxy = proxied_url
    store = Store(url)
    store.experiment_id("exp")
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "1")
    proxy.stop()
    for what, call in (("loading runs", lambda: store.load_runs("exp")),
                       ("recording the experiment", lambda: store.save_report("exp", "c", "PASS", {})),
                       ("reading reports", lambda: store.iter_reports()),
                       ("counting runs", lambda: store.count_runs()),
                       ("recording the execution's outcome", lambda: store.finish_execution(1, "failed"))):
        with pytest.raises(StoreError) as info:
            call()
        message = str(info.value)
        assert "\n" not in message and f"was unreachable for 1 s while {what}" in message, message
        assert "DRIFTLAB_DB_RETRY_S" in message
    store.engine.dispose()


@pytest.mark.db
def test_opening_waits_inside_a_pipeline_task_and_refuses_at_once_outside(proxied_url, monkeypatch):
    from driftlab.storage.store import Store, StoreError

    url, proxy = proxied_url
    Store(url).engine.dispose()  # the schema exists: the next open only checks it
    monkeypatch.delenv("DRIFTLAB_WHERE", raising=False)
    monkeypatch.delenv("DRIFTLAB_DB_WAIT_AT_OPEN", raising=False)
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "30")
    proxy.stop()
    t0 = time.monotonic()
    with pytest.raises(StoreError, match="cannot open the results database"):
        Store(url)  # a CLI command with a wrong URL is told at once
    assert time.monotonic() - t0 < 10
    monkeypatch.setenv("DRIFTLAB_DB_WAIT_AT_OPEN", "1")  # what local_run sets for its tasks
    threading.Timer(1.5, proxy.start).start()
    t0 = time.monotonic()
    store = Store(url)
    assert time.monotonic() - t0 >= 1.0 and store.count_runs() == 0
    store.engine.dispose()
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "1")
    proxy.stop()
    with pytest.raises(StoreError) as info:
        Store(url)
    assert "was unreachable for 1 s while opening the results database" in str(info.value)


CLI_CONFIG = """\
name: outagecli
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: mlp, epochs: 1, batch_size: 64, hyperparameters: {units: 8}}
seeds: {init: [0], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles: {reference: cpu-default, pools: [{name: cpu-default}]}
"""


@pytest.mark.db
@pytest.mark.parametrize("command", ["run", "report history"])
def test_cli_outage_after_opening_ends_in_one_driftlab_line(command, proxied_url, tmp_path, monkeypatch, capsys):
    from driftlab import cli
    from driftlab.storage.store import Store

    url, proxy = proxied_url
    config = tmp_path / "outage.yaml"
    config.write_text(CLI_CONFIG)
    monkeypatch.setenv("DRIFTLAB_DB_URL", url)
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "1")
    monkeypatch.setenv("DRIFTLAB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DRIFTLAB_DB_WAIT_AT_OPEN", raising=False)
    # The database goes away right before the command's first write (run) or read (history) of its own.
    method = "start_execution" if command == "run" else "iter_reports"
    original = getattr(Store, method)

    def cut_then_call(self, *args, **kwargs):
        proxy.stop()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Store, method, cut_then_call)
    argv = ["run", str(config), "--home", str(tmp_path / "home")] if command == "run" else ["report", "history"]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == cli.EXIT_BAD_INPUT, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    what = "recording the experiment" if command == "run" else "reading reports"
    assert last.startswith("driftlab: the results database ") and f"unreachable for 1 s while {what}" in last, err


# -- a campaign whose builder raises, end to end ------------------------------------------------------------------
# The builder raises only in the workers that train: one that raises when built once is refused before the
# pipeline starts (tests/reliability/test_preflight.py).
BROKEN_CONFIG = """\
name: brokenbuilder
dataset: {name: digits, eval_fraction: 0.25, val_fraction: 0.2}
model: {builder: "user_builders:broken_in_training", epochs: 1, batch_size: 64}
seeds: {init: [0, 1], shuffle: [0], split: [0], repeats: 1, deterministic: [true]}
profiles:
  reference: cpu-default
  pools: [{name: cpu-default}, {name: cpu-sse41, isa: SSE41}]
"""


@pytest.mark.slow
def test_campaign_with_a_raising_builder_shows_the_users_error_on_the_terminal(tmp_path):
    config = tmp_path / "broken.yaml"
    config.write_text(BROKEN_CONFIG)
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("DRIFTLAB_DB_URL", "DRIFTLAB_WHERE", "DRIFTLAB_HOME")}
    env["DRIFTLAB_JOBS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "driftlab", "run", str(config), "--home", str(home),
                           "--campaign", "c"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "ValueError: width must be positive" in out, out[-3000:]
    assert "user_builders.py" in out and 'raise ValueError("width must be positive")' in out, out[-3000:]
    assert "Traceback (most recent call last)" not in out
    logs = re.findall(r"full log: (\S+)", out)
    assert logs and all(Path(p).exists() for p in logs), out[-3000:]
    assert re.search(r"retrain across seeds · cpu-default: 2 run\(s\) failed: model\.builder: "
                     r"'user_builders:broken_in_training' raised ValueError: width must be positive", out), out[-3000:]
    assert "models.py" not in out and "worker.py" not in out, "no driftlab frames on the terminal"
    worker_logs = list((home / "logs").glob("worker-*.log"))
    assert any("Traceback (most recent call last)" in p.read_text() for p in worker_logs), \
        "the full traceback is kept in the workers' log"
