"""``driftlab validate`` and ``driftlab run``: check an experiment file, run its pipeline locally, summarise."""

from __future__ import annotations

import contextlib

import os
import re
import sys
import time
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


def _preflight(config) -> tuple[Any, int, Any]:
    """Everything that can be refused before any work starts: profiles, plan size; a data file's split."""
    from driftlab.config.profiles import LOCAL, profiles_for
    from driftlab.config.seedplan import check_cap

    profiles = profiles_for(config, LOCAL)
    total = check_cap(config.seeds, len(profiles.runnable))
    split = None
    if config.dataset.name in ("csv", "npz"):  # a user's file: read it now, not in the first pipeline task
        from driftlab.runs.datasets import infer_task, make_split

        split = make_split(config.dataset, config.seeds.split[0])
        inference = infer_task(config.dataset)
        if inference.inferred:  # say what was decided from the data, and how to change it
            print(f"  task: {inference.task} (inferred: {inference.reason}; set dataset.task to override)")
    return profiles, total, split


def _home(config, given: str | None) -> tuple[Path, str]:
    """The folder driftlab run writes, and the field that chose it (named when it cannot be used)."""
    from driftlab.storage.db import local_dir

    if given:
        return Path(given).resolve(), "--home"
    return local_dir(config.storage.local_dir), settings.HOME.name if settings.HOME.raw() else "storage.local_dir"


def _check_without_training(config, text: str, source: str, home: Path, home_field: str, campaign: str | None,
                            split, profile=None):
    """What validate and run refuse before anything is written: task arguments, folders, model, memory."""
    from driftlab.launch import task_args
    from driftlab.runs import preflight

    task_args.check(config, text, home=home, campaign=campaign, source=source, home_field=home_field)
    return preflight.check(config, home=home, home_field=home_field, campaign=campaign, split=split,
                           profile=profile)


def cmd_validate(args) -> int:
    from driftlab.config import load_config_text, read_config_text

    text = read_config_text(args.config)
    config = load_config_text(text, args.config)
    profiles, total, split = _preflight(config)
    home, home_field = _home(config, None)
    checked = _check_without_training(config, text, args.config, home, home_field, None, split)
    print(f"{args.config}: valid. Experiment '{config.name}', {config.task}, metric {config.metric}; "
          f"{total} training runs on {len(profiles.runnable)} profile(s) "
          f"({', '.join(profiles.names())}), reference {profiles.reference.name}.")
    for line in checked.lines(config.model.builder):
        print(f"  {line}")
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
    from driftlab.storage.store import Store, database_url, safe_url

    if args.campaign is not None and not CAMPAIGN_PATTERN.match(args.campaign):
        return _bad_input(f"--campaign: {args.campaign[:80]!r} is not a campaign name; use 1-128 letters, digits, "
                          "'.', '_', ':' or '-', starting with a letter or digit (it names a folder of reports)")
    from driftlab.config import load_config_text, read_config_text

    text = read_config_text(args.config)  # read once: the text the pipeline gets is the one validated
    config = load_config_text(text, args.config)
    profiles, total, split = _preflight(config)
    home, home_field = _home(config, args.home)
    if args.jobs:
        os.environ[settings.JOBS.name] = str(args.jobs)
    with _warm_workers(profiles):
        # Everything knowable without training is refused here, before the home folder or a database row exists.
        _check_without_training(config, text, args.config, home, home_field, args.campaign or "default", split,
                                profile=profiles.reference)
        return _run_checked(args, config, text, profiles, total, home)


@contextlib.contextmanager
def _warm_workers(profiles):
    """The run's worker depot (``runs.depot``), warming the reference profile's workers from the start.

    They import TensorFlow while the experiment is checked (the build check then runs in the
    first of them) and the first pipeline tasks train on them. Once they are ready, one worker
    of each node profile that kfp.local runs first is started, one at a time, so the node stage
    does not wait for their imports; the depot keeps those beside one worker per core.
    """
    from driftlab import stages
    from driftlab.runs import depot
    from driftlab.runs.executor import available_cpus, worker_env

    reference, cores = profiles.reference, available_cpus()
    ahead = [p for p in profiles.runnable if p.name != reference.name and p.kind == "cpu"]
    ahead = ahead[:stages.LOCAL_LOOP_CONCURRENCY]
    with depot.serving(max_idle=cores + len(ahead)) as lender:
        for index in range(min(cores, stages.default_jobs(reference))):
            lender.prewarm(worker_env(reference, index))
        lender.prewarm_in_turn([worker_env(p, 0) for p in ahead])
        yield lender


def _run_checked(args, config, text: str, profiles, total: int, home: Path) -> int:
    from driftlab.launch import local as local_run
    from driftlab.config import canonical_json, config_hash
    from driftlab.storage.store import Store, database_url, safe_url

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
    for gone in store.mark_abandoned():
        console.print(f"  [yellow]abandoned[/]: execution {gone['id']} ({gone['experiment']} · campaign "
                      f"{gone['campaign']}), last seen {_utc_text(gone['last_seen'])}: {gone['reason']}")
    execution = store.start_execution(config.name, campaign, config_hash(config), canonical_json(config))
    from driftlab.storage.owner import Heartbeat, heartbeat_every

    try:
        with Heartbeat(lambda: store.touch_execution(execution), heartbeat_every()):
            _wait_for_turn(store, execution, campaign, console)
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
    from driftlab.cli.report import gate_exit_code, read_report

    result = read_report(str(report_dir / "report.json"))
    print_summary(console, result)
    console.print(f"\nReport: [bold]{report_dir / 'report.html'}[/]\n        {report_dir / 'report.md'}\n"
                  f"        {report_dir / 'report.json'}", soft_wrap=True)

    return gate_exit_code(result["gate"]["status"])


WAIT_POLL_S = 1.0


def _wait_for_turn(store, execution: int, campaign: str, console) -> None:
    """Wait while an earlier execution of the same campaign runs: one campaign is measured by one run at a time.

    Two runs of a campaign at once would share its Optuna study and train the same runs twice; the
    later one waits, then reuses what the earlier one recorded. A dead earlier run is marked abandoned
    (``Store.executions_ahead``) and not waited for.
    """
    ahead = store.executions_ahead(execution)
    if not ahead:
        return
    first, t0 = ahead[0], time.monotonic()
    console.print(f"[yellow]waiting[/]: campaign {campaign} is being measured by execution {first['id']} (pid "
                  f"{first['owner_pid']} on {first['owner_host']}, started {_utc_text(first['started_at'])}); "
                  "this run goes on when it ends and reuses its finished runs (Ctrl-C stops; --campaign NAME "
                  "measures apart)", soft_wrap=True)
    while ahead:
        time.sleep(WAIT_POLL_S)
        ahead = store.executions_ahead(execution)
    console.print(f"  waited {time.monotonic() - t0:.0f} s for execution {first['id']}")


def _utc_text(value) -> str:
    from driftlab.report.history import utc_text

    return utc_text(value)


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
