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

from driftlab.config import ExperimentConfig, canonical_json, config_hash, load_config_text
from driftlab.profiles import ResolvedProfiles, apply_env, profile_json, resolve_profiles
from driftlab.runspec import RunSpec
from driftlab.seedplan import SeedPoint, check_cap, node_points, seed_points


def is_local() -> bool:
    # On a cluster the pipeline sets DRIFTLAB_WHERE=cluster on every task.
    return os.environ.get("DRIFTLAB_WHERE", "local") != "cluster"


def load(config_text: str) -> ExperimentConfig:
    return load_config_text(config_text, "experiment")


def _store(config: ExperimentConfig):
    from driftlab.store import Store

    return Store.from_config(config)


def prepare(config_text: str, campaign: str) -> dict[str, Any]:
    """Validate everything, create the study, and return what the pipeline fans out over."""
    from driftlab import tuning

    config = load(config_text)
    profiles = resolve_profiles(config, local=is_local())
    total = check_cap(config.seeds, len(profiles.runnable))
    store = _store(config)
    store.experiment_id(config.name)
    study = tuning.create_study(config, campaign) if config.search_space else None
    others = [p.name for p in profiles.runnable if p.name != profiles.reference.name]
    return {
        "study": study,
        "workers": list(range(config.tuning.workers)) if config.search_space else [],
        "reference": profiles.reference.name,
        "profiles": others,
        "skipped_profiles": [{"name": p.name, "reason": why} for p, why in profiles.skipped],
        "planned_runs": total,
    }


def node_tasks(config_text: str, best_params: dict[str, Any] | str) -> list[dict[str, Any]]:
    """One item per profile besides the reference, self-contained for a ParallelFor iteration."""
    config = load(config_text)
    profiles = resolve_profiles(config, local=is_local())
    params = hyperparameters(config, best_params)
    tuned = {k: v for k, v in params.items() if k in config.search_space}
    return [{"profile": p.name, "best_params": tuned, "node_selector": dict(p.node_selector),
             "tolerations": [t.model_dump(mode="json", exclude_none=True) for t in p.tolerations]}
            for p in profiles.runnable if p.name != profiles.reference.name]


def _seed_spec(config: ExperimentConfig, campaign: str, hparams: dict[str, Any], point: SeedPoint,
               profile: dict[str, Any], stage: str, data_digest: str) -> RunSpec:
    return RunSpec(
        experiment=config.name, campaign=campaign, dataset=config.dataset.model_dump(mode="json"),
        data_digest=data_digest, builder=config.model.builder, hparams=hparams,
        epochs=config.model.epochs, batch_size=config.model.batch_size, init_seed=point.init_seed,
        shuffle_seed=point.shuffle_seed, split_seed=point.split_seed, repeat=point.repeat,
        deterministic=point.deterministic, profile=profile, stage=stage)


def hyperparameters(config: ExperimentConfig, best_params: dict[str, Any] | str) -> dict[str, Any]:
    # kfp.local hands a dict from outside a ParallelFor to a task inside it as JSON text.
    if isinstance(best_params, str):
        best_params = json.loads(best_params) if best_params.strip() else {}
    return {**config.model.hyperparameters, **best_params}


def tune(config_text: str, campaign: str, worker_index: int) -> int:
    """One tuning worker: real Keras trials on the reference profile until the budget is met.

    Each trial trains with the seed plan's first seeds, reports the validation
    metric after every epoch (the pruner may stop it there) and returns the
    final one; a run that fails raises, so its trial is FAIL with the error.
    Returns the number of trials this worker ran (0 when the study is done: a
    re-run resumes, it never exceeds the budget).
    """
    import optuna

    from driftlab import datasets, tuning

    config = load(config_text)
    profiles = resolve_profiles(config, local=is_local())
    apply_env(profiles.reference)  # before TensorFlow is imported, in this process
    from driftlab import training

    digest = datasets.data_fingerprint(config.dataset)
    plan = config.seeds
    point = SeedPoint(plan.init[0], plan.shuffle[0], plan.split[0], 0, True)
    metric = config.metric

    def objective(trial: optuna.Trial) -> float:
        hp = hyperparameters(config, tuning.suggest(trial, config))
        spec = _seed_spec(config, campaign, hp, point, profile_json(profiles.reference), "tune", digest)

        def report(epoch: int, values: dict[str, float]) -> None:
            trial.report(values[metric], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch + 1}")

        record = training.train(spec, epoch_callback=report)
        if record["status"] != "ok":
            raise RuntimeError(record["error"])
        trial.set_user_attr("eval_" + metric, record["metrics"][f"eval_{metric}"])
        trial.set_user_attr("run_key", spec.key)
        return float(record["metrics"][f"val_{metric}"])

    return tuning.run_worker(config, campaign, worker_index, objective)


