"""Drift statistics: how much each source of variation moves the result.

Inputs are run records from the store; output is a plain dict (the JSON
report's body). Every comparison is made between runs that differ in exactly
one source, so that an effect is never attributed to the wrong source.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

SOURCES = ("init", "shuffle", "split", "nondeterminism", "hardware")
SEED_FIELD = {"init": "init_seed", "shuffle": "shuffle_seed", "split": "split_seed"}
SEED_FIELDS = ("init_seed", "shuffle_seed", "split_seed")
LOSS_PART_TOLERANCE = 1e-6  # relative: loss curves "part" once they differ by more than this


def metric_of(record: dict[str, Any], metric: str) -> float:
    return float(record["metrics"][f"eval_{metric}"])


def disagreement(a: np.ndarray, b: np.ndarray, task: str) -> float:
    if task == "classification":
        return float(np.mean(np.argmax(a, axis=1) != np.argmax(b, axis=1)))
    return float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0


def first_parting_epoch(a: list[float], b: list[float], rel_tol: float = LOSS_PART_TOLERANCE) -> int | None:
    for epoch, (x, y) in enumerate(zip(a, b), start=1):
        if abs(x - y) > rel_tol * max(abs(x), abs(y), 1e-12):
            return epoch
    return None


def sd(values: list[float]) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


def pooled_sd(groups: list[list[float]]) -> float | None:
    """Within-group SD pooled over groups (each group varies only the source)."""
    num = sum((len(g) - 1) * np.var(g, ddof=1) for g in groups if len(g) >= 2)
    den = sum(len(g) - 1 for g in groups if len(g) >= 2)
    return float(math.sqrt(num / den)) if den else None


def bootstrap_ci(groups: list[list[float]], *, n_boot: int = 1000, seed: int = 0) -> list[float] | None:
    """95% percentile CI of the pooled SD, resampling runs within each group."""
    usable = [np.asarray(g, dtype=np.float64) for g in groups if len(g) >= 2]
    if not usable:
        return None
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        resampled = [g[rng.integers(0, len(g), len(g))] for g in usable]
        stats.append(pooled_sd([list(r) for r in resampled]) or 0.0)
    lo, hi = np.percentile(stats, [2.5, 97.5])
    return [float(lo), float(hi)]


def noise_floor(p: float, n: int) -> float:
    """Binomial SE of an accuracy measured on n test rows: smaller differences are sampling noise."""
    return float(math.sqrt(max(p * (1 - p), 0.0) / n)) if n else float("nan")


def _pairs(records: list[dict[str, Any]], task: str) -> dict[str, Any]:
    dis, mad, same, parted = [], [], [], []
    for a, b in itertools.combinations(records, 2):
        dis.append(disagreement(a["predictions"], b["predictions"], task))
        mad.append(max_abs_diff(a["predictions"], b["predictions"]))
        same.append(a["weights_digest"] == b["weights_digest"])
        parted.append(first_parting_epoch(a["history"]["loss"], b["history"]["loss"]))
    if not dis:
        return {}
    epochs = [p for p in parted if p is not None]
    return {"pairs": len(dis), "disagreement": float(np.mean(dis)), "max_abs_diff": float(np.max(mad)),
            "identical_share": float(np.mean(same)), "first_parting_epoch": min(epochs) if epochs else None}


def _source_groups(records: list[dict[str, Any]], source: str) -> list[list[dict[str, Any]]]:
    if source in SEED_FIELD:
        varied = SEED_FIELD[source]
        fixed = [f for f in SEED_FIELDS if f != varied] + ["deterministic"]
        pool = [r for r in records if r["repeat"] == 0 and r["deterministic"]]
        pool = pool or [r for r in records if r["repeat"] == 0]
    else:  # nondeterminism: repeats of the same seeds, determinism off
        fixed = list(SEED_FIELDS) + ["deterministic"]
        pool = [r for r in records if not r["deterministic"]]
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in pool:
        groups[tuple(r[f] for f in fixed)].append(r)
    return [g for g in groups.values() if len(g) >= 2]


def source_stats(records: list[dict[str, Any]], source: str, metric: str, task: str) -> dict[str, Any]:
    groups = _source_groups(records, source)
    if not groups:
        return {"varied": False, "note": "not varied in this plan"}
    values = [[metric_of(r, metric) for r in g] for g in groups]
    pair_stats = [_pairs(g, task) for g in groups]
    n_pairs = sum(p["pairs"] for p in pair_stats)
    weighted = lambda k: float(sum(p[k] * p["pairs"] for p in pair_stats) / n_pairs)  # noqa: E731
    parting = [p["first_parting_epoch"] for p in pair_stats if p["first_parting_epoch"] is not None]
    return {
        "varied": True, "groups": len(groups), "runs": sum(len(g) for g in groups),
        "metric_sd": pooled_sd(values), "metric_sd_ci95": bootstrap_ci(values),
        "disagreement": weighted("disagreement"), "max_abs_diff": max(p["max_abs_diff"] for p in pair_stats),
        "identical_share": weighted("identical_share"),
        "first_parting_epoch": min(parting) if parting else None,
    }


def determinism_repeats(records: list[dict[str, Any]], metric: str, task: str) -> dict[str, Any]:
    """Repeats with determinism on: the claim under test is bitwise identity."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["deterministic"]:
            groups[tuple(r[f] for f in SEED_FIELDS)].append(r)
    groups = {k: g for k, g in groups.items() if len(g) >= 2}
    if not groups:
        return {"varied": False, "note": "no repeats with determinism on"}
    stats = [_pairs(g, task) for g in groups.values()]
    n = sum(s["pairs"] for s in stats)
    return {"varied": True, "groups": len(groups),
            "identical_share": float(sum(s["identical_share"] * s["pairs"] for s in stats) / n),
            "max_abs_diff": max(s["max_abs_diff"] for s in stats)}


