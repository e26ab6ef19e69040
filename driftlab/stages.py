"""The pipeline's stages as plain functions: what each KFP component calls.

Every stage takes the experiment file's text (the same string the pipeline
carries as a parameter) and a campaign name, validates the file again (a
component may run on another machine), and reads or writes the results store
whose URL comes from the environment, never from a parameter.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from driftlab.contracts import (NodeItem, PreparedPlan, StageSummary, node_item_from_kfp, to_kfp,
                                tuning_summary_from_kfp as typed_tuning_summary)
from driftlab.config import ExperimentConfig, canonical_json, config_hash, load_config_text, plan_hash
from driftlab.config.profiles import (CLUSTER, LOCAL, ResolvedProfiles, check_here, profile_json,
                                      profiles_for)
from driftlab.runs.spec import RunSpec
from driftlab.config.seedplan import SeedPoint, check_cap, node_points, seed_points
from driftlab import settings


def where() -> str:
    """``cluster`` in a Pod of the compiled pipeline (it sets DRIFTLAB_WHERE on every task), else ``local``."""
    return CLUSTER if settings.WHERE.get() == CLUSTER else LOCAL


def is_local() -> bool:
    return where() == LOCAL


def _profiles(config: ExperimentConfig) -> ResolvedProfiles:
    """Which profiles run: one rule for every stage (``profiles_for``)."""
    return profiles_for(config, where())


def load(config_text: str) -> ExperimentConfig:
    return load_config_text(config_text, "experiment")


def _store(config: ExperimentConfig):
    from driftlab.storage.store import Store

    return Store.from_config(config)


NO_PROFILE = ""  # the placeholder loop item of an experiment with a single profile
LOCAL_LOOP_CONCURRENCY = 2  # kfp.local runs at most this many ParallelFor iterations at once


def _tune_tasks(config: ExperimentConfig) -> list[int]:
    """The tune loop's items: one per worker on a cluster; locally what kfp.local runs at once."""
    if not config.search_space or config.tuning.study:
        return [0]  # one placeholder task that returns at once (no trial, no TensorFlow)
    workers = config.tuning.workers
    return list(range(workers if not is_local() else min(workers, LOCAL_LOOP_CONCURRENCY)))


def prepare(config_text: str, campaign: str) -> PreparedPlan:
    """Validate everything, create the study, and return what the pipeline fans out over."""
    from driftlab import tuning

    config = load(config_text)
    profiles = _profiles(config)
    total = check_cap(config.seeds, len(profiles.runnable))
    store = _store(config)
    store.experiment_id(config.name)
    from driftlab.storage.campaigns import check_campaign

    check_campaign(store, config, campaign)  # a campaign measures one plan: refuse a changed file
    if config.tuning.study:
        # An existing study is read, never tuned: fail here, before any training, if it cannot be used.
        study = tuning.load_existing(config)["study"]
    else:
        study = tuning.create_study(config, campaign) if config.search_space else None
    others = [p.name for p in profiles.runnable if p.name != profiles.reference.name]
    return PreparedPlan(**{
        "study": study,
        # Never an empty list: kfp.local cannot collect the outputs of an empty ParallelFor.
        # Without a search space one worker runs and returns at once (no trial, no TensorFlow).
        "workers": _tune_tasks(config),
        "reference": profiles.reference.name,
        "profiles": others,
        "skipped_profiles": [{"name": p.name, "reason": why} for p, why in profiles.skipped],
        "planned_runs": total,
    })


