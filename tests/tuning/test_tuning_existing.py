"""Starting from an existing Optuna study: read it exactly, never write it, say clearly what is wrong.

Each study is made first with plain Optuna (an int, a log float and a
categorical parameter; COMPLETE, FAIL and PRUNED trials; attributes), in the
real PostgreSQL server or in a journal file, and compared before and after
driftlab read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage

from driftlab import stages, tuning
from driftlab.config import ConfigError, load_config_text

OPTUNA_CLI = str(Path(sys.executable).with_name("optuna"))
ENV = "DRIFTLAB_TEST_OPTUNA_STORAGE"
STUDY = "my-study"

#: (units, lr, act) and what the trial does: a value (COMPLETE), "fail" or "prune".
PLAN = [((16, 1e-3, "relu"), 0.50),
        ((32, 1e-2, "tanh"), 0.90),
        ((64, 1e-4, "relu"), "fail"),
        ((8, 5e-2, "tanh"), "prune"),
        ((48, 3e-3, "relu"), 0.90),  # ties with trial 1: the earlier trial ranks first
        ((24, 2e-2, "tanh"), 0.70)]


def make_study(storage, *, name: str = STUDY, direction: str = "maximize") -> None:
    """The study a user already has, made with nothing but Optuna."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name=name, storage=storage, direction=direction,
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.set_user_attr("owner", "someone else")
    study._storage.set_study_system_attr(study._study_id, "tool", "their script")  # Study has no setter in Optuna 5
    for (units, lr, act), _ in PLAN:
        study.enqueue_trial({"units": units, "lr": lr, "act": act})

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_int("units", 8, 64)
        trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_categorical("act", ["relu", "tanh"])
        trial.set_user_attr("note", f"trial {trial.number}")
        outcome = PLAN[trial.number][1]
        trial.report(0.1, 0)
        if outcome == "fail":
            raise RuntimeError("their objective failed")
        if outcome == "prune":
            raise optuna.TrialPruned()
        return outcome

    study.optimize(objective, n_trials=len(PLAN), catch=(RuntimeError,))


def snapshot(storage) -> dict:
    """Everything a reader could change: trials (states, values, params, attributes) and the study's attributes."""
    study = optuna.load_study(study_name=STUDY, storage=storage)
    return {"user_attrs": study.user_attrs, "system_attrs": study._storage.get_study_system_attrs(study._study_id),
            "trials": [(t.number, t.state.name, t.value, t.params, t.user_attrs, t.system_attrs,
                        t.intermediate_values, t.datetime_start, t.datetime_complete)
                       for t in study.get_trials(deepcopy=True)]}


def journal(path: Path) -> JournalStorage:
    return JournalStorage(JournalFileBackend(str(path)))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def config(study: str = STUDY, **tuning_fields) -> object:
    fields = ", ".join(f"{k}: {v}" for k, v in {"study": json.dumps(study), "storage_env": ENV, "top_k": 3,
                                                 **tuning_fields}.items())
    return load_config_text(f"name: existing\ndataset: {{name: digits}}\ntuning: {{{fields}}}\n", "experiment")


def check_maximize_summary(summary: dict) -> None:
    assert summary["best_trial"] == 1 and summary["best_value"] == 0.90
    assert summary["best_params"] == {"units": 32, "lr": 1e-2, "act": "tanh"}
    assert type(summary["best_params"]["units"]) is int and type(summary["best_params"]["lr"]) is float
    assert summary["top_k_trials"] == [1, 4, 5] and summary["top_k_values"] == [0.90, 0.90, 0.70]
    assert [p["units"] for p in summary["top_k_params"]] == [32, 48, 24]
    assert all(type(p["units"]) is int for p in summary["top_k_params"])
    assert (summary["n_complete"], summary["n_pruned"], summary["n_failed"], summary["n_unfinished"]) == (4, 1, 1, 0)
    assert summary["direction"] == "maximize" and summary["study"] == STUDY
    assert summary["stability"]["k"] == 3 and summary["top_k_spread"] == pytest.approx(0.2)
    assert len(summary["trials"]) == len(PLAN)
    assert summary["source"]["kind"] == "existing-study" and summary["source"]["study"] == STUDY
    assert summary["source"]["trial"] == 1


def run_cli(command: str, real: str, shown: str) -> subprocess.CompletedProcess:
    """Run a printed ``optuna ...`` command with the real storage put back in place of the shown one."""
    argv = [real if arg == shown else arg for arg in shlex.split(command)]
    assert argv[0] == "optuna"
    return subprocess.run([OPTUNA_CLI, *argv[1:]], capture_output=True, text=True, timeout=120)


