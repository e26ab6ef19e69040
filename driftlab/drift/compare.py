"""Two campaigns compared run by run: paired by seed point, per eval metric and profile.

A report.json holds summaries only, so a comparison needs the run records of
both campaigns (``Store.load_runs``). Runs are paired by their seed point
``(init, shuffle, split, repeat, deterministic, profile)``, never by run key:
campaigns of the same file with different ``epochs`` (or other settings) have
different keys but the same seed points. Repeats of a determinism-on point are
meant to be bitwise identical, so they are averaged into one point (repeat
left out of its key); counting them as separate pairs would overstate the
evidence. Duplicates of a point (one campaign recorded under several plans)
are averaged too.

Per (metric, profile), with d = A − B over the n shared points:

- ``mean_delta`` = mean(d); ``delta_ci95``: percentile bootstrap of mean(d)
  (``B_BOOT`` resamples of the pairs, ``numpy.random.default_rng(SEED)``);
- ``p_t``: paired t-test (``scipy.stats.ttest_rel``; all d equal: p = 1 when
  d = 0, else 0); ``p_wilcoxon``: Wilcoxon signed-rank (null when every d is 0
  or n < 2);
- ``p_a_greater``: P(A > B), the share of pairs with a > b (ties count ½),
  with a Wilson 95% interval;
- ``p_holm``: Holm's step-down correction of ``p_t`` across every (metric, profile);
- ``seed_sd_a``: SD (ddof 1) of campaign A's values over the shared points,
  the seed noise A itself shows;
- ``significant``: p_holm < alpha; ``beyond_noise``: |mean_delta| > noise_factor·seed_sd_a;
  ``flagged``: both (what ``driftlab compare --gate`` exits 3 on).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

from driftlab.errors import BadInput

B_BOOT = 2000
SEED = 20240601
ALPHA = 0.05
NOISE_FACTOR = 2.0
LOWER_IS_BETTER = ("rmse", "mae", "mse", "loss")

Point = tuple  # (init, shuffle, split, repeat or None, deterministic)


class NoSharedPoints(BadInput):
    """The two campaigns share no seed point: nothing can be paired."""


def _point(r: dict[str, Any]) -> Point:
    det = bool(r.get("deterministic"))
    return (int(r["init_seed"]), int(r["shuffle_seed"]), int(r["split_seed"]),
            None if det else int(r.get("repeat") or 0), det)


def values_by_point(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[Point, float]]:
    """{(metric, profile): {seed point: mean eval value}} of the ok runs (eval_ prefix dropped)."""
    acc: dict[tuple[str, str], dict[Point, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("status") != "ok":
            continue
        for name, value in (r.get("metrics") or {}).items():
            if not name.startswith("eval_") or value is None:
                continue
            v = float(value)
            if math.isfinite(v):
                acc[(name[len("eval_"):], str(r.get("profile")))][_point(r)].append(v)
    return {k: {p: float(np.mean(v)) for p, v in pts.items()} for k, pts in acc.items()}


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the order given."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    out = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        out[i] = running
    return out


def wilson(successes: float, n: int, z: float = 1.959963984540054) -> list[float]:
    """Wilson score interval for a share (successes may be fractional: ties count ½)."""
    if n == 0:
        return [0.0, 1.0]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def _paired(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    from scipy import stats as sps

    d = a - b
    n = len(d)
    mean = float(d.mean())
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if n < 2:
        p_t = None
    elif sd == 0 or np.all(d == d[0]):
        p_t = 1.0 if mean == 0 else 0.0
    else:
        p_t = float(sps.ttest_rel(a, b).pvalue)
    p_w = None
    if n >= 2 and np.any(d != 0):
        p_w = float(sps.wilcoxon(d).pvalue)
    rng = np.random.default_rng(SEED)
    boot = d[rng.integers(0, n, size=(B_BOOT, n))].mean(axis=1)
    wins = float(np.sum(d > 0) + 0.5 * np.sum(d == 0))
    return {"pairs": n, "mean_a": float(a.mean()), "mean_b": float(b.mean()), "mean_delta": mean,
            "sd_delta": sd, "delta_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "p_t": p_t, "p_wilcoxon": p_w, "p_a_greater": wins / n, "p_a_greater_ci95": wilson(wins, n),
            "seed_sd_a": float(a.std(ddof=1)) if n > 1 else None}


def _levels(points: Iterable[Point]) -> dict[str, list]:
    pts = list(points)
    return {"init": sorted({p[0] for p in pts}), "shuffle": sorted({p[1] for p in pts}),
            "split": sorted({p[2] for p in pts}), "repeat": sorted({p[3] for p in pts if p[3] is not None}),
            "deterministic": sorted({p[4] for p in pts})}


def _what_differs(a: dict, b: dict, names: tuple[str, str]) -> str:
    pa = {p for pts in a.values() for p in pts}
    pb = {p for pts in b.values() for p in pts}
    la, lb = _levels(pa), _levels(pb)
    diffs = [f"{k}: {names[0]} {la[k]} vs {names[1]} {lb[k]}" for k in la if la[k] != lb[k]]
    profs_a, profs_b = sorted({k[1] for k in a}), sorted({k[1] for k in b})
    if profs_a != profs_b:
        diffs.append(f"profiles: {names[0]} {profs_a} vs {names[1]} {profs_b}")
    mets_a, mets_b = sorted({k[0] for k in a}), sorted({k[0] for k in b})
    if mets_a != mets_b:
        diffs.append(f"metrics: {names[0]} {mets_a} vs {names[1]} {mets_b}")
    return "; ".join(diffs) or "the seed points of the same profiles and metrics never coincide"


def compare(records_a: Iterable[dict[str, Any]], records_b: Iterable[dict[str, Any]], *,
            names: tuple[str, str] = ("A", "B"), alpha: float = ALPHA, noise_factor: float = NOISE_FACTOR
            ) -> dict[str, Any]:
    """Paired comparison of two campaigns' run records (see the module docstring).

    Raises:
        NoSharedPoints: a campaign has no ok run, or the two share no (metric, profile, seed point).
    """
    a, b = values_by_point(records_a), values_by_point(records_b)
    for name, vals in zip(names, (a, b)):
        if not vals:
            raise NoSharedPoints(f"campaign '{name}' has no finished (ok) run with an eval metric: nothing to compare")
    rows = []
    for key in sorted(set(a) & set(b)):
        shared = sorted(set(a[key]) & set(b[key]), key=repr)
        if not shared:
            continue
        va = np.array([a[key][p] for p in shared])
        vb = np.array([b[key][p] for p in shared])
        rows.append({"metric": key[0], "profile": key[1], **_paired(va, vb)})
    if not rows:
        raise NoSharedPoints(f"campaigns '{names[0]}' and '{names[1]}' share no seed point (init, shuffle, split, "
                             f"repeat, deterministic, profile): {_what_differs(a, b, names)}")
    tested = [i for i, r in enumerate(rows) if r["p_t"] is not None]
    adjusted = holm([rows[i]["p_t"] for i in tested])
    for r in rows:
        r["p_holm"] = None
    for i, p in zip(tested, adjusted):
        rows[i]["p_holm"] = p
    for r in rows:
        r["significant"] = r["p_holm"] is not None and r["p_holm"] < alpha
        sd = r["seed_sd_a"]
        r["noise_limit"] = noise_factor * sd if sd is not None else None
        r["beyond_noise"] = sd is not None and abs(r["mean_delta"]) > noise_factor * sd
        r["flagged"] = bool(r["significant"] and r["beyond_noise"])
        lower = r["metric"] in LOWER_IS_BETTER
        r["better"] = (None if not r["significant"] else
                       names[0] if (r["mean_delta"] < 0) == lower else names[1])
    return {"a": names[0], "b": names[1], "alpha": alpha, "noise_factor": noise_factor, "test": "paired t-test",
            "correction": "holm", "bootstrap": {"resamples": B_BOOT, "seed": SEED}, "rows": rows,
            "flagged": sum(r["flagged"] for r in rows),
            "unpaired": {"a_only": sorted(f"{m}@{p}" for m, p in set(a) - set(b)),
                         "b_only": sorted(f"{m}@{p}" for m, p in set(b) - set(a))}}


def to_text(result: dict[str, Any]) -> str:
    """The comparison as a plain-text table, numbers rounded."""

    def num(v: Any, digits: int = 4) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return "—"
        if v != 0 and abs(v) < 10 ** -digits:
            return f"{v:.2e}"
        return f"{v:.{digits}f}"

    def pv(v: Any) -> str:
        return "—" if v is None else (f"{v:.2e}" if v < 1e-3 else f"{v:.3f}")

    a, b = result["a"], result["b"]
    headers = ["metric", "profile", "pairs", f"mean {a}", f"mean {b}", f"Δ {a}−{b}", "95% CI Δ (bootstrap)",
               f"P({a}>{b}) [95% CI]", "p (paired t)", "p Holm", f"seed SD {a}", "verdict"]
    table = []
    for r in result["rows"]:
        if r["flagged"]:
            verdict = f"DIFFERENT ({r['better']} better)"
        elif r["significant"]:
            verdict = f"significant, within {result['noise_factor']:g}× seed SD"
        else:
            verdict = "no significant difference"
        lo, hi = r["delta_ci95"]
        plo, phi = r["p_a_greater_ci95"]
        table.append([r["metric"], r["profile"], str(r["pairs"]), num(r["mean_a"]), num(r["mean_b"]),
                      num(r["mean_delta"]), f"{num(lo)} to {num(hi)}",
                      f"{r['p_a_greater']:.2f} [{plo:.2f}–{phi:.2f}]", pv(r["p_t"]), pv(r["p_holm"]),
                      num(r["seed_sd_a"]), verdict])
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    lines = [f"compare {a} vs {b}: runs paired by seed point; paired t-test, Holm-corrected across "
             f"{len(table)} metric×profile test(s), alpha {result['alpha']:g}; a difference counts when it is "
             f"significant and |Δ| > {result['noise_factor']:g}× the seed SD of {a}",
             "  ".join(h.ljust(w) for h, w in zip(headers, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    un = result.get("unpaired") or {}
    for side, label in (("a_only", a), ("b_only", b)):
        if un.get(side):
            lines.append(f"only in {label} (not compared): {', '.join(un[side])}")
    lines.append(f"{result['flagged']} difference(s) beyond seed noise")
    return "\n".join(lines) + "\n"
