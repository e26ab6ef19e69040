"""Start kfp.local's task processes without database credentials in their environment.

kfp.local runs each task as ``sh -ec '... python -m kfp.dsl.executor_main'`` with this
process's environment. ``credentials_by_pipe`` replaces the function that starts them
(``kfp.local.subprocess_task_handler.run_local_subprocess``; same arguments, same output
handling) for the duration of a run: the task's environment loses every credential
(``storage.secret_env.is_secret``) and gets ``DRIFTLAB_SECRET_FD``, a pipe holding them,
which the stage reads to the end before it starts any worker (``adopt_handed_over``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from driftlab import settings
from driftlab.storage.secret_env import child_env, handover_pipe, secrets_in


def _run_task(full_command: list[str], env_vars: dict[str, str] | None = None) -> int:
    full_env = {**os.environ, **(env_vars or {})}
    env = child_env(full_env)
    read = handover_pipe(secrets_in(full_env))
    env[settings.SECRET_FD.name] = str(read)
    try:
        process = subprocess.Popen(full_command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   bufsize=1, env=env, pass_fds=(read,))
    finally:
        os.close(read)
    with process:
        for line in iter(process.stdout.readline, ""):
            print(line, end="")
        print("\n")
        return process.wait()


@contextmanager
def credentials_by_pipe() -> Iterator[None]:
    """While active, kfp.local's tasks get the database credentials through a pipe, not their environment."""
    from kfp.local import subprocess_task_handler as handler

    original = handler.run_local_subprocess
    handler.run_local_subprocess = _run_task
    try:
        yield
    finally:
        handler.run_local_subprocess = original