# --- reading, exactly and read-only ------------------------------------------------------------------------


@pytest.mark.db
def test_postgresql_study_is_read_exactly_and_left_untouched(pg_url, monkeypatch):
    import sqlalchemy as sa

    url = pg_url.replace("postgres@", "postgres:n0t-a-real-s3cret@", 1)  # trust auth ignores the password
    make_study(url)
    before = snapshot(url)
    engine = sa.create_engine(url)

    def dump() -> dict:
        with engine.connect() as conn:
            names = sorted(sa.inspect(conn).get_table_names())
            return {t: sorted(map(repr, conn.execute(sa.text(f'SELECT * FROM "{t}"')).all())) for t in names}

    tables_before = dump()
    # The form people paste: plain postgresql://, which driftlab reads with psycopg2.
    monkeypatch.setenv(ENV, url.replace("postgresql+psycopg2://", "postgresql://", 1))
    summary = tuning.load_existing(config())
    check_maximize_summary(summary)
    assert summary["source"]["storage"].startswith("postgresql+psycopg2://postgres:***@")
    assert "n0t-a-real-s3cret" not in json.dumps(summary)
    assert dump() == tables_before  # every row of every table, Alembic's and version_info included
    assert snapshot(url) == before
    engine.dispose()


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_journal_study_is_read_exactly_and_its_bytes_do_not_change(tmp_path, monkeypatch, direction):
    path = tmp_path / "their-journal.log"
    make_study(journal(path), direction=direction)
    before, sha, listing = snapshot(journal(path)), digest(path), sorted(os.listdir(tmp_path))
    monkeypatch.setenv(ENV, str(path))
    summary = tuning.load_existing(config())
    if direction == "maximize":
        check_maximize_summary(summary)
    else:
        assert summary["best_trial"] == 0 and summary["best_value"] == 0.50
        assert summary["top_k_trials"] == [0, 5, 1] and summary["direction"] == "minimize"
        assert summary["best_params"] == {"units": 16, "lr": 1e-3, "act": "relu"}
    assert summary["source"]["storage"] == str(path)
    assert digest(path) == sha  # the exact same bytes
    assert sorted(os.listdir(tmp_path)) == listing  # no lock file, no new file
    assert snapshot(journal(path)) == before


def test_journal_scheme_form_is_accepted(tmp_path, monkeypatch):
    path = tmp_path / "j.log"
    make_study(journal(path))
    monkeypatch.setenv(ENV, f"journal://{path}")
    check_maximize_summary(tuning.load_existing(config()))


def test_sqlite_study_is_read(tmp_path, monkeypatch):
    path = tmp_path / "their.db"
    make_study(f"sqlite:///{path}")
    sha = digest(path)
    monkeypatch.setenv(ENV, f"sqlite:///{path}")
    check_maximize_summary(tuning.load_existing(config()))
    assert digest(path) == sha


# --- the commands that open the study, run for real ---------------------------------------------------------


def test_printed_optuna_commands_run_for_a_journal_file(tmp_path, monkeypatch):
    path = tmp_path / "their journal.log"  # a space: the command must quote it
    make_study(journal(path))
    monkeypatch.setenv(ENV, str(path))
    commands = tuning.load_existing(config())["open_with"]
    assert set(commands) == {"optuna-dashboard", "optuna studies", "optuna trials"}
    assert commands["optuna-dashboard"] == f"optuna-dashboard {shlex.quote(str(path))}"
    sha = digest(path)
    listed = run_cli(commands["optuna studies"], str(path), str(path))  # the path is shown as it is
    assert listed.returncode == 0, listed.stderr
    assert STUDY in listed.stdout
    trials = run_cli(commands["optuna trials"], str(path), str(path))
    assert trials.returncode == 0, trials.stderr
    assert "COMPLETE" in trials.stdout and "PRUNED" in trials.stdout
    assert digest(path) == sha


def test_printed_optuna_commands_run_for_sqlite(tmp_path, monkeypatch):
    path = tmp_path / "their.db"
    make_study(f"sqlite:///{path}")
    monkeypatch.setenv(ENV, f"sqlite:///{path}")
    commands = tuning.load_existing(config())["open_with"]
    done = run_cli(commands["optuna studies"], f"sqlite:///{path}", f"sqlite:///{path}")
    assert done.returncode == 0, done.stderr
    assert STUDY in done.stdout