def node_tasks(config_text: str, best_params: dict[str, Any] | str) -> list[NodeItem]:
    """The retrain-across-nodes loop items: one per (profile besides the reference, shard).

    Each item is self-contained for a ParallelFor iteration: ``profile``,
    ``best_params``, placement (``kind``, ``node_selector``, ``tolerations``,
    ``accelerator_type`` / ``accelerator_count`` (empty / 0: none),
    ``cpu_request`` / ``memory_request``, ``tf32``; each left out when unset)
    and the shard it trains (``shard_index`` of ``shard_count``,
    ``runs``). Locally GPU pools are left out (skipped with a notice by
    ``driftlab validate``/``run``) and there is one shard per profile; on a
    cluster every pool is listed, ISA caps are checked by the task on its own
    node, and a profile's runs are split into shards of about
    ``DRIFTLAB_RUNS_PER_SHARD`` (32) runs, one pod each.

    Args:
        config_text: The experiment file's text.
        best_params: Tuned hyperparameters (a dict, or its JSON text).

    Returns:
        The loop items, profiles in config order, shards in index order.
    """
    from driftlab.config.seedplan import shard_count

    config = load(config_text)
    local = is_local()
    profiles = _profiles(config)
    from driftlab.config import params

    tuned = params.encode_typed(config, best_params)  # JSON text: ints stay ints in a loop item
    n_runs = len(node_points(config.seeds))
    items: list[NodeItem] = []
    for p in profiles.runnable:
        if p.name == profiles.reference.name:
            continue
        count = shard_count(n_runs, local=local, configured=p.shards)
        for index in range(count):
            items.append({
                "profile": p.name, "best_params": tuned, "kind": p.kind,
                "node_selector": dict(p.node_selector),
                "tolerations": [t.model_dump(mode="json", exclude_none=True) for t in p.tolerations],
                "accelerator_type": p.accelerator.type if p.accelerator else "",
                "accelerator_count": p.accelerator.count if p.accelerator else 0,
                "cpu_request": p.cpu_request, "memory_request": p.memory_request, "tf32": p.tf32,
                "shard_index": index, "shard_count": count,
                "runs": len(range(index, n_runs, count)),
            })
    if not items:
        # Never an empty loop (kfp.local cannot collect an empty ParallelFor's outputs): one
        # item naming no profile, which retrain_node answers at once without training.
        items.append({"profile": NO_PROFILE, "best_params": tuned, "kind": "cpu", "node_selector": {},
                      "tolerations": [], "accelerator_type": "", "accelerator_count": 0,
                      "shard_index": 0, "shard_count": 1, "runs": 0})
    # kfp.local refuses a loop item holding None ("Value must be one of ... Got None"): unset fields are left out.
    return [to_kfp(item) for item in items]


def seed_tasks(config_text: str, best_params: dict[str, Any] | str = "{}") -> list[dict[str, Any]]:
    """The retrain-across-seeds loop items: one per shard of the seed plan (one pod each).

    ``seeds.shards`` sets the count; unset, one shard per ``DRIFTLAB_RUNS_PER_SHARD`` runs
    on a cluster and one locally (``seedplan.shard_count``). Each item is
    ``{best_params, shard_index, shard_count, runs}``, self-contained like the node items
    (kfp.local hands a loop task the item's fields, not a parameter from outside the loop).
    A shard that a retried pod trains again skips the runs already recorded.
    """
    from driftlab.config import params
    from driftlab.config.seedplan import shard_count

    config = load(config_text)
    tuned = params.encode_typed(config, best_params)
    n_runs = len(seed_points(config.seeds))
    count = shard_count(n_runs, local=is_local(), configured=config.seeds.shards)
    return [{"best_params": tuned, "shard_index": i, "shard_count": count, "runs": len(range(i, n_runs, count))}
            for i in range(count)]


def _seed_spec(config: ExperimentConfig, campaign: str, hparams: dict[str, Any], point: SeedPoint,
               profile: dict[str, Any], stage: str, data_digest: str) -> RunSpec:
    return RunSpec(
        experiment=config.name, campaign=campaign, dataset=config.dataset.model_dump(mode="json"),
        data_digest=data_digest, builder=config.model.builder, hparams=hparams,
        epochs=config.model.epochs, batch_size=config.model.batch_size, init_seed=point.init_seed,
        shuffle_seed=point.shuffle_seed, split_seed=point.split_seed, repeat=point.repeat,
        deterministic=point.deterministic, profile=profile, stage=stage, plan=plan_hash(config))


def hyperparameters(config: ExperimentConfig, best_params: dict[str, Any] | str) -> dict[str, Any]:
    """Fixed plus tuned hyperparameters, typed as declared (see ``driftlab.config.params``)."""
    from driftlab.config import params

    return params.hyperparameters(config, best_params)


def tune_worker_indices(config: ExperimentConfig, task_index: int) -> list[int]:
    """The tuning workers one tune task runs: its own index on a cluster (one pod each).

    Locally kfp.local runs at most ``LOCAL_LOOP_CONCURRENCY`` loop iterations at once, so
    ``prepare`` lists that many tune tasks and each runs every ``LOCAL_LOOP_CONCURRENCY``-th
    worker index in its own thread and trial process: ``tuning.workers`` trials run at once
    either way.
    """
    if not is_local():
        return [task_index]
    tasks = min(config.tuning.workers, LOCAL_LOOP_CONCURRENCY)
    return list(range(task_index, config.tuning.workers, tasks))