def select_best(config_text: str, campaign: str) -> dict[str, Any]:
    from driftlab import tuning

    config = load(config_text)
    if not config.search_space:
        return {"best_params": {}, "best_value": None, "study": None, "trials": []}
    return tuning.best(config, campaign)


def _run_specs(config: ExperimentConfig, campaign: str, best_params: dict[str, Any], profile,
               points: list[SeedPoint], stage: str) -> list[RunSpec]:
    from driftlab import datasets

    digest = datasets.data_fingerprint(config.dataset)
    hp = hyperparameters(config, best_params)
    return [_seed_spec(config, campaign, hp, p, profile_json(profile), stage, digest) for p in points]


def _execute(config: ExperimentConfig, specs: list[RunSpec], profile, *, jobs: int, quiet: bool,
             label: str) -> dict[str, Any]:
    from driftlab.executor import execute
    from driftlab.progress import run_progress

    store = _store(config)
    exp_id = store.experiment_id(config.name)
    done_before = len(store.done_keys(s.key for s in specs))
    with run_progress(len(specs), f"{label} · {profile.name}", completed=done_before, quiet=quiet) as advance:
        summary = execute(specs, profile, store, exp_id, jobs=jobs, progress=advance,
                          log_dir=os.environ.get("DRIFTLAB_LOG_DIR"))
    if summary.failed:
        print(f"{summary.failed} run(s) failed on {profile.name}:", file=sys.stderr)
        for line in summary.errors[:10]:
            print(f"  {line}", file=sys.stderr)
    return {"profile": profile.name, "planned": summary.planned, "skipped": summary.skipped,
            "trained": summary.trained, "failed": summary.failed, "seconds": round(summary.seconds, 2)}


def default_jobs() -> int:
    """Worker processes per stage: DRIFTLAB_JOBS, else one per CPU core (profiles pin 1 thread each)."""
    configured = os.environ.get("DRIFTLAB_JOBS", "").strip()
    return max(1, int(configured) if configured else (os.cpu_count() or 1))


def retrain_seeds(config_text: str, campaign: str, best_params: dict[str, Any], *,
                  jobs: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """The full seed plan on the reference profile, determinism on and off."""
    config = load(config_text)
    profiles = resolve_profiles(config, local=is_local())
    specs = _run_specs(config, campaign, best_params, profiles.reference, seed_points(config.seeds), "seeds")
    return _execute(config, specs, profiles.reference, jobs=jobs or default_jobs(), quiet=quiet,
                    label="retrain across seeds")


def retrain_node(config_text: str, campaign: str, best_params: dict[str, Any], profile_name: str, *,
                 jobs: int | None = None, quiet: bool = False) -> dict[str, Any]:
    """The deterministic seed runs on one more profile (node pool)."""
    config = load(config_text)
    profiles = resolve_profiles(config, local=is_local())
    profile = profiles.by_name(profile_name)
    specs = _run_specs(config, campaign, best_params, profile, node_points(config.seeds), "nodes")
    return _execute(config, specs, profile, jobs=jobs or default_jobs(), quiet=quiet,
                    label="retrain across nodes")


def aggregate(config_text: str, campaign: str, out_dir: str, tuning_summary: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    """Read the campaign's run records, compute drift, write the reports, gate."""
    from driftlab import report
    from driftlab.drift import analyze, headline_metrics

    config = load(config_text)
    profiles: ResolvedProfiles = resolve_profiles(config, local=is_local())
    store = _store(config)
    records = store.load_runs(config.name, campaign)
    result = analyze(records, config, reference=profiles.reference.name)
    result["experiment"] = {"name": config.name, "campaign": campaign, "config_hash": config_hash(config),
                            "task": config.task, "metric": config.metric,
                            "skipped_profiles": [{"name": p.name, "reason": why} for p, why in profiles.skipped]}
    if tuning_summary:
        result["tuning"] = {k: v for k, v in tuning_summary.items() if k != "trials"}
    paths = report.write_all(result, out_dir)
    store.save_report(config.name, campaign, result["gate"]["status"], result)
    return {"paths": paths, "gate": result["gate"]["status"], "summary": result["summary"],
            "metrics": headline_metrics(result)}


def config_record(config_text: str) -> tuple[str, str, str]:
    config = load(config_text)
    return config.name, config_hash(config), canonical_json(config)


def dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)