def test_driftlab_own_study_names_its_source_and_its_commands_run(home):
    from support.tuning import cheap_objective, experiment_text

    cfg = load_config_text(experiment_text(3), "experiment")
    tuning.create_study(cfg, "own")
    tuning.run_worker(cfg, "own", 0, lambda t: cheap_objective(t, cfg))
    summary = tuning.best(cfg, "own")
    name = tuning.study_name(cfg, "own")
    path = str(tuning.storage.journal_path(cfg).absolute())
    assert summary["source"] == {"kind": "driftlab", "study": name, "storage": path, "trial": summary["best_trial"]}
    listed = run_cli(summary["open_with"]["optuna studies"], path, path)
    assert listed.returncode == 0, listed.stderr
    assert name in listed.stdout


@pytest.mark.db
def test_printed_postgresql_command_masks_the_password_and_runs_with_it_put_back(pg_url, monkeypatch):
    secret = "n0t-a-real-s3cret"
    url = pg_url.replace("postgres@", f"postgres:{secret}@", 1)
    make_study(url)
    plain = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    monkeypatch.setenv(ENV, plain)
    commands = tuning.load_existing(config())["open_with"]
    shown = url.replace(secret, "***")
    assert commands["optuna-dashboard"] == f"optuna-dashboard '{shown}'"
    assert commands["optuna studies"] == f"optuna studies --storage '{shown}'"
    assert secret not in json.dumps(commands)
    done = run_cli(commands["optuna studies"], url, shown)
    assert done.returncode == 0, done.stderr
    assert STUDY in done.stdout
    trials = run_cli(commands["optuna trials"], url, shown)
    assert trials.returncode == 0, trials.stderr
    assert "COMPLETE" in trials.stdout and "PRUNED" in trials.stdout


def test_study_commands_pin_psycopg2_and_mask():
    commands = tuning.study_commands("postgresql://u:pw@db.example:5432/optuna", "s")
    assert commands == {
        "optuna-dashboard": "optuna-dashboard 'postgresql+psycopg2://u:***@db.example:5432/optuna'",
        "optuna studies": "optuna studies --storage 'postgresql+psycopg2://u:***@db.example:5432/optuna'",
        "optuna trials": "optuna trials --study-name s --storage 'postgresql+psycopg2://u:***@db.example:5432/optuna'"}
    assert tuning.study_commands("journal:///data/j.log", "a b")["optuna trials"] == \
        "optuna trials --study-name 'a b' --storage /data/j.log"


# --- errors that say what to do -------------------------------------------------------------------------------


def test_unset_and_empty_variable(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    with pytest.raises(tuning.ExistingStudyError, match=f"tuning.storage_env: the environment variable {ENV} is not set"):
        tuning.load_existing(config())
    monkeypatch.setenv(ENV, "  ")
    with pytest.raises(tuning.TuningError, match=f"{ENV} is empty; set it to the Optuna storage"):
        tuning.load_existing(config())


def test_unreachable_database_masks_the_password(monkeypatch):
    monkeypatch.setenv("DRIFTLAB_DB_RETRY_S", "0")
    monkeypatch.setenv(ENV, "postgresql://someone:s3cret-pw@127.0.0.1:1/optuna")
    with pytest.raises(tuning.ExistingStudyError, match="tuning.storage_env: cannot read the Optuna storage") as err:
        tuning.load_existing(config())
    assert "s3cret-pw" not in str(err.value) and "someone:***@127.0.0.1:1" in str(err.value)


@pytest.mark.db
def test_a_database_without_optuna_tables_is_refused_and_left_empty(pg_url, monkeypatch):
    import sqlalchemy as sa

    monkeypatch.setenv(ENV, pg_url)
    with pytest.raises(tuning.ExistingStudyError, match="has no Optuna study tables"):
        tuning.load_existing(config())
    engine = sa.create_engine(pg_url)
    with engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []  # nothing created
    engine.dispose()


def test_missing_files_are_errors_and_are_not_created(tmp_path, monkeypatch):
    for value, shown in ((str(tmp_path / "nope.log"), "journal file"), (f"sqlite:///{tmp_path / 'nope.db'}", "SQLite file")):
        monkeypatch.setenv(ENV, value)
        with pytest.raises(tuning.ExistingStudyError, match=f"names the {shown} .* which does not exist"):
            tuning.load_existing(config())
    assert os.listdir(tmp_path) == []


def test_sqlite_file_given_as_a_path_says_use_sqlite_url(tmp_path, monkeypatch):
    path = tmp_path / "their.db"
    make_study(f"sqlite:///{path}")
    monkeypatch.setenv(ENV, str(path))
    with pytest.raises(tuning.ExistingStudyError, match=f"is an SQLite database, not a journal file; set {ENV}=sqlite:///"):
        tuning.load_existing(config())


def test_study_not_found_lists_the_studies_there(tmp_path, monkeypatch):
    path = tmp_path / "j.log"
    storage = journal(path)
    for i in range(12):
        optuna.create_study(study_name=f"study-{i:02d}", storage=storage)
    monkeypatch.setenv(ENV, str(path))
    with pytest.raises(tuning.ExistingStudyError) as err:
        tuning.load_existing(config("typo"))
    text = str(err.value)
    assert text.startswith("tuning.study: no study named 'typo'")
    assert "'study-00', 'study-01'" in text and "'study-09'" in text and "'study-10'" not in text
    assert "(and 2 more)" in text and "Set tuning.study to one of them" in text


def test_study_without_a_complete_trial(tmp_path, monkeypatch):
    path = tmp_path / "j.log"
    study = optuna.create_study(study_name=STUDY, storage=journal(path))
    study.optimize(lambda t: 1 / 0, n_trials=2, catch=(ZeroDivisionError,))
    monkeypatch.setenv(ENV, str(path))
    with pytest.raises(tuning.ExistingStudyError, match=r"has no COMPLETE trial \(2 FAIL\)"):
        tuning.load_existing(config())


def test_multi_objective_study_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "j.log"
    study = optuna.create_study(study_name=STUDY, storage=journal(path), directions=["maximize", "minimize"])
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=2)
    monkeypatch.setenv(ENV, str(path))
    with pytest.raises(tuning.ExistingStudyError, match="multi-objective study .*pick one objective"):
        tuning.load_existing(config())


