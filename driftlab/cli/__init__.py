"""The ``driftlab`` command line: people's entry point, a thin adapter over the library.

One module per group of commands: ``experiment`` (validate, run), ``tools`` (compile,
profiles), ``report`` (report show|history, gate), ``cluster`` (submit, schedule, pools).
``main`` catches every ``DriftlabError`` once and turns it into one line and its exit status.
"""

from __future__ import annotations

import argparse
import os
import sys

from driftlab.cli import cluster as cli_cluster, compare as cli_compare, experiment, report as cli_report, tools

# Exit statuses: 0 gate PASS, 1 the pipeline failed, 2 bad input, 3 gate FAIL, 4 gate INCOMPLETE
# (a planned measurement did not happen), 130 interrupted. See driftlab.drift.gate.EXIT_CODES.
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
print_summary = experiment.print_summary


def build_parser() -> argparse.ArgumentParser:
    from driftlab import __version__

    parser = argparse.ArgumentParser(prog="driftlab", description="Measure why Keras results do not reproduce.")
    parser.add_argument("--version", action="version", version=f"driftlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the whole pipeline locally (kfp.local) and write the report")
    run.add_argument("config", help="experiment YAML, e.g. examples/quickstart.yaml")
    run.add_argument("--campaign", help="campaign name; the same name resumes (default: 'default')")
    run.add_argument("--home", help="folder for the local database, logs and reports (default: storage.local_dir)")
    run.add_argument("--jobs", type=int, help="worker processes per stage (default: CPU cores)")
    run.add_argument("--verbose", action="store_true", help="show every task's full log")
    run.add_argument("--replace", action="store_true",
                     help="discard the campaign's runs, reports and study if the experiment file changed since")
    run.set_defaults(func=experiment.cmd_run)
    val = sub.add_parser("validate", help="check an experiment file and show the plan; runs nothing")
    val.add_argument("config")
    val.set_defaults(func=experiment.cmd_validate)
    comp = sub.add_parser("compile", help="compile the pipeline to YAML for a KFP cluster")
    comp.add_argument("--output", default="driftlab.yaml", help="where to write the YAML (default: driftlab.yaml)")
    cli_cluster.add_image_registry(comp)
    comp.set_defaults(func=tools.cmd_compile)
    prof = sub.add_parser("profiles", help="list the CPU profiles this machine can run")
    prof.set_defaults(func=tools.cmd_profiles)
    cli_report.register(sub)  # report show|history, gate
    cli_compare.register(sub)  # compare A B (two campaigns, paired by seed point)
    cli_cluster.register(sub)  # submit, schedule, pools discover
    return parser


def main(argv: list[str] | None = None) -> int:
    from driftlab.errors import DriftlabError
    from driftlab.storage.secret_env import hide_from_proc

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    hide_from_proc()  # the tasks and workers this starts could read our /proc/<pid>/environ
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DriftlabError as exc:  # every error driftlab raises on purpose: one line, its own exit status
        print(f"driftlab: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
