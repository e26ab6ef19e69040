"""driftlab's Optuna gRPC storage proxy: ``python -m driftlab.tuning.proxy [--host H] [--port P] [--threads N]``.

It serves the study database in ``DRIFTLAB_DB_URL`` to tune workers that set
``DRIFTLAB_STUDY_GRPC`` (see ``grpc_storage``), so only this process holds the
database password. It is Optuna's ``run_grpc_proxy_server`` in front of
``ResilientRDBStorage`` (lost connections retried, no trial created without a slot),
behind Optuna's trial cache as Optuna advises, with one database connection per
server thread. On a cluster it is the ``study-proxy`` manifests component.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import optuna
from optuna.storages import _CachedStorage

from driftlab import settings
from driftlab.errors import BadInput, DriftlabError
from driftlab.storage.db import POOL_MAX_OVERFLOW, STUDY, engine_kwargs, normalize_url, retrying, safe_url
from driftlab.tuning.storage import ResilientRDBStorage

DEFAULT_PORT = 13000
DEFAULT_THREADS = 16


class ProxyCache(_CachedStorage):
    """Optuna's trial cache, which also records parameters of trials it has not read yet (a restarted proxy)."""

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: Any) -> None:
        with self._lock:
            known = trial_id in self._trial_id_to_study_id_and_number
        if not known:
            self._backend.set_trial_param(trial_id, param_name, param_value_internal, distribution)
            return
        super().set_trial_param(trial_id, param_name, param_value_internal, distribution)


def backend(url: str, threads: int) -> ProxyCache:
    """The storage the proxy serves: the database at ``url``, one pooled connection per server thread."""
    url = normalize_url(url)
    kwargs = engine_kwargs(url)
    if "pool_size" in kwargs:
        kwargs.update(pool_size=threads, max_overflow=POOL_MAX_OVERFLOW)
    storage = retrying(lambda: ResilientRDBStorage(url, engine_kwargs=kwargs), "opening the study storage",
                       url=url, role=STUDY)
    return ProxyCache(storage)


def serve(url: str, *, host: str, port: int, threads: int) -> None:
    """Serve the study database at ``url`` on ``host:port`` until the process is stopped."""
    storage = backend(url, threads)
    print(f"[driftlab] study proxy: {safe_url(url)} on {host}:{port}, {threads} threads", file=sys.stderr,
          flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.run_grpc_proxy_server(storage, host=host, port=port,
                                              thread_pool=ThreadPoolExecutor(max_workers=threads))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m driftlab.tuning.proxy", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: all)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="server threads, and database connections (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        url = settings.DB_URL.raw()
        if not url:
            raise BadInput(f"{settings.DB_URL.name} is not set: the proxy serves the study database named there "
                           "(on a cluster, from the driftlab-db Secret)")
        if args.threads < 1:
            raise BadInput(f"--threads: {args.threads} is not a positive whole number; e.g. {DEFAULT_THREADS}")
        serve(url, host=args.host, port=args.port, threads=args.threads)
    except DriftlabError as exc:
        print(f"[driftlab] {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
