"""Where a study's storage is, in the forms people write, and the commands that open it in Optuna's tools.

Storage forms (the value of the environment variable ``tuning.storage_env``
names, or driftlab's own study storage):

* an RDB URL, as SQLAlchemy reads it: ``postgresql+psycopg2://user:pw@host/db``,
  ``postgresql://...`` and ``postgres://...`` (both read as psycopg2, the
  driver driftlab ships: SQLAlchemy 2.1 would pick psycopg 3, which is not
  installed, and Optuna then fails with "Failed to import DB access module"),
  ``sqlite:////abs/path/optuna.db``, or any other SQLAlchemy URL whose driver
  is installed;
* an Optuna journal file (``JournalFileBackend``): a path such as
  ``/data/optuna-journal.log``, or ``journal:///data/optuna-journal.log``
  (``journal://`` followed by the path; relative paths are relative to the
  working directory).

Redis journals (``redis://``) are not supported. driftlab's own study may also sit
behind Optuna's gRPC storage proxy (``DRIFTLAB_STUDY_GRPC``, kind ``grpc``): neither
tool opens a proxy, so ``study_commands`` gives none for it (open the database behind it).

``study_commands`` prints commands with the password masked (``***``, by
``storage.db.safe_url``, every form: ``user:pw@``, ``?password=``); a journal
path is printed as it is. Both tools recognise an existing journal
file by its path: ``optuna-dashboard PATH`` and ``optuna ... --storage PATH``
(Optuna's CLI guesses ``JournalFileBackend`` for an existing file; unlike
``--storage-class JournalFileBackend``, a mistyped path then fails instead of
creating an empty journal).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from driftlab.storage.db import JOURNAL_SCHEME, normalize_url, safe_url

SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class StorageRef:
    """A parsed storage: ``kind`` rdb (``target`` is the URL to connect with), journal (an absolute path)
    or grpc (``host:port`` of a gRPC storage proxy)."""

    kind: Literal["rdb", "journal", "grpc"]
    target: str

    @property
    def shown(self) -> str:
        """What may be shown to people: the URL with its password masked, or the journal path."""
        if self.kind == "journal":
            return self.target
        if self.kind == "grpc":
            return f"grpc://{self.target}"
        return safe_url(self.target)


def parse_storage(value: str) -> StorageRef:
    """Read a storage as people write it (see the module docstring); no I/O."""
    value = value.strip()
    if value.startswith(JOURNAL_SCHEME):
        return StorageRef("journal", str(Path(value[len(JOURNAL_SCHEME):]).expanduser().absolute()))
    if "://" in value:
        return StorageRef("rdb", normalize_url(value))
    return StorageRef("journal", str(Path(value).expanduser().absolute()))


def study_commands(storage: str | StorageRef, study_name: str | None = None) -> dict[str, str]:
    """The shell commands that open ``study_name`` in optuna-dashboard and the ``optuna`` CLI.

    Args:
        storage: The storage (an RDB URL or a journal file path, any form ``parse_storage``
            reads, or a ``StorageRef``). A password in it is masked in every command.
        study_name: The study; without it only the storage-wide commands.

    Returns:
        ``{"optuna-dashboard": ..., "optuna studies": ..., "optuna trials": ...}``, each a
        command line ready to paste (arguments shell-quoted), password shown as ``***``.
    """
    ref = storage if isinstance(storage, StorageRef) else parse_storage(storage)
    if ref.kind == "grpc":
        return {}  # optuna-dashboard and the optuna CLI do not open a gRPC proxy
    where = shlex.quote(ref.shown)
    commands = {"optuna-dashboard": f"optuna-dashboard {where}",
                "optuna studies": f"optuna studies --storage {where}"}
    if study_name:
        commands["optuna trials"] = f"optuna trials --study-name {shlex.quote(study_name)} --storage {where}"
    return commands


def is_sqlite_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False
