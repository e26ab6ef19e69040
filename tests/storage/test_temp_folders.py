"""Temporary folders of killed local runs are removed by the next run; nobody else's are touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from driftlab.storage import temp_folders

OWNER_OF_A_PROCESS_THAT_ENDS = (
    "import json, sys; from dataclasses import asdict; from driftlab.storage import owner; "
    "print(json.dumps(asdict(owner.this_process())))")


def _folder(base: Path, name: str, owner: dict | None) -> Path:
    folder = base / name
    (folder / "tmp.kfp").mkdir(parents=True)
    if owner is not None:
        (folder / temp_folders.OWNER_FILE).write_text(json.dumps(owner))
    return folder


def test_folders_of_dead_runs_go_and_the_rest_stay(tmp_path):
    dead = json.loads(subprocess.run([sys.executable, "-c", OWNER_OF_A_PROCESS_THAT_ENDS], capture_output=True,
                                     text=True, check=True).stdout)
    killed_run = _folder(tmp_path, "driftlab-run-20300101-000000-aaaa-x", dead)
    killed_depot = _folder(tmp_path, "driftlab-workers-y", dead)
    live = tmp_path / "driftlab-run-20300101-000000-bbbb-z"
    live.mkdir()
    temp_folders.claim(live)  # this process: alive
    unknown = _folder(tmp_path, "driftlab-run-20300101-000000-cccc-w", None)  # made by an older driftlab
    elsewhere = _folder(tmp_path, "driftlab-workers-v", {**dead, "host": "another-machine"})
    foreign = _folder(tmp_path, "someone-elses-tmp", dead)

    removed = temp_folders.sweep(tmp_path)

    assert sorted(removed) == sorted([killed_run, killed_depot])
    assert not killed_run.exists() and not killed_depot.exists()
    assert live.exists() and unknown.exists() and elsewhere.exists() and foreign.exists()
    assert temp_folders.sweep(tmp_path) == [], "control: nothing else is dead"


def test_a_sweep_of_a_missing_folder_is_a_no_op(tmp_path):
    assert temp_folders.sweep(tmp_path / "gone") == []
