"""``driftlab compare A B``: two campaigns of one experiment, run by run (``driftlab.drift.compare``).

Campaigns, not report.json files: a report holds summaries only and the
paired tests need every run's value, so both campaigns are read from the
results store (``--config`` / ``--home`` as ``driftlab report history``).
Exit 0, or with ``--gate`` 3 when a Holm-corrected difference is significant
and larger than seed noise allows; 2 on bad input (no shared seed point).

``register(subparsers)`` adds the command to the main parser (driftlab/cli/__init__.py).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from driftlab.cli.report import _store
from driftlab.errors import BadInput

EXIT_OK, EXIT_DIFFERENT = 0, 3


def _experiment(args: argparse.Namespace) -> str:
    if args.experiment:
        return args.experiment
    if args.config:
        from driftlab.config import load_config

        return load_config(args.config).name
    raise BadInput("driftlab compare: give --experiment NAME (or --config FILE, whose name it takes)")


def cmd_compare(args: argparse.Namespace) -> int:
    from driftlab.drift.compare import compare, to_text
    from driftlab.storage.store import safe_url

    store = _store(args)  # ConfigError, StoreError, BadInput: one line and exit 2 (cli.main)
    experiment = _experiment(args)
    loaded = []
    for name in (args.a, args.b):
        records = store.load_runs(experiment, name, with_arrays=False)
        if not records:
            raise BadInput(f"campaign '{name}' of experiment '{experiment}' has no runs in {safe_url(store.url)}; "
                           "give two campaigns `driftlab run --campaign` recorded there")
        loaded.append(records)
    result = compare(*loaded, names=(args.a, args.b), alpha=args.alpha, noise_factor=args.noise_factor)
    result["experiment"] = experiment
    if args.format == "json":
        print(json.dumps(result, indent=2, default=str))
    else:
        print(to_text(result), end="")
    return EXIT_DIFFERENT if args.gate and result["flagged"] else EXIT_OK


def register(subparsers: Any) -> None:
    """Add ``driftlab compare`` to the driftlab parser."""
    comp = subparsers.add_parser(
        "compare", help="compare two campaigns run by run (paired by seed point); --gate exits 3 on a real difference",
        description="Pair the runs of two campaigns by seed point and test, per eval metric and profile, whether "
                    "they differ (paired t-test, Holm-corrected, bootstrap CI of the mean difference, P(A > B)). "
                    "Reads campaigns from the results store; report.json files are not enough (they hold no "
                    "per-run values).")
    comp.add_argument("a", metavar="A", help="first campaign (the baseline: its seed SD is the noise yardstick)")
    comp.add_argument("b", metavar="B", help="second campaign")
    comp.add_argument("--experiment", help="experiment name (default: the name in --config)")
    comp.add_argument("--config", help="experiment file whose storage settings name the database")
    comp.add_argument("--home", help="the folder `driftlab run --home` used (its driftlab.sqlite)")
    comp.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    comp.add_argument("--gate", action="store_true",
                      help="exit 3 when a corrected difference is significant and above --noise-factor × seed SD")
    comp.add_argument("--alpha", type=float, default=0.05, help="significance level after Holm (default 0.05)")
    comp.add_argument("--noise-factor", type=float, default=2.0,
                      help="|mean Δ| must exceed this many seed SDs of A to count (default 2)")
    comp.set_defaults(func=cmd_compare)