def tune(config_text: str, campaign: str, worker_index: int) -> int:
    """One tune task: real Keras trials on the reference profile until the budget is met.

    Each trial trains with the seed plan's first seeds in a worker process that holds no
    database credential (``tuning.trial_worker``), reports the validation metric after
    every epoch (the pruner may stop it there) and returns the final one; a run that
    fails or times out raises, so its trial is FAIL with the error. Locally one task runs
    several tuning workers (``tune_worker_indices``). Returns the number of trials this
    task ran (0 when the study is done: a re-run resumes, it never exceeds the budget).
    """
    from concurrent.futures import ThreadPoolExecutor

    from driftlab.runs import datasets
    from driftlab.runs.timeouts import RunTimeout
    from driftlab.storage.secret_env import hide_from_proc
    from driftlab import tuning
    from driftlab.tuning.trial_worker import TrialWorker, keras_objective

    config = load(config_text)
    if not config.search_space or config.tuning.study:
        return 0  # nothing to tune (or an existing study): the placeholder worker of prepare()
    hide_from_proc()  # the trial processes are children of this one
    profiles = _profiles(config)
    check_here(profiles.reference, local=is_local())  # trials train here: this node must honour the reference
    digest = datasets.data_fingerprint(config.dataset)
    plan = config.seeds
    point = SeedPoint(plan.init[0], plan.shuffle[0], plan.split[0], 0, True)
    reference = profile_json(profiles.reference)
    timeout = RunTimeout(config.model.run_timeout_s, config.model.epochs)
    indices = tune_worker_indices(config, worker_index)
    if len(indices) > 1 or config.tuning.workers > 1:
        print(f"[driftlab] tune task {worker_index}: tuning worker(s) {', '.join(map(str, indices))} of "
              f"{config.tuning.workers} (tuning.workers), each with its own trial process", file=sys.stderr, flush=True)

    def spec_for(params: dict[str, Any]) -> RunSpec:
        return _seed_spec(config, campaign, hyperparameters(config, params), point, reference, "tune", digest)

    def one(index: int) -> int:
        worker = TrialWorker(profiles.reference, index, settings.LOG_DIR.raw())
        try:
            return tuning.run_worker(config, campaign, index, keras_objective(config, worker, spec_for, timeout))
        finally:
            worker.close()

    if len(indices) == 1:
        return one(indices[0])
    with ThreadPoolExecutor(len(indices)) as pool:
        return sum(pool.map(one, indices))


def select_best(config_text: str, campaign: str) -> dict[str, Any]:
    from driftlab import tuning

    config = load(config_text)
    if config.tuning.study:
        return tuning.load_existing(config)  # source: {"kind": "existing-study", ...}
    if not config.search_space:
        return {"best_params": {}, "best_value": None, "study": None, "trials": [], "source": {"kind": "none"}}
    return tuning.best(config, campaign)  # source: {"kind": "driftlab", ...}


def select_best_for_kfp(config_text: str, campaign: str, trials_per_worker: list | None = None
                        ) -> tuple[str, str]:
    """``select_best`` as the select_best component hands it on: two JSON texts (best_params, tuning).

    JSON text, not KFP dicts: a dict output is a protobuf Struct, which turns every int into a
    float (``units: 27.0``, ``trial 1.0``). The best parameters carry the kind of each value
    (declared in ``search_space``, else the type the study gave), so every later task can type them.
    """
    from driftlab.config import params

    config = load(config_text)
    best = select_best(config_text, campaign)
    values = dict(best.get("best_params") or {})
    summary = to_kfp({k: v for k, v in best.items() if k != "trials"})
    summary["trials_per_worker"] = [int(n) for n in (trials_per_worker or [])]
    if best.get("best_value") is not None:
        print(f"[driftlab] best {best.get('best_value')} (trial {best.get('best_trial')}): {values}", flush=True)
    from driftlab.contracts import MAX_PARAMS_TEXT, TooLargeForTask, bounded_tuning_summary, escaped_size

    encoded = params.encode_typed(config, values)
    if escaped_size(encoded) > MAX_PARAMS_TEXT:  # it travels to every retrain task, beside the config text
        raise TooLargeForTask(f"best_params: the best trial's parameters take {escaped_size(encoded):,} bytes as a "
                              f"pipeline-task parameter, more than the {MAX_PARAMS_TEXT:,} allowed; tune fewer or "
                              "shorter parameters (a long categorical choice travels whole)")
    # Both texts travel as task parameters: the tuning summary's top-k table is cut to fit its share.
    return encoded, bounded_tuning_summary(summary, keep=config.tuning.retrain_top_k)


