"""``analyze``: run records in, the report body (a JSON-ready dict) out.

Records are read once, into light runs (scalars; arrays only where the records hold them);
every group of runs the statistics compare is then measured block by block
(``driftlab.drift.stream``), so records read without their arrays (``Store.iter_runs``) need
only one block's arrays in memory at a time.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from functools import partial
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from driftlab.drift import gate, stats
from driftlab.drift.churn import example_stats
from driftlab.drift.comparisons import wanted_groups
from driftlab.drift.determinism import determinism_stats
from driftlab.drift.floors import apply_regression_floor
from driftlab.drift.hardware import disagreement_matrix, profile_stats, versions
from driftlab.drift.helpers import Helpers
from driftlab.drift.memo import remembering
from driftlab.drift.runs import Run, from_record
from driftlab.drift.sources import SOURCES, comparison_mode, seed_noise, source_groups, source_stats
from driftlab.drift.stream import BLOCK_BYTES, measure_all
from driftlab.drift.summary import summarize
from driftlab.drift.variance import decompose

SCHEMA = "driftlab.report/2"
MAX_CURVES = 8  # loss curves kept per source for the report's plot


def _point(run: Run) -> tuple:
    return (run.init_seed, run.shuffle_seed, run.split_seed, run.repeat, run.profile, not run.deterministic)


def _curves(runs: Sequence[Run], *, reference: str, mode: bool) -> dict[str, list[dict[str, Any]]]:
    """Loss curves of the first group of each source, labelled by what differs."""
    out: dict[str, list[dict[str, Any]]] = {}
    label = {"init": lambda r: f"init {r.init_seed}", "shuffle": lambda r: f"shuffle {r.shuffle_seed}",
             "split": lambda r: f"split {r.split_seed}", "nondeterminism": lambda r: f"repeat {r.repeat}",
             "hardware": lambda r: r.profile}
    for source in SOURCES:
        groups = source_groups(runs, source, reference, mode)
        if groups:  # by seed point, not by run key (which holds the campaign): any campaign shows the same
            first = min(groups, key=lambda g: min(map(_point, g)))
            out[source] = [{"label": label[source](r), "loss": [float(x) for x in r.loss]}
                           for r in sorted(first, key=_point)[:MAX_CURVES]]
    return out


def plan_of(config: Any, profiles: Sequence[str]) -> dict[str, Any]:
    """What the experiment asked for: planned runs per profile and the sources it varies."""
    from driftlab.config.seedplan import count_points, node_points, planned_sources, planned_total

    n_nodes = len(node_points(config.seeds))
    return {"runs": planned_total(config.seeds, len(profiles)), "profiles": list(profiles),
            "by_profile": {p: (count_points(config.seeds) if i == 0 else n_nodes) for i, p in enumerate(profiles)},
            "sources_varied": planned_sources(config.seeds, len(profiles))}


def failures(records: Sequence[dict[str, Any]], *, limit: int = 10) -> list[dict[str, Any]]:
    """Failed runs grouped by distinct error (its first line), most frequent first."""
    groups: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("status") != "failed":
            continue
        text = str(r.get("error") or "unknown error (no message recorded)")
        first = text.strip().splitlines()[0] if text.strip() else text
        g = groups.setdefault(first, {"error": first, "count": 0, "detail": text, "profiles": set()})
        g["count"] += 1
        g["profiles"].add(str(r.get("profile")))
    ranked = sorted(groups.values(), key=lambda g: (-g["count"], g["error"]))[:limit]
    return [{**g, "profiles": sorted(g["profiles"])} for g in ranked]


def _mark_planned(sources: dict[str, Any], plan: dict[str, Any] | None) -> None:
    """A source the plan varies but whose runs gave no comparison says so (never "not varied")."""
    for name in (plan or {}).get("sources_varied", []):
        s = sources.get(name)
        if s is not None and not s.get("varied"):
            s["planned"] = True
            s["note"] = (f"planned, but too few of its runs finished to compare "
                         f"({'no second profile finished' if name == 'hardware' else 'its runs failed'})")


def _read(records: Iterable[dict[str, Any]], task: str, helpers: Helpers | None = None
          ) -> tuple[list[Run], Counter, list[dict[str, Any]]]:
    """One pass over the records: the finished runs, the count of each status, the failed records
    (``helpers`` started as soon as there are enough runs for them, while the rest are read)."""
    runs, status, failed = [], Counter(), []
    for r in records:
        status[r.get("status")] += 1
        if r.get("status") == "ok":
            runs.append(from_record(r, task))
            if helpers is not None and not len(runs) % 1024 and runs[-1].stored:
                helpers.expect(len(runs))
        elif r.get("status") == "failed":
            failed.append({k: r.get(k) for k in ("status", "error", "profile")})
    if helpers is not None and all(r.stored for r in runs):
        helpers.expect(len(runs))
    return runs, status, failed


def _aside(pool: ThreadPoolExecutor, helpers: Helpers | None, decompose_with: Callable[[Any], Any]) -> Future:
    """The variance decomposition: with helper processes, in ``pool``'s thread and its bootstrap in a helper (the
    comparisons that follow keep this process busy on one core); else here, at once."""
    if helpers is not None and helpers.started:
        return pool.submit(decompose_with, partial(helpers.call, "variance_draws"))
    done: Future = Future()
    done.set_result(decompose_with(None))
    return done


def analyze(records: Iterable[dict[str, Any]], config: Any, *, reference: str,
            profiles: Sequence[str] | None = None, arrays: Any = None,
            block_bytes: int = BLOCK_BYTES) -> dict[str, Any]:
    """Drift statistics of one campaign's run records.

    Args:
        records: Run records, read once: ``Store.load_runs`` dicts (arrays included), or
            ``Store.iter_runs`` dicts (arrays left in the store) with ``arrays``.
        config: The ``ExperimentConfig`` (task, metric, tolerances).
        reference: Name of the reference profile.
        profiles: The profiles the plan runs on, reference first; with them the
            report holds the plan and the gate can tell a measurement that did
            not happen (INCOMPLETE) from one that passed.
        arrays: Where records read without arrays have them: an object with
            ``iter_arrays(keys)`` (the ``Store``).
        block_bytes: About how many bytes of arrays are held at once (``stream``).

    Returns:
        The report body; schema ``driftlab.report/2`` (docs/report-schema.md).
    """
    with remembering():  # each grouping of the runs listed once (driftlab.drift.memo)
        return _analyze(records, config, reference=reference, profiles=profiles, arrays=arrays,
                        block_bytes=block_bytes)


def _analyze(records: Iterable[dict[str, Any]], config: Any, *, reference: str, profiles: Sequence[str] | None,
             arrays: Any, block_bytes: int) -> dict[str, Any]:
    task, metric = config.task, config.metric
    with (Helpers.for_arrays(arrays, task) or nullcontext()) as helpers, ThreadPoolExecutor(1) as aside:
        runs, status, failed = _read(records, task, helpers)
        mode = comparison_mode(runs)
        measured = measure_all(runs, wanted_groups(runs, reference=reference, mode=mode), task=task, arrays=arrays,
                               block_bytes=block_bytes, helpers=helpers)
        ref = [r for r in runs if r.profile == reference]
        metric_names = sorted({m for r in ref for m in r.metrics}) or [metric]
        common = dict(reference=reference, mode=mode, metric=metric, task=task)
        sources = {s: source_stats(runs, s, metric_names=metric_names, measured=measured, **common) for s in SOURCES}
        plan = plan_of(config, [reference] + [p for p in profiles if p != reference]) if profiles else None
        _mark_planned(sources, plan)
        variance = _aside(aside, helpers, lambda draw: decompose(runs, reference=reference, mode=mode, metric=metric,
                                                                  sources=sources, draw=draw))
        seed = seed_noise(runs, sources, reference=reference, mode=mode, metric=metric)
        hardware = profile_stats(runs, metric_names=metric_names, seed=seed, measured=measured, **common)
        for prof in (plan or {}).get("profiles", [])[1:]:  # a planned profile none of whose runs finished
            hardware.setdefault(prof, {"compared": 0, "note": "planned, but none of its runs finished"})
        determinism = determinism_stats(runs, reference=reference, metric=metric, task=task, measured=measured)
        profiles = [reference] + sorted({r.profile for r in runs} - {reference})
        matrix = disagreement_matrix(runs, mode=mode, task=task, profiles=profiles, measured=measured)
        examples = example_stats(runs, reference=reference, mode=mode, task=task, sources=sources, measured=measured)
        variance = variance.result()
    n_eval = ref[0].n_eval if ref else 0
    mean_metric = float(np.mean([r.metrics[metric] for r in ref if metric in r.metrics])) if ref else None
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "task": task,
        "counts": {"runs": sum(status.values()), "ok": status.get("ok", 0), "failed": status.get("failed", 0),
                   "diverged": status.get("diverged", 0), "reference_runs": len(ref),
                   "by_profile": dict(sorted(Counter(r.profile for r in runs).items())),
                   **({"planned": plan["runs"]} if plan else {})},
        "plan": plan,
        "failures": failures(failed),
        "reference": reference,
        "comparison_mode": "deterministic" if mode else "nondeterministic",
        "metric": {"name": metric, "all": metric_names, "mean": mean_metric, "n_eval": n_eval,
                   "noise_floor": stats.noise_floor(mean_metric, n_eval) if metric == "accuracy" else None},
        "sources": sources,
        "seed_noise": seed,
        "variance": variance,
        "determinism": determinism,
        "hardware": hardware,
        "disagreement_matrix": matrix,
        "curves": _curves(runs, reference=reference, mode=mode),
        "profiles": profiles,
        "versions": {p: versions(next(r.fingerprint for r in runs if r.profile == p)) for p in profiles
                     if any(r.profile == p for r in runs)},
        "budgets": config.tolerances.model_dump(mode="json"),
    }
    apply_regression_floor(result, runs, reference=reference, mode=mode, metric=metric)
    result.update(examples)
    result["gate"] = gate.evaluate(config.tolerances, result, task=task)
    result["summary"] = summarize(result)
    return result
