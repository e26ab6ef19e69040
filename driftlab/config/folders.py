"""Folders driftlab will write (its home: database, logs, reports), checked without creating them.

A folder can be used when it is a writable directory, or when its nearest existing ancestor
is one, on a filesystem that holds files: not ``/proc``, ``/sys``, ``/dev`` or another kernel
pseudo-filesystem (found in ``/proc/self/mountinfo``), where writes fail or mean something else.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from driftlab.errors import BadInput

#: Kernel filesystems that hold no files of ours (writing there fails, or changes the kernel's state).
PSEUDO_FILESYSTEMS = frozenset({"proc", "sysfs", "devtmpfs", "devpts", "debugfs", "tracefs", "securityfs",
                                "cgroup", "cgroup2", "configfs", "pstore", "bpf", "efivarfs", "binfmt_misc",
                                "fusectl", "mqueue", "autofs", "nsfs"})
MOUNTINFO = Path("/proc/self/mountinfo")


class FolderError(BadInput):
    """A folder driftlab would write that cannot be used; the message names the field and the fix."""


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def _unescape(text: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (``\\040``)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        text = text.replace(code, char)
    return text


def mounts(path: Path = MOUNTINFO) -> list[Mount]:
    """Every mount of this process's namespace (``mountinfo``: the point is field 5, the type follows ``-``)."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if sep and len(fields) >= 5 and right.split():
            out.append(Mount(_unescape(fields[4]), right.split()[0]))
    return out


def mount_of(path: Path, table: list[Mount] | None = None) -> Mount | None:
    """The mount holding ``path`` (an existing, resolved path): the longest mount point above it, last wins."""
    best: Mount | None = None
    text = str(path)
    for m in mounts() if table is None else table:
        inside = text == m.point or m.point == "/" or text.startswith(m.point.rstrip("/") + "/")
        if inside and (best is None or len(m.point) >= len(best.point)):
            best = m
    return best


def nearest_existing(path: Path) -> Path:
    """``path`` itself when something is there (a file too), else its closest ancestor that exists."""
    current = path
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def check_writable_folder(path: Path, field: str, *, table: list[Mount] | None = None) -> None:
    """Refuse a folder driftlab could not create or write; create nothing. ``field`` names it for people."""
    path = Path(os.path.abspath(path))
    there = nearest_existing(path)
    real = Path(os.path.realpath(there))
    fix = "give a folder on a disk you can write, e.g. .driftlab"
    if not real.is_dir():
        what = "exists and is not a folder" if there == path else f"is inside '{there}', which is not a folder"
        raise FolderError(f"{field}: '{path}' {what}; {fix}")
    mount = mount_of(real, table)
    if mount is not None and mount.fstype in PSEUDO_FILESYSTEMS:
        raise FolderError(f"{field}: '{path}' is on the kernel's {mount.fstype} filesystem ({mount.point}), which "
                          f"holds no files of driftlab's; {fix}")
    if not os.access(real, os.W_OK | os.X_OK):
        where = "is not writable" if there == path else f"cannot be created: '{there}' is not writable"
        raise FolderError(f"{field}: '{path}' {where} (by this user, or the filesystem is read-only); {fix}")
