"""Start from the study you already have: read an existing Optuna study, never write it.

With ``tuning.study`` (the study's name) and ``tuning.storage_env`` (the
NAME of the environment variable holding its storage, see ``commands`` for
the forms accepted) driftlab does not tune: it reads that study, takes its
best trial (in the study's own direction) and its top-k, and retrains the best
trial's parameters across seeds and hardware.

Read-only, by construction:

* RDB storages are opened with ``skip_table_creation=True`` after checking
  that Optuna's tables, its ``version_info`` row and Alembic's revision are
  all there (otherwise Optuna's ``RDBStorage`` would create or stamp them);
  the schema-compatibility check only reads, and an outdated schema is an
  error (``optuna storage upgrade`` is the user's call, not driftlab's). An
  SQLite file that does not exist is an error (SQLite would create it).
* Journal files are opened with ``JournalFileBackend``, which only appends
  when something is written and creates the file when it is missing: the file
  must exist, and nothing here writes (reading takes no lock).
* Only storage read calls are made (``get_study_id_from_name``,
  ``get_study_directions``, ``get_all_trials``, ``get_all_studies``); no
  ``Study`` object, no sampler, no attributes.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import optuna
from optuna.study import StudyDirection
from optuna.trial import TrialState

from driftlab.errors import BadInput
from driftlab.config import ExperimentConfig
from driftlab.tuning.commands import StorageRef, is_sqlite_file, parse_storage, study_commands
from driftlab.tuning.results import summarize
from driftlab.storage.db import STUDY, DatabaseUnreachable, engine_kwargs, first_line, make_engine, retrying
from driftlab.tuning.study import TuningError

log = logging.getLogger(__name__)

#: Study names listed when the one asked for is not there.
MAX_LISTED = 10
#: Tables an Optuna RDB storage has (those read here, and those RDBStorage would otherwise write).
OPTUNA_TABLES = ("studies", "trials", "version_info", "alembic_version")


class ExistingStudyError(TuningError, BadInput):
    """The existing study named by ``tuning.study`` cannot be used; the message says what to do."""


def _fields(config: ExperimentConfig) -> tuple[str, str]:
    study, env = config.tuning.study, config.tuning.storage_env
    if not study or not env:
        raise ExistingStudyError("tuning.study and tuning.storage_env are not set: this experiment tunes its "
                                 "own study (see driftlab.tuning.best)")
    return study, env


def storage_from_env(config: ExperimentConfig) -> StorageRef:
    """The storage in the environment variable ``tuning.storage_env`` names, parsed (no I/O)."""
    _, env = _fields(config)
    value = os.environ.get(env, "").strip()
    if not value:
        raise ExistingStudyError(
            f"tuning.storage_env: the environment variable {env} is {'empty' if env in os.environ else 'not set'}; "
            f"set it to the Optuna storage that holds study '{config.tuning.study}', e.g. "
            f"{env}=postgresql://user:password@host/db, {env}=sqlite:///optuna.db or "
            f"{env}=/path/to/optuna-journal.log (on a cluster, in every task's environment)")
    return parse_storage(value)


def _unreachable(ref: StorageRef, env: str, exc: BaseException) -> ExistingStudyError:
    if isinstance(exc, DatabaseUnreachable):
        reason = f"{exc.reason} (still unreachable after {exc.window:.0f} s)"
    else:
        reason = first_line(exc, typed=True)
    return ExistingStudyError(f"tuning.storage_env: cannot read the Optuna storage in {env} ({ref.shown}): "
                              f"{reason}; check the URL, that the server is up and reachable from "
                              "here, and the user's permissions")


def _check_rdb(ref: StorageRef, env: str) -> None:
    """Fail unless ``ref`` is an Optuna database that RDBStorage can open without writing."""
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(ref.target)
    except Exception:
        raise ExistingStudyError(f"tuning.storage_env: {env} is not a storage URL Optuna can read ({ref.shown}); "
                                 "give an RDB URL such as postgresql://user:password@host/db or sqlite:///optuna.db, "
                                 "or a journal file path") from None
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        if not path or path == ":memory:" or not Path(path).is_file():
            raise ExistingStudyError(f"tuning.storage_env: {env} names the SQLite file {path or '(none)'}, which "
                                     "does not exist; give the path of the file your study is in "
                                     "(sqlite:///relative.db or sqlite:////absolute/path.db)")
    try:
        engine = make_engine(ref.target, sqlite_wal=False)  # read only: leave the file's journal mode alone
    except ImportError as exc:
        raise ExistingStudyError(f"tuning.storage_env: {env} ({ref.shown}) needs a database driver that is not "
                                 f"installed ({exc}); driftlab ships psycopg2 (postgresql) and sqlite") from None
    try:
        def probe() -> tuple[list[str], bool, bool]:
            with engine.connect() as conn:
                tables = sa.inspect(conn).get_table_names()
                if not all(t in tables for t in OPTUNA_TABLES):
                    return tables, False, False
                version = conn.execute(sa.text("SELECT COUNT(*) FROM version_info")).scalar()
                revision = conn.execute(sa.text("SELECT COUNT(*) FROM alembic_version")).scalar()
                return tables, bool(version), bool(revision)

        tables, has_version, has_revision = retrying(probe, "checking the existing study's tables",
                                                     url=ref.target, role=STUDY)
    except ExistingStudyError:
        raise
    except Exception as exc:
        raise _unreachable(ref, env, exc) from None
    finally:
        engine.dispose()
    if not all(t in tables for t in OPTUNA_TABLES):
        raise ExistingStudyError(f"tuning.storage_env: {env} ({ref.shown}) has no Optuna study tables; point it "
                                 "at the database your study was created in (`optuna studies --storage URL` "
                                 "lists the studies there)")
    if not (has_version and has_revision):
        raise ExistingStudyError(f"tuning.storage_env: the Optuna tables in {env} ({ref.shown}) carry no schema "
                                 "version; driftlab will not write one. Run `optuna storage upgrade --storage URL` "
                                 "once yourself, then run driftlab again")


def open_storage(ref: StorageRef, env: str) -> optuna.storages.BaseStorage:
    """The storage, opened for reading only (see the module docstring)."""
    if ref.kind == "journal":
        path = Path(ref.target)
        if not path.is_file():
            raise ExistingStudyError(f"tuning.storage_env: {env} names the journal file {path}, which does not "
                                     "exist; give the path of your study's journal file (a .log file), or an RDB "
                                     "URL such as postgresql://user:password@host/db")
        if is_sqlite_file(str(path)):
            raise ExistingStudyError(f"tuning.storage_env: {path} is an SQLite database, not a journal file; "
                                     f"set {env}=sqlite:///{path}")
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:
            raise ExistingStudyError(f"tuning.storage_env: cannot read the journal file {path} in {env}: "
                                     f"{first_line(exc, typed=True)}; is it an Optuna journal (JournalFileBackend)?") from None
    _check_rdb(ref, env)
    try:
        return retrying(lambda: optuna.storages.RDBStorage(
            ref.target, engine_kwargs=engine_kwargs(ref.target), skip_table_creation=True,
            skip_compatibility_check=False), "opening the existing study's storage", url=ref.target, role=STUDY)
    except DatabaseUnreachable as exc:  # a RuntimeError too, but not Optuna's schema complaint below
        raise _unreachable(ref, env, exc) from None
    except RuntimeError as exc:  # schema from another Optuna version: Optuna's message says what to run
        raise ExistingStudyError(f"tuning.storage_env: the study database in {env} ({ref.shown}) cannot be read "
                                 f"by this Optuna {optuna.__version__}: {exc}") from None
    except Exception as exc:
        raise _unreachable(ref, env, exc) from None


def _close(storage: optuna.storages.BaseStorage) -> None:
    if isinstance(storage, optuna.storages.RDBStorage):
        storage.scoped_session.remove()
        storage.engine.dispose()


def _read(storage: optuna.storages.BaseStorage, ref: StorageRef, name: str, env: str
          ) -> tuple[list[StudyDirection], list[optuna.trial.FrozenTrial]]:
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        names = sorted(s.study_name for s in storage.get_all_studies())
        listed = ", ".join(repr(n) for n in names[:MAX_LISTED])
        more = f" (and {len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else ""
        there = f"the studies there: {listed}{more}" if names else "it holds no study at all"
        raise ExistingStudyError(f"tuning.study: no study named '{name}' in {env} ({ref.shown}); {there}. "
                                 "Set tuning.study to one of them, or point tuning.storage_env at the storage "
                                 "your study is in") from None
    directions = storage.get_study_directions(study_id)
    trials = storage.get_all_trials(study_id, deepcopy=False)
    return directions, trials


def load_existing(config: ExperimentConfig, top_k: int | None = None) -> dict[str, Any]:
    """Read the existing study ``tuning.study`` and summarize it as ``tuning.best`` does.

    Args:
        config: The experiment; ``tuning.study`` and ``tuning.storage_env`` must be set.
        top_k: How many best trials the top-k figures use; default ``tuning.top_k``.

    Returns:
        The ``best`` summary (``best_params`` typed by the study's distributions,
        ``best_value``, ``best_trial``, counts, ``top_k_*``, ``stability``,
        ``trials``) plus ``source`` (``kind`` existing-study, ``study``,
        ``storage`` with the password masked, ``trial``) and ``open_with``.

    Raises:
        ExistingStudyError: The variable is unset, the storage unreachable, the
            study missing, multi-objective, or without a COMPLETE trial.
    """
    name, env = _fields(config)
    ref = storage_from_env(config)
    storage = open_storage(ref, env)
    try:
        directions, trials = retrying(lambda: _read(storage, ref, name, env), "reading the existing study",
                                      url=ref.target if ref.kind == "rdb" else None, role=STUDY)
    except ExistingStudyError:
        raise
    except Exception as exc:
        raise _unreachable(ref, env, exc) from None
    finally:
        _close(storage)
    if len(directions) != 1:
        raise ExistingStudyError(
            f"tuning.study: '{name}' is a multi-objective study ({len(directions)} objectives: "
            f"{', '.join(d.name.lower() for d in directions)}); driftlab retrains one best trial, so pick one "
            "objective: make a single-objective study of it (e.g. copy the trials with "
            "`optuna.create_study(direction=...)` and `study.add_trial(...)` using one of the values) and name "
            "that study in tuning.study")
    direction = directions[0].name.lower()
    if config.tuning.direction not in ("auto", direction):
        raise ExistingStudyError(f"tuning.direction is {config.tuning.direction}, but study '{name}' was made to "
                                 f"{direction}; remove tuning.direction (driftlab follows the study's own direction)")
    if not any(t.state == TrialState.COMPLETE for t in trials):
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
        held = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials"
        raise ExistingStudyError(f"tuning.study: '{name}' has no COMPLETE trial ({held}); finish at least one "
                                 "trial in it, or name a study that has")
    summary = summarize(name, trials, direction=direction, top_k=top_k or config.tuning.top_k)
    summary["source"] = {"kind": "existing-study", "study": name, "storage": ref.shown,
                         "trial": summary["best_trial"]}
    summary["open_with"] = study_commands(ref, name)
    log.info("existing study %s in %s: best trial %d, value %s", name, ref.shown, summary["best_trial"],
             summary["best_value"])
    return summary
