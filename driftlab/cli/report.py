"""``driftlab report show|history`` and ``driftlab gate``: reading reports, not producing them.

``register(subparsers)`` adds the commands to the main parser (driftlab/cli/__init__.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from driftlab.errors import BadInput
from driftlab import settings

EXIT_OK, EXIT_BAD_INPUT = 0, 2
HISTORY_EXECUTIONS = 20  # the newest executions `report history` lists
#: How ``driftlab compare`` (driftlab/cli/compare.py) is called; ``report history`` names it.
COMPARE_USAGE = "driftlab compare A B --experiment NAME [--home DIR | --config FILE] [--gate] [--format text|json]"


class BadReport(BadInput):
    """A file that is not a driftlab report.json."""


def read_report(path: str) -> dict[str, Any]:
    """Load a report.json (a regular file within DRIFTLAB_MAX_REPORT_BYTES), or raise BadReport naming the fix."""
    from driftlab import inputs

    try:
        result = json.loads(inputs.read_text_bounded(path, settings.MAX_REPORT_BYTES, "report"))
    except inputs.FileRefused as exc:
        reason = "cannot read it (file not found)" if exc.missing else exc.reason
        raise BadReport(f"{path}: {reason}; give the report.json that `driftlab run` printed") from None
    except RecursionError:
        raise BadReport(f"{path}: not a driftlab report.json (nested too deeply)") from None
    except ValueError as exc:
        raise BadReport(f"{path}: not JSON ({exc}); give a driftlab report.json") from None
    missing = [k for k in ("gate", "hardware", "sources", "metric") if not isinstance(result, dict) or k not in result]
    if missing:
        raise BadReport(f"{path}: not a driftlab report.json (missing {', '.join(missing)})")
    # Schema driftlab.report/1 had no top-level task; the experiment block did.
    result.setdefault("task", (result.get("experiment") or {}).get("task") or "classification")
    return result


def _print_checks(gate: dict[str, Any]) -> None:
    from driftlab.report import fmt

    if not gate.get("checks"):
        print("no budgets configured in tolerances: nothing to check")
    for c in gate["checks"]:
        value = fmt.num(c.get("value")) if not isinstance(c.get("value"), int) else str(c["value"])
        note = f"  ({c['note']})" if c.get("note") else ""
        print(f"{c['status']:<10}  {c['check']:<20} {str(c['where']):<20} {value:>10} {c.get('op', '<=')} "
              f"{c['budget']}{note}")


def gate_exit_code(status: str) -> int:
    """0 for PASS, 3 for FAIL, 4 for INCOMPLETE (see ``driftlab.drift.gate.EXIT_CODES``)."""
    from driftlab.drift.gate import EXIT_CODES, INCOMPLETE

    return EXIT_CODES.get(status, EXIT_CODES[INCOMPLETE])


def cmd_gate(args: argparse.Namespace) -> int:
    """Exit 0 when the gate passes, 3 when it fails, 4 when incomplete, 2 on bad input."""
    from driftlab.drift import evaluate_gate

    result = read_report(args.report)  # BadReport, ConfigError: one line and exit 2 (cli.main)
    gate = result["gate"]
    if getattr(args, "config", None):
        from driftlab.config import load_config

        config = load_config(args.config)
        task = result.get("task") or (result.get("experiment") or {}).get("task") or config.task
        gate = evaluate_gate(config.tolerances, result, task=task)
        print(f"budgets from {args.config}")
    if args.format == "json":
        print(json.dumps(gate, indent=2, default=str))
    else:
        _print_checks(gate)
        print(f"gate: {gate['status']}")
    return gate_exit_code(gate["status"])


def cmd_show(args: argparse.Namespace) -> int:
    """Print a stored report (Markdown or JSON), or write it again as HTML."""
    from driftlab.report import to_html, to_markdown

    result = read_report(args.report)
    if args.html:
        Path(args.html).write_text(to_html(result), encoding="utf-8")
        print(f"wrote {args.html}")
        return EXIT_OK
    print(json.dumps(result, indent=2) if args.format == "json" else to_markdown(result), end="")
    return EXIT_OK


def _store(args: argparse.Namespace):
    from driftlab.storage.store import Store, database_url, local_dir

    url_env, configured_dir = settings.DB_URL.name, ".driftlab"
    if args.config:
        from driftlab.config import load_config

        config = load_config(args.config)
        url_env, configured_dir = config.storage.url_env, config.storage.local_dir
    if args.home:
        db = Path(args.home).resolve() / "driftlab.sqlite"
        if not db.exists():
            raise BadInput(f"--home {args.home}: no driftlab.sqlite there; give the folder "
                           "`driftlab run --home` used")
        import os

        if not os.environ.get(url_env, "").strip():
            return Store(f"sqlite:///{db}")
    return Store(database_url(url_env, local_dir(configured_dir)))


def cmd_history(args: argparse.Namespace) -> int:
    """Drift per profile across every stored report, with jumps and version changes flagged."""
    from driftlab.report import history
    from driftlab.storage.store import safe_url

    store = _store(args)  # ConfigError, StoreError, BadInput: one line and exit 2 (cli.main)
    rows = history.history_rows(store.iter_reports(args.experiment))
    store.mark_abandoned()  # an execution whose process is gone reads "abandoned (last seen ...)"
    executions = store.list_executions(args.experiment, limit=HISTORY_EXECUTIONS)
    if not rows:
        which = f" for experiment '{args.experiment}'" if args.experiment else ""
        print(f"no reports with more than one profile{which} in {safe_url(store.url)}")
        if executions and args.format != "json":
            print(history.executions_markdown(executions), end="")
        return EXIT_OK
    if args.html:
        Path(args.html).write_text(history.to_html(rows), encoding="utf-8")
        print(f"wrote {args.html}")
    if args.format == "json":
        print(json.dumps(rows, indent=2, default=str))
    else:
        print(history.to_markdown(rows), end="")
        if executions:
            print(history.executions_markdown(executions), end="")
        print(f"compare two campaigns: {COMPARE_USAGE}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``report show``, ``report history`` and the ``gate`` options to the driftlab parser."""
    gate = subparsers.add_parser("gate", help="exit non-zero when a report's tolerance gate failed")
    gate.add_argument("report", help="report.json")
    gate.add_argument("--config", help="re-evaluate the stored statistics against this experiment file's tolerances")
    gate.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    gate.add_argument("--json", dest="format", action="store_const", const="json", help=argparse.SUPPRESS)
    gate.set_defaults(func=cmd_gate)
    report = subparsers.add_parser("report", help="show a report, or the history of drift across runs")
    sub = report.add_subparsers(dest="report_command", required=True)
    show = sub.add_parser("show", help="print a report.json as Markdown or JSON, or write it as HTML")
    show.add_argument("report", help="report.json")
    show.add_argument("--format", choices=("markdown", "json"), default="markdown")
    show.add_argument("--html", help="write the HTML report to this file instead of printing")
    show.set_defaults(func=cmd_show)
    hist = sub.add_parser("history", help="drift per profile across every report in the results DB")
    hist.add_argument("--experiment", help="only this experiment (default: all)")
    hist.add_argument("--config", help="experiment file whose storage settings name the database")
    hist.add_argument("--home", help="the folder `driftlab run --home` used (its driftlab.sqlite)")
    hist.add_argument("--format", choices=("markdown", "json"), default="markdown")
    hist.add_argument("--html", help="also write the history as a self-contained HTML page")
    hist.set_defaults(func=cmd_history)
