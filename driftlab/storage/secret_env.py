"""Keep database credentials away from user model code.

User code (a ``module:function`` builder) runs in worker processes: the retrain
workers and the trial workers of the tune stage. Two ways it could find a password:

- its own environment: ``child_env`` leaves out every variable that holds one
  (``is_secret``: driftlab's database variables, libpq's ``PGPASSWORD``/``PGPASSFILE``,
  and any variable whose value is a database URL or DSN carrying a password, such as
  the one ``storage.url_env`` or ``tuning.storage_env`` names);
- an ancestor's ``/proc/<pid>/environ``, which shows the environment a process was
  *started* with, whatever it changed since. ``hide_from_proc`` overwrites those
  entries in place in this process's initial environment block (the kernel reads the
  file from that memory), after moving the values to fresh copies, so ``os.environ``
  and child processes that should have them still do. driftlab calls it in every
  process that starts workers or pipeline tasks: the CLI, the stage processes.

What it cannot hide: a process of the same user that reads another's memory
(``/proc/<pid>/mem``, ptrace) or an ancestor driftlab does not run (a shell that
exported the URL, a container runtime's entrypoint). RELIABILITY.md says so.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Mapping

from driftlab import settings
from driftlab.storage.db import safe_url

#: libpq reads these; a worker never connects, so it never needs them.
LIBPQ_SECRET_KEYS = ("PGPASSWORD", "PGPASSFILE")
NAMED_SECRET_KEYS = (settings.DB_URL.name, settings.TEST_PG_URL.name, *LIBPQ_SECRET_KEYS)


def is_secret(name: str, value: str) -> bool:
    """Whether the variable ``name=value`` holds a database credential."""
    if name in NAMED_SECRET_KEYS:
        return True
    text = value.strip()
    if "=" not in text and "://" not in text:
        return False
    masked = safe_url(text)
    return masked != text and masked != "<unparseable database URL>"


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) without any variable that holds a database credential."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if not is_secret(k, v)}


def _initial_block() -> tuple[int, int] | None:
    """Start and end address of this process's initial environment (``/proc/self/stat`` 50-51)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read().decode("ascii", "replace")
        fields = stat[stat.rindex(")") + 2:].split()
        start, end = int(fields[47]), int(fields[48])  # fields 50 and 51, counted after pid and comm
    except (OSError, ValueError, IndexError):
        return None
    return (start, end) if 0 < start < end else None


def hide_from_proc() -> list[str]:
    """Overwrite every credential-holding entry of ``/proc/self/environ``; return their names.

    ``os.environ`` keeps the values (set again, so libc's environment points at fresh
    copies), so this process and the children it deliberately gives them to still work.
    Linux only; elsewhere (or if the block cannot be located) nothing is done.
    """
    if not sys.platform.startswith("linux"):
        return []
    block = _initial_block()
    if block is None:
        return []
    start, end = block
    try:
        raw = ctypes.string_at(start, end - start)
    except (OSError, ValueError):
        return []
    hidden, offset = [], 0
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        key = name.decode("utf-8", "replace")
        if sep and is_secret(key, value.decode("utf-8", "replace")):
            if key in os.environ:
                os.environ[key] = os.environ[key]  # setenv: libc's copy now lives elsewhere
            ctypes.memset(start + offset + len(name) + 1, ord("*"), len(value))
            hidden.append(key)
        offset += len(entry) + 1
    return hidden


# -- handing credentials to local pipeline tasks -----------------------------------------------------------------
#
# kfp.local starts each task as ``sh -ec '... python -m kfp.dsl.executor_main ...'`` with the
# environment of ``driftlab run``: a credential there would sit in that shell's
# /proc/<pid>/environ, an ancestor of every worker. So ``driftlab run`` starts tasks without
# them and hands them over through a pipe instead: the task's stage process reads it to the
# end (``adopt_handed_over``) before it starts any worker, after which the pipe is empty.
PIPE_LIMIT = 60_000  # bytes: written before the task starts, so it must fit a pipe's buffer


def secrets_in(env: Mapping[str, str]) -> dict[str, str]:
    """The credential-holding variables of ``env``."""
    return {k: v for k, v in env.items() if is_secret(k, v)}


def handover_pipe(secrets: Mapping[str, str]) -> int:
    """A pipe's read end holding ``secrets`` as JSON (the write end is closed); the caller passes it on."""
    import json

    payload = json.dumps(dict(secrets)).encode()
    if len(payload) > PIPE_LIMIT:
        raise ValueError(f"the database credentials in the environment take {len(payload)} bytes; "
                         f"at most {PIPE_LIMIT} can be handed to a task")
    read, write = os.pipe()
    try:
        os.write(write, payload)
    finally:
        os.close(write)
    return read


def adopt_handed_over() -> list[str]:
    """In a task started by ``driftlab run``: read the credentials it handed over into ``os.environ``."""
    import json

    raw = settings.SECRET_FD.raw()
    if raw is None:
        return []
    os.environ.pop(settings.SECRET_FD.name, None)
    try:
        fd = int(raw)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        os.close(fd)
        secrets = json.loads(b"".join(chunks) or b"{}")
    except (OSError, ValueError):
        return []  # not handed over after all (a stale variable): the environment decides
    os.environ.update({str(k): str(v) for k, v in secrets.items()})
    return sorted(secrets)