def hardware_stats(records: list[dict[str, Any]], reference: str, metric: str, task: str,
                   seed_noise: float | None) -> dict[str, Any]:
    by_point: dict[tuple, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        if r["deterministic"] and r["repeat"] == 0:
            by_point[tuple(r[f] for f in SEED_FIELDS)][r["profile"]] = r
    profiles = sorted({p for d in by_point.values() for p in d} - {reference})
    out: dict[str, Any] = {}
    for prof in profiles:
        pairs = [(d[reference], d[prof]) for d in by_point.values() if reference in d and prof in d]
        if not pairs:
            out[prof] = {"compared": 0, "note": f"no runs shared with reference '{reference}'"}
            continue
        deltas = [metric_of(b, metric) - metric_of(a, metric) for a, b in pairs]
        mean_abs = float(np.mean(np.abs(deltas)))
        out[prof] = {
            "compared": len(pairs),
            "metric_delta_mean": float(np.mean(deltas)),
            "metric_delta_max_abs": float(np.max(np.abs(deltas))),
            "disagreement": float(np.mean([disagreement(a["predictions"], b["predictions"], task) for a, b in pairs])),
            "max_abs_diff": float(np.max([max_abs_diff(a["predictions"], b["predictions"]) for a, b in pairs])),
            "identical_share": float(np.mean([a["weights_digest"] == b["weights_digest"] for a, b in pairs])),
            "drift_to_seed_noise": (mean_abs / seed_noise) if seed_noise else None,
            "fingerprint": _fingerprint_brief(pairs[0][1]),
        }
    return out


def _fingerprint_brief(record: dict[str, Any]) -> dict[str, Any]:
    fp = record.get("fingerprint") or {}
    return {k: fp.get(k) for k in ("cpu_model", "tensorflow", "keras", "cuda", "cudnn", "env")}


def gate(config, source: dict[str, Any], hardware: dict[str, Any]) -> dict[str, Any]:
    checks = []

    def check(name: str, value: float | None, budget: float | None, where: str) -> None:
        if budget is None or value is None:
            return
        checks.append({"check": name, "where": where, "value": value, "budget": budget,
                       "status": "PASS" if value <= budget else "FAIL"})

    tol = config.tolerances
    for prof, h in hardware.items():
        if not h.get("compared"):
            continue
        t = tol.per_profile.get(prof, tol)
        pick = lambda name: getattr(t, name) if getattr(t, name) is not None else getattr(tol, name)  # noqa: E731
        check("metric_delta", h["metric_delta_max_abs"], pick("max_metric_delta"), prof)
        check("disagreement", h["disagreement"], pick("max_disagreement"), prof)
        check("drift_ratio", h["drift_to_seed_noise"], pick("max_drift_ratio"), prof)
    for name, s in source.items():
        if s.get("varied"):
            check("metric_sd", s.get("metric_sd"), tol.max_metric_sd, name)
    status = "FAIL" if any(c["status"] == "FAIL" for c in checks) else "PASS"
    return {"status": status, "checks": checks}


def analyze(records: Iterable[dict[str, Any]], config, *, reference: str) -> dict[str, Any]:
    records = list(records)
    ok = [r for r in records if r["status"] == "ok"]
    task, metric = config.task, config.metric
    ref = [r for r in ok if r["profile"] == reference]
    sources = {s: source_stats(ref, s, metric, task) for s in ("init", "shuffle", "split", "nondeterminism")}
    seed_sds = [sources[s]["metric_sd"] for s in ("init", "shuffle", "split") if sources[s].get("metric_sd")]
    seed_noise = float(max(seed_sds)) if seed_sds else None
    hardware = hardware_stats(ok, reference, metric, task, seed_noise)
    det_on_runs = [r for r in ref if r["deterministic"]]
    n_eval = len(ref[0]["eval_labels"]) if ref and ref[0].get("eval_labels") is not None else 0
    mean_metric = float(np.mean([metric_of(r, metric) for r in ref])) if ref else None
    fit = {d: [r["timings"]["fit_s"] for r in ref if r["deterministic"] is d] for d in (True, False)}
    result = {
        "schema": "driftlab.report/1",
        "counts": {"runs": len(records), "ok": len(ok), "failed": sum(r["status"] == "failed" for r in records),
                   "diverged": sum(r["status"] == "diverged" for r in records)},
        "reference": reference,
        "metric": {"name": metric, "mean": mean_metric, "n_eval": n_eval,
                   "noise_floor": noise_floor(mean_metric, n_eval) if metric == "accuracy" and mean_metric else None},
        "sources": sources,
        "determinism": {"repeats_on": determinism_repeats(det_on_runs, metric, task),
                        "fit_time_ratio_on_off": (float(np.mean(fit[True]) / np.mean(fit[False]))
                                                  if fit[True] and fit[False] else None)},
        "hardware": hardware,
        "seed_noise": seed_noise,
        "profiles": sorted({r["profile"] for r in ok}),
    }
    result["gate"] = gate(config, sources, hardware)
    result["summary"] = summarize(result)
    return result


def summarize(result: dict[str, Any]) -> list[str]:
    lines = []
    metric = result["metric"]["name"]
    sds = {s: v["metric_sd"] for s, v in result["sources"].items() if v.get("varied") and v.get("metric_sd") is not None}
    if sds:
        top = max(sds, key=sds.get)
        lines.append(f"{top.capitalize()} moves {metric} most: SD {sds[top]:.4f} across {top} seeds"
                     + (f" (test-set noise floor {result['metric']['noise_floor']:.4f})"
                        if result["metric"].get("noise_floor") else "") + ".")
    rep = result["determinism"]["repeats_on"]
    if rep.get("varied"):
        lines.append(f"With op determinism on, {rep['identical_share']:.0%} of repeats are bitwise identical"
                     + (f"; it costs {result['determinism']['fit_time_ratio_on_off']:.2f}x fit time."
                        if result["determinism"].get("fit_time_ratio_on_off") else "."))
    for prof, h in result["hardware"].items():
        if h.get("compared"):
            ratio = h.get("drift_to_seed_noise")
            lines.append(f"{prof} vs {result['reference']}: {h['identical_share']:.0%} identical weights, "
                         f"{h['disagreement']:.2%} prediction disagreement"
                         + (f", drift {ratio:.2f}x seed noise." if ratio is not None else "."))
    lines.append(f"Tolerance gate: {result['gate']['status']} ({len(result['gate']['checks'])} checks).")
    return lines


def headline_metrics(result: dict[str, Any]) -> dict[str, float]:
    """Finite numbers for the KFP run comparison view."""
    out: dict[str, float] = {}
    name = result["metric"]["name"]
    if result["metric"].get("mean") is not None:
        out[f"{name}_mean"] = result["metric"]["mean"]
    for source, s in result["sources"].items():
        if s.get("varied") and s.get("metric_sd") is not None:
            out[f"{source}_sd"] = s["metric_sd"]
    for prof, h in result["hardware"].items():
        if h.get("compared"):
            out[f"{prof}_disagreement"] = h["disagreement"]
            if h.get("drift_to_seed_noise") is not None:
                out[f"{prof}_drift_ratio"] = h["drift_to_seed_noise"]
    out["gate_pass"] = 1.0 if result["gate"]["status"] == "PASS" else 0.0
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}