def _run_specs(config: ExperimentConfig, campaign: str, best_params: dict[str, Any], profile,
               points: list[SeedPoint], stage: str) -> list[RunSpec]:
    """One run spec per seed point on ``profile``, in plan order."""
    from driftlab.runs import datasets

    digest = datasets.data_fingerprint(config.dataset)
    hp = hyperparameters(config, best_params)
    return [_seed_spec(config, campaign, hp, p, profile_json(profile), stage, digest) for p in points]


def _execute(config: ExperimentConfig, specs: list[RunSpec], profile, *, jobs: int, quiet: bool,
             label: str, plan_line: str = "") -> StageSummary:
    """Announce the plan, train what is not recorded yet, and summarise.

    The announcement (planned runs, already recorded, to train, workers) is
    printed before any worker starts, so a person sees the size of the work
    first. On Ctrl-C every finished run is kept and the stage exits with a
    message saying how to resume.
    """
    from driftlab.runs.executor import execute
    from driftlab.runs.progress import run_progress

    store = _store(config)
    exp_id = store.experiment_id(config.name)
    done_before = len(store.done_keys(s.key for s in specs))
    todo = len(specs) - done_before
    workers = max(1, min(jobs, todo)) if todo else 0
    title = f"{label} · {profile.name}"
    print(f"[driftlab] {title}: {len(specs)} runs planned{f' ({plan_line})' if plan_line else ''}; "
          f"{done_before} already recorded, {todo} to train on {workers} worker(s)", file=sys.stderr, flush=True)
    try:
        with run_progress(len(specs), title, completed=done_before, quiet=quiet) as advance:
            summary = execute(specs, profile, store, exp_id, jobs=jobs, progress=advance,
                              log_dir=settings.LOG_DIR.raw(), run_timeout_s=config.model.run_timeout_s)
    except KeyboardInterrupt:
        kept = len(store.done_keys(s.key for s in specs))
        print(f"[driftlab] {title}: interrupted; {kept}/{len(specs)} runs recorded and kept. "
              "Run the same stage again to train the rest.", file=sys.stderr, flush=True)
        raise
    if summary.failed:
        # One block per distinct failure (first line + the user's frames), every line tagged so
        # the local terminal shows it (local_run.SHOWN); a KFP task log shows the same text.
        from driftlab.runs import failures

        groups = failures.group(summary.errors)
        for head, count, example in groups[:5]:
            print(f"[driftlab] {title}: {count} run(s) failed: {head}", file=sys.stderr)
            for line in example.splitlines()[1:]:
                print(f"[driftlab]   {line.strip()}", file=sys.stderr)
        if len(groups) > 5:
            print(f"[driftlab] {title}: {sum(c for _, c, _ in groups[5:])} more failed run(s) with "
                  f"{len(groups) - 5} other error(s)", file=sys.stderr)
        log_dir = settings.LOG_DIR.raw()
        if log_dir:  # set by `driftlab run` (local_run), with the pipeline's own log file
            print(f"[driftlab] full log: {settings.LOG_FILE.raw() or log_dir}", file=sys.stderr)
            workers_log = os.path.join(log_dir, f"worker-{profile.name}-{os.getpid()}-*.log")  # executor._Pool
            print(f"[driftlab] full tracebacks: {workers_log}", file=sys.stderr)
        sys.stderr.flush()
    return StageSummary(profile=profile.name, planned=summary.planned, skipped=summary.skipped,
                        trained=summary.trained, failed=summary.failed, seconds=round(summary.seconds, 2),
                        workers=summary.workers)


