"""``analyze``: run records in, the report body (a JSON-ready dict) out."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

import numpy as np

from driftlab.drift import gate, stats
from driftlab.drift.determinism import determinism_stats
from driftlab.drift.hardware import disagreement_matrix, profile_stats, versions
from driftlab.drift.runs import Run, finished_runs
from driftlab.drift.sources import SOURCES, comparison_mode, seed_noise, source_groups, source_stats
from driftlab.drift.summary import summarize
from driftlab.drift.variance import decompose

SCHEMA = "driftlab.report/2"
MAX_CURVES = 8  # loss curves kept per source for the report's plot


def _curves(runs: Sequence[Run], *, reference: str, mode: bool) -> dict[str, list[dict[str, Any]]]:
    """Loss curves of the first group of each source, labelled by what differs."""
    out: dict[str, list[dict[str, Any]]] = {}
    label = {"init": lambda r: f"init {r.init_seed}", "shuffle": lambda r: f"shuffle {r.shuffle_seed}",
             "split": lambda r: f"split {r.split_seed}", "nondeterminism": lambda r: f"repeat {r.repeat}",
             "hardware": lambda r: r.profile}
    for source in SOURCES:
        groups = source_groups(runs, source, reference, mode)
        if groups:
            out[source] = [{"label": label[source](r), "loss": [float(x) for x in r.loss]}
                           for r in groups[0][:MAX_CURVES]]
    return out


def analyze(records: Iterable[dict[str, Any]], config: Any, *, reference: str) -> dict[str, Any]:
    """Drift statistics of one campaign's run records.

    Args:
        records: Run records (``Store.load_runs`` dicts, arrays included).
        config: The ``ExperimentConfig`` (task, metric, tolerances).
        reference: Name of the reference profile.

    Returns:
        The report body; schema ``driftlab.report/2`` (docs/report-schema.md).
    """
    records = list(records)
    task, metric = config.task, config.metric
    runs = finished_runs(records, task)
    ref = [r for r in runs if r.profile == reference]
    mode = comparison_mode(runs)
    metric_names = sorted({m for r in ref for m in r.metrics}) or [metric]
    status = Counter(r.get("status") for r in records)
    common = dict(reference=reference, mode=mode, metric=metric, task=task)
    sources = {s: source_stats(runs, s, metric_names=metric_names, **common) for s in SOURCES}
    seed = seed_noise(runs, sources, reference=reference, mode=mode, metric=metric)
    hardware = profile_stats(runs, metric_names=metric_names, seed=seed, **common)
    profiles = [reference] + sorted({r.profile for r in runs} - {reference})
    n_eval = ref[0].n_eval if ref else 0
    mean_metric = float(np.mean([r.metrics[metric] for r in ref if metric in r.metrics])) if ref else None
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "task": task,
        "counts": {"runs": len(records), "ok": status.get("ok", 0), "failed": status.get("failed", 0),
                   "diverged": status.get("diverged", 0), "reference_runs": len(ref),
                   "by_profile": dict(sorted(Counter(r.profile for r in runs).items()))},
        "reference": reference,
        "comparison_mode": "deterministic" if mode else "nondeterministic",
        "metric": {"name": metric, "all": metric_names, "mean": mean_metric, "n_eval": n_eval,
                   "noise_floor": stats.noise_floor(mean_metric, n_eval) if metric == "accuracy" else None},
        "sources": sources,
        "seed_noise": seed,
        "variance": decompose(runs, reference=reference, mode=mode, metric=metric, sources=sources),
        "determinism": determinism_stats(runs, reference=reference, metric=metric, task=task),
        "hardware": hardware,
        "disagreement_matrix": disagreement_matrix(runs, mode=mode, task=task, profiles=profiles),
        "curves": _curves(runs, reference=reference, mode=mode),
        "profiles": profiles,
        "versions": {p: versions(next(r.fingerprint for r in runs if r.profile == p)) for p in profiles
                     if any(r.profile == p for r in runs)},
        "budgets": config.tolerances.model_dump(mode="json"),
    }
    result["gate"] = gate.evaluate(config.tolerances, result, task=task)
    result["summary"] = summarize(result)
    return result
