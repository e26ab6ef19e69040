"""Temporary folders left behind by a local run that was killed (SIGKILL, a lost machine).

A ``driftlab run`` keeps its own temporary folder (kfp.local's task files) and its worker
depot's socket folder in the system's temporary directory, and removes both however it
ends, except when it is killed outright. Each folder holds an ``.owner`` file naming the
process that made it (host, pid, process start time: ``storage.owner``); the next run
removes the folders whose owner is certainly dead. A folder whose owner is alive, on
another machine, or cannot be told (no ``.owner``, no ``/proc``) is left alone.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

from driftlab.storage import owner

OWNER_FILE = ".owner"
PREFIXES = ("driftlab-run-", "driftlab-workers-")


def claim(folder: Path) -> None:
    """Record this process as the owner of ``folder``."""
    (Path(folder) / OWNER_FILE).write_text(json.dumps(asdict(owner.this_process())))


def sweep(base: Path) -> list[Path]:
    """Remove the run folders under ``base`` whose owner is dead; return them."""
    removed = []
    try:
        children = list(Path(base).iterdir())
    except OSError:
        return removed
    for folder in children:
        if not folder.name.startswith(PREFIXES) or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            recorded = json.loads((folder / OWNER_FILE).read_text())
            dead = owner.state(recorded.get("host"), recorded.get("pid"), recorded.get("start")) == owner.DEAD
        except (OSError, ValueError, AttributeError):
            continue
        if dead:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed
