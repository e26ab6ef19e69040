"""``driftlab validate`` and ``driftlab run``: check an experiment file, run its pipeline locally, summarise."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from driftlab import settings

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _console():
    from rich.console import Console

    return Console(stderr=False, highlight=False)


def _bad_input(message: str) -> int:
    print(f"driftlab: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _load(path: str):
    from driftlab.config import load_config

    return load_config(path)


def _preflight(config) -> tuple[Any, int]:
    """Everything that can be refused before any work starts: profiles, plan size."""
    from driftlab.config.profiles import LOCAL, profiles_for
    from driftlab.config.seedplan import check_cap

    profiles = profiles_for(config, LOCAL)
    total = check_cap(config.seeds, len(profiles.runnable))
    if config.dataset.name in ("csv", "npz"):  # a user's file: read it now, not in the first pipeline task
        from driftlab.runs.datasets import infer_task, make_split

        make_split(config.dataset, config.seeds.split[0])
        inference = infer_task(config.dataset)
        if inference.inferred:  # say what was decided from the data, and how to change it
            print(f"  task: {inference.task} (inferred: {inference.reason}; set dataset.task to override)")
    return profiles, total


def cmd_validate(args) -> int:
    config = _load(args.config)
    profiles, total = _preflight(config)
    print(f"{args.config}: valid. Experiment '{config.name}', {config.task}, metric {config.metric}; "
          f"{total} training runs on {len(profiles.runnable)} profile(s) "
          f"({', '.join(profiles.names())}), reference {profiles.reference.name}.")
    for p, why in profiles.skipped:
        print(f"  {'note' if p.name == profiles.reference.name else 'skipped'} {p.name}: {why}")
    from driftlab.drift.stats import plan_advice

    for line in plan_advice({"init": len(config.seeds.init), "shuffle": len(config.seeds.shuffle),
                             "split": len(config.seeds.split)}):
        print(f"  {line}")
    return EXIT_OK


# A campaign names a folder of reports and logs: no path separators, no leading dot; 128 fits the tables.
CAMPAIGN_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def cmd_run(args) -> int:
    from driftlab.launch import local as local_run
    from driftlab.config import canonical_json, config_hash
    from driftlab.storage.store import Store, database_url, local_dir, safe_url

    if args.campaign is not None and not CAMPAIGN_PATTERN.match(args.campaign):
        return _bad_input(f"--campaign: {args.campaign[:80]!r} is not a campaign name; use 1-128 letters, digits, "
                          "'.', '_', ':' or '-', starting with a letter or digit (it names a folder of reports)")
    config = _load(args.config)
    profiles, total = _preflight(config)
    text = Path(args.config).read_text(encoding="utf-8")
    home = Path(args.home).resolve() if args.home else local_dir(config.storage.local_dir)
    if args.jobs:
        os.environ[settings.JOBS.name] = str(args.jobs)
    os.environ[settings.HOME.name] = str(home)
    campaign = args.campaign or "default"
    store = Store(database_url(config.storage.url_env, home))
    console = _console()
    from driftlab.storage.campaigns import CampaignConflict, check_campaign, replace_campaign

    try:
        check_campaign(store, config, campaign)
    except CampaignConflict:
        if not args.replace:
            raise
        removed = replace_campaign(store, config, campaign)
        console.print(f"[yellow]replaced[/] campaign {campaign}: {removed} run(s) of the old plan discarded")
    console.print(f"[bold]driftlab[/] {config.name} · campaign {campaign} · {total} runs planned on "
                  f"{len(profiles.runnable)} profile(s) · results in {safe_url(store.url)}")
    for p, why in profiles.skipped:
        kind = "note: profile" if p.name == profiles.reference.name else "skipped profile"
        console.print(f"  [yellow]{kind} {p.name}[/]: {why}")
    execution = store.start_execution(config.name, campaign, config_hash(config), canonical_json(config))
    try:
        report_dir = local_run.run_pipeline(text, campaign, home, verbose=args.verbose)
        status = "succeeded"
    except local_run.PipelineFailed as exc:
        report_dir = exc.report_dir
        status = "failed"
        if not exc.gate_only:
            store.finish_execution(execution, "failed")
            console.print(f"[red]pipeline failed[/]: {exc}\n  full log: {exc.log_path}")
            return EXIT_FAILED
    except KeyboardInterrupt:
        store.finish_execution(execution, "interrupted")
        console.print("[yellow]interrupted[/]: finished runs are kept; run the same command again to resume")
        return 130
    store.finish_execution(execution, status)
    result = json.loads((report_dir / "report.json").read_text())
    print_summary(console, result)
    console.print(f"\nReport: [bold]{report_dir / 'report.html'}[/]\n        {report_dir / 'report.md'}\n"
                  f"        {report_dir / 'report.json'}", soft_wrap=True)
    from driftlab.cli.report import gate_exit_code

    return gate_exit_code(result["gate"]["status"])


def print_summary(console, result: dict[str, Any]) -> None:
    from rich.table import Table

    metric = result["metric"]["name"]
    # Regression has no label disagreement: the column is the RMS prediction difference, in target units.
    dis = "disagreement" if result.get("task", "classification") == "classification" else "RMS prediction diff"
    table = Table(title=f"Sources of variation ({metric}, n={result['metric']['n_eval']} eval rows)")
    for col in ("source", "metric SD", dis, "identical weights"):
        table.add_column(col, justify="right" if col != "source" else "left")
    for name, s in result["sources"].items():
        if s.get("planned") and not s.get("varied"):
            table.add_row(name, "[red]planned, not measured[/]", "", "")
        elif not s.get("varied"):
            table.add_row(name, "not varied", "", "")
        else:
            table.add_row(name, _fmt(s["metric_sd"]), _fmt(s["disagreement"]), f"{s['identical_share']:.0%}")
    console.print(table)
    if result["hardware"]:
        hw = Table(title=f"Profiles vs reference {result['reference']}")
        for col in ("profile", "Δ metric", dis, "identical weights", "drift ÷ seed noise"):
            hw.add_column(col, justify="right" if col != "profile" else "left")
        for prof, h in result["hardware"].items():
            if h.get("compared"):
                hw.add_row(prof, _fmt(h["metric_delta_mean"]), _fmt(h["disagreement"]),
                           f"{h['identical_share']:.0%}", _fmt(h["drift_to_seed_noise"], 2))
        console.print(hw)
    for line in result["summary"]:
        console.print(f"• {line}")


def _fmt(value: Any, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"
