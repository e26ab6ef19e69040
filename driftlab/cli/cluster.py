"""``driftlab submit``, ``driftlab schedule`` and ``driftlab pools discover``: the cluster commands.

A thin adapter over ``driftlab.cluster``; ``register`` adds the commands to
the main parser (``driftlab.cli.build_parser``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    print(f"driftlab: {message}", file=sys.stderr)
    return code


def _server_error(exc: Exception, host: str | None) -> int | None:
    """A KFP server that answered with an error, or could not be reached; None for anything else."""
    host = host or os.environ.get("KFP_HOST") or os.environ.get("KF_PIPELINES_ENDPOINT")
    from kfp_server_api.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        detail = (exc.body or b"").decode() if isinstance(exc.body, bytes) else (exc.body or "")
        hint = " (check the KFP namespace, --namespace, and that your identity may create runs there)" \
            if exc.status in (401, 403) else ""
        return _fail(f"KFP API answered HTTP {exc.status} {exc.reason}{hint}: {detail[:300]}", EXIT_FAILED)
    if isinstance(exc, TimeoutError):  # kfp.Client gave up on /apis/v2beta1/healthz
        return _fail(f"KFP API at {host} did not answer its health check; check --host / KFP_HOST", EXIT_FAILED)
    if isinstance(exc, HTTPError):
        return _fail(f"KFP API at {host} unreachable ({type(exc).__name__}); check --host / KFP_HOST", EXIT_FAILED)
    return None


def cmd_submit(args) -> int:
    from driftlab.launch import submit

    try:
        done = submit.submit(args.config, host=args.host, run_name=args.run_name, experiment=args.experiment,
                             campaign=args.campaign, namespace=args.namespace,
                             service_account=args.service_account, package=args.package,
                             image_registry=args.image_registry)
    except submit.SubmitError as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - server errors become one line, anything else propagates
        code = _server_error(exc, args.host)
        if code is None:
            raise
        return code
    print(f"submitted run '{done.name}' (id {done.id}) in experiment {done.experiment_id}, campaign {done.campaign}")
    return EXIT_OK


def cmd_schedule(args) -> int:
    from driftlab.launch import submit

    try:
        done = submit.schedule(args.config, cron=args.cron, host=args.host, name=args.name,
                               experiment=args.experiment, campaign=args.campaign, namespace=args.namespace,
                               service_account=args.service_account, max_concurrency=args.max_concurrency,
                               catchup=args.catchup, package=args.package, image_registry=args.image_registry)
    except submit.SubmitError as exc:
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001
        code = _server_error(exc, args.host)
        if code is None:
            raise
        return code
    print(f"scheduled '{done.name}' (recurring run {done.id}, pipeline version {done.pipeline_version_id}) "
          f"in experiment {done.experiment_id}; campaign per run: {done.campaign}")
    return EXIT_OK


def cmd_pools_discover(args) -> int:
    from driftlab.cluster import discover

    try:
        section, pools, notes = discover.discover(args.kubeconfig, args.context, label_selector=args.selector or "")
    except discover.DiscoveryError as exc:
        return _fail(str(exc), EXIT_FAILED)
    text = discover.render(section, pools, notes)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {len(section['pools'])} profile(s) from {sum(len(p.nodes) for p in pools)} node(s) "
              f"to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def _kfp_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="experiment YAML (its text becomes the run's config_yaml parameter)")
    parser.add_argument("--host", help="KFP API address (default: $KFP_HOST, else $KF_PIPELINES_ENDPOINT)")
    parser.add_argument("--experiment", help="KFP experiment to file runs under (default: the experiment's name)")
    parser.add_argument("--namespace", help="KFP namespace for multi-user Kubeflow (default: $KFP_NAMESPACE)")
    parser.add_argument("--service-account", default="driftlab-pipeline",
                        help="service account of the pipeline's Pods (default: driftlab-pipeline)")
    parser.add_argument("--package", help="a compiled pipeline YAML (default: compile the pipeline now)")
    add_image_registry(parser)


def add_image_registry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image-registry", metavar="REG",
                        help="registry of the driftlab-cpu/-gpu images every task runs "
                             "(default: $DRIFTLAB_IMAGE_REGISTRY, else ghcr.io/driftlab)")


def register(subparsers) -> None:
    """Add ``submit``, ``schedule`` and ``pools`` to the ``driftlab`` command line.

    Args:
        subparsers: The main parser's subparsers action.
    """
    sub = subparsers.add_parser("submit", help="start one pipeline run on a Kubeflow Pipelines cluster")
    _kfp_arguments(sub)
    sub.add_argument("--run-name", help="the run's name (default: <experiment name>-<campaign>)")
    sub.add_argument("--campaign", default="default",
                     help="campaign name; a campaign already measured resumes (default: 'default')")
    sub.set_defaults(func=cmd_submit)

    sched = subparsers.add_parser("schedule", help="create a KFP recurring run of an experiment")
    _kfp_arguments(sched)
    sched.add_argument("--cron", required=True,
                       help="when, in UTC: five fields ('0 3 * * *' = 03:00 daily) or six (seconds first)")
    sched.add_argument("--name", help="the recurring run's name (default: <experiment name>-schedule)")
    sched.add_argument("--campaign", default="scheduled-[[ScheduledTime]]",
                       help="campaign of each run (default: one per run, named by its scheduled time)")
    sched.add_argument("--max-concurrency", type=int, default=1, help="runs of this schedule at once (default 1)")
    sched.add_argument("--catchup", action="store_true", help="start runs missed while the schedule was paused")
    sched.set_defaults(func=cmd_schedule)

    pools = subparsers.add_parser("pools", help="node pools of a Kubernetes cluster")
    pools_sub = pools.add_subparsers(dest="pools_command", required=True)
    disc = pools_sub.add_parser("discover", help="list the cluster's GPU node pools as an experiment's profiles")
    disc.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    disc.add_argument("--context", help="kubeconfig context")
    disc.add_argument("--selector", help="only nodes matching this label selector")
    disc.add_argument("--output", help="write the profiles section here (default: standard output)")
    disc.set_defaults(func=cmd_pools_discover)