def test_a_direction_that_contradicts_the_study_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "j.log"
    make_study(journal(path), direction="maximize")
    monkeypatch.setenv(ENV, str(path))
    with pytest.raises(tuning.ExistingStudyError, match="tuning.direction is minimize, but study 'my-study' was made"):
        tuning.load_existing(config(direction="minimize"))


@pytest.mark.parametrize("tuning_text,message", [
    ("{study: s}", "tuning.storage_env is required with tuning.study"),
    ("{storage_env: OPTUNA_STORAGE}", "tuning.study is required with tuning.storage_env"),
    ("{study: s, storage_env: 'postgresql://u:p@h/db'}", "must be the NAME of an environment variable"),
    ("{study: s, storage_env: lower_case}", "must be the NAME of an environment variable"),
])
def test_config_fields_go_together(tuning_text, message):
    with pytest.raises(ConfigError, match=message):
        load_config_text(f"name: x\ndataset: {{name: digits}}\ntuning: {tuning_text}\n")


def test_config_refuses_a_search_space_beside_an_existing_study():
    with pytest.raises(ConfigError, match="search_space and tuning.study exclude each other"):
        load_config_text("name: x\ndataset: {name: digits}\ntuning: {study: s, storage_env: OPTUNA_STORAGE}\n"
                         "search_space: {lr: {type: float, low: 0.001, high: 0.1}}\n")


# --- the stages, through the config text --------------------------------------------------------------------


@pytest.mark.slow
def test_stages_use_the_existing_study_and_do_not_tune(home, tmp_path, monkeypatch):
    path = tmp_path / "j.log"
    make_study(journal(path))
    sha = digest(path)
    monkeypatch.setenv(ENV, f"journal://{path}")
    text = (f"name: existing\ndataset: {{name: digits}}\nmodel: {{epochs: 1, hyperparameters: {{units: 8}}}}\n"
            f"tuning: {{study: {STUDY}, storage_env: {ENV}, top_k: 3}}\n"
            "profiles: {reference: cpu-default, pools: [{name: cpu-default}]}\n")
    plan = stages.prepare(text, "c1")
    assert plan["workers"] == [0] and plan["study"] == STUDY
    assert stages.tune(text, "c1", 0) == 0
    best = stages.select_best(text, "c1")
    check_maximize_summary(best)
    assert best["source"] == {"kind": "existing-study", "study": STUDY, "storage": str(path), "trial": 1}
    assert best["open_with"]["optuna studies"] == f"optuna studies --storage {path}"
    assert digest(path) == sha
    assert not (home / "optuna-journal.log").exists()  # driftlab made no study of its own


def test_select_best_without_tuning_says_so(home):
    text = "name: fixed\ndataset: {name: digits}\nprofiles: {reference: cpu-default, pools: [{name: cpu-default}]}\n"
    best = stages.select_best(text, "c1")
    assert best["source"] == {"kind": "none"} and best["best_params"] == {}