def default_jobs(profile=None) -> int:
    """Worker processes per stage: DRIFTLAB_JOBS, else what the machine holds for this profile.

    CPU profiles: the CPUs this process may use (affinity and a pod's cgroup
    quota) divided by the profile's intra-op threads, so parallel workers never
    oversubscribe the cores. GPU profiles: one worker per GPU of the pool.
    """
    from driftlab.settings import positive_int
    from driftlab.runs.executor import available_cpus

    configured = positive_int(settings.JOBS.name, example=2)
    if configured:
        return configured
    if profile is not None and profile.kind == "gpu":
        return profile.accelerator.count if profile.accelerator else 1
    threads = profile.intra_op_threads if profile is not None else 1
    return max(1, available_cpus() // threads)


def retrain_seeds(config_text: str, campaign: str, best_params: dict[str, Any] | str, *,
                  jobs: int | None = None, quiet: bool = False, shard_index: int = 0, shard_count: int = 1
                  ) -> StageSummary:
    """The full seed plan on the reference profile, determinism on and off.

    Args:
        config_text: The experiment file's text.
        campaign: Campaign name; runs already recorded under it are skipped.
        best_params: Tuned hyperparameters (a dict, or its JSON text).
        jobs: Worker processes (default: ``default_jobs``).
        quiet: Plain progress lines instead of a bar (pipelines).
        shard_index: Which shard of the plan this task trains (0-based).
        shard_count: How many shards the plan is split into (one pod each on a cluster).

    Returns:
        Counts: profile, planned, skipped (already recorded), trained, failed, seconds, workers.
    """
    from driftlab.config.seedplan import describe, shard

    config = load(config_text)
    local = is_local()
    profiles = _profiles(config)
    check_cap(config.seeds, len(profiles.runnable))
    points = shard(seed_points(config.seeds), shard_index, shard_count)
    check_here(profiles.reference, local=local)
    specs = _run_specs(config, campaign, best_params, profiles.reference, points, "seeds")
    plan_line = describe(config.seeds) + (f"; shard {shard_index + 1}/{shard_count}" if shard_count > 1 else "")
    return _execute(config, specs, profiles.reference, jobs=jobs or default_jobs(profiles.reference),
                    quiet=quiet, label="retrain across seeds", plan_line=plan_line)


TOP_K_STAGE = "topk"  # run rows of runner-up configurations: compared with each other, never with drift


def retrain_top_k(config_text: str, campaign: str, tuning_summary: dict[str, Any] | str | None, *,
                  jobs: int | None = None, quiet: bool = False) -> StageSummary:
    """The runner-up configurations (2..``tuning.retrain_top_k``) over the init × shuffle seed points.

    The best configuration's runs at those points come from retrain-across-seeds; these runs
    (stage ``topk``) feed only the P(A beats B) table, never the drift statistics.
    """
    from driftlab.config import params
    from driftlab.config.seedplan import top_k_points

    config = load(config_text)
    k = config.tuning.retrain_top_k
    summary = typed_tuning_summary(tuning_summary) or {}
    ranked = list(summary.get("top_k_params") or [])[:k]
    profiles = _profiles(config)
    if k <= 1 or len(ranked) < 2:
        why = "tuning.retrain_top_k is 1" if k <= 1 else "fewer than 2 finished trials to compare"
        return StageSummary(profile=profiles.reference.name, planned=0, skipped=0, trained=0, failed=0,
                            seconds=0.0, workers=0, skipped_profile=why)
    check_here(profiles.reference, local=is_local())
    points = top_k_points(config.seeds)
    specs = [spec for hp in ranked[1:] for spec in
             _run_specs(config, campaign, params.encode_typed(config, hp),
                        profiles.reference, points, TOP_K_STAGE)]
    return _execute(config, specs, profiles.reference, jobs=jobs or default_jobs(profiles.reference), quiet=quiet,
                    label="retrain top-k", plan_line=f"configurations 2–{len(ranked)} × {len(points)} seed points")


def retrain_node(config_text: str, campaign: str, best_params: dict[str, Any] | str, profile_name: str, *,
                 jobs: int | None = None, quiet: bool = False, shard_index: int = 0, shard_count: int = 1
                 ) -> StageSummary:
    """The deterministic seed runs on one more profile (node pool).

    A GPU pool reached locally is skipped with a notice (nothing trains); a
    profile this node cannot honour fails before any training.

    Args:
        config_text: The experiment file's text.
        campaign: Campaign name; runs already recorded under it are skipped.
        best_params: Tuned hyperparameters (a dict, or its JSON text).
        profile_name: The profile (node pool) to run on.
        jobs: Worker processes (default: ``default_jobs``).
        quiet: Plain progress lines instead of a bar (pipelines).
        shard_index: Which shard of the node runs this task trains (0-based).
        shard_count: How many shards (pods) the profile's runs are split into.

    Returns:
        Counts as ``retrain_seeds``; a skipped profile returns ``skipped_profile`` with the reason.
    """
    from driftlab.config.seedplan import describe, shard

    if profile_name == NO_PROFILE:
        return StageSummary(profile=NO_PROFILE, planned=0, skipped=0, trained=0, failed=0, seconds=0.0, workers=0,
                            skipped_profile="the experiment has a single profile")
    config = load(config_text)
    local = is_local()
    profiles = _profiles(config)
    reason = profiles.skip_reason(profile_name)
    if reason is not None and profile_name != profiles.reference.name:
        print(f"[driftlab] retrain across nodes · {profile_name}: skipped — {reason}", file=sys.stderr, flush=True)
        return StageSummary(profile=profile_name, planned=0, skipped=0, trained=0, failed=0, seconds=0.0, workers=0,
                            skipped_profile=reason)
    profile = profiles.by_name(profile_name)
    check_cap(config.seeds, len(profiles.runnable))
    points = shard(node_points(config.seeds), shard_index, shard_count)
    check_here(profile, local=local)
    specs = _run_specs(config, campaign, best_params, profile, points, "nodes")
    plan_line = describe(config.seeds, nodes=True) + (f"; shard {shard_index + 1}/{shard_count}"
                                                       if shard_count > 1 else "")
    if jobs is None and local and not settings.JOBS.raw():
        # kfp.local runs LOCAL_LOOP_CONCURRENCY node tasks at once on this one machine: share
        # its cores between them instead of each starting a worker per core (fewer TensorFlow
        # imports, no oversubscription, more runs per worker for traced-model reuse).
        siblings = min(LOCAL_LOOP_CONCURRENCY, max(1, len(profiles.runnable) - 1))
        jobs = max(1, default_jobs(profile) // siblings)
    return _execute(config, specs, profile, jobs=jobs or default_jobs(profile), quiet=quiet,
                    label="retrain across nodes", plan_line=plan_line)


def aggregate(config_text: str, campaign: str, out_dir: str, tuning_summary: dict[str, Any] | str | None = None
              ) -> dict[str, Any]:
    """Read the campaign's run records, compute drift, write the reports, gate."""
    from driftlab import report
    from driftlab.drift import analyze, headline_metrics

    config = load(config_text)
    profiles: ResolvedProfiles = _profiles(config)
    store = _store(config)

    def campaign_runs(*, top_k: bool = False):  # this plan's runs, read again each time, their arrays left stored
        return (r for r in store.iter_runs(config.name, campaign, plan=plan_hash(config), with_spec=top_k)
                if top_k or r.get("stage") != TOP_K_STAGE)  # runner-ups never enter drift statistics

    from driftlab.inputs import byte_limit

    result = analyze(campaign_runs(), config, reference=profiles.reference.name, profiles=profiles.names(),
                     arrays=store, block_bytes=byte_limit(settings.AGGREGATE_BLOCK_BYTES))
    result["experiment"] = {"name": config.name, "campaign": campaign, "config_hash": config_hash(config),
                            "plan_hash": plan_hash(config),
                            "task": config.task, "metric": config.metric,
                            "skipped_profiles": [{"name": p.name, "reason": why} for p, why in profiles.skipped]}
    tuning_summary = typed_tuning_summary(tuning_summary)
    if tuning_summary:
        result["tuning"] = {k: v for k, v in tuning_summary.items() if k != "trials"}
        from driftlab.drift.optimism import attach

        attach(result, campaign_runs())  # the best trial's value against retraining it (report.json "optimism")
        if config.tuning.retrain_top_k > 1:
            from driftlab.drift.topk import attach_top_k

            attach_top_k(result, campaign_runs(top_k=True), config, reference=profiles.reference.name)
    paths = report.write_all(result, out_dir)
    store.save_report(config.name, campaign, result["gate"]["status"], result)
    return {"paths": paths, "gate": result["gate"]["status"], "summary": result["summary"],
            "metrics": headline_metrics(result)}


def config_record(config_text: str) -> tuple[str, str, str]:
    config = load(config_text)
    return config.name, config_hash(config), canonical_json(config)


def retrain_node_item(config_text: str, campaign: str, node: dict[str, Any] | str) -> StageSummary:
    """``retrain_node`` for one loop item as KFP delivered it (``contracts.node_item_from_kfp``)."""
    item = node_item_from_kfp(node)
    return retrain_node(config_text, campaign, item["best_params"], item["profile"], quiet=True,
                        shard_index=item["shard_index"], shard_count=item["shard_count"])


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
