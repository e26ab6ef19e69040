"""The tuner's optimism: the best trial's validation value against retraining the same configuration.

The tuner reports the best of many trials, each trained once with the seed
plan's first seeds; the best of many noisy values is biased towards luck
(the winner's curse). Retraining the winning configuration across the split,
init and shuffle seeds on the reference profile gives the value it really
has on average, and its seed SD says how far one run may move by chance.

``optimism(records, tuning, ...)`` returns the ``optimism`` block of the
report (docs/report-schema.md):

- retrained distribution: each seed point ``(init, shuffle, split)`` on the
  reference counts once (its repeats and determinism modes averaged), so
  bitwise-identical repeats do not shrink the SD; ``mean`` and ``sd``
  (ddof 1) over those levels;
- ``gap`` = tuned − mean when maximizing, mean − tuned when minimizing
  (positive: the tuned value looks better than retraining gives);
  ``gap_z`` = gap / sd; ``gap_ci95`` = gap ± t(0.975, m−1)·sd/√m over the m levels;
  ``verdict`` ``optimistic`` / ``pessimistic`` when the interval excludes 0, else ``consistent``;
- the pick: ``best_minus_second`` (tuning.stability) against the SD of the
  difference of two single runs, √2·sd: ``z`` = best_minus_second / (√2·sd);
  ``distinguishable`` when z ≥ 1.96, else the tuner's pick among them is noise.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Iterable

import numpy as np

Z_PICK = 1.96  # the two-sided 95% normal quantile: a gap beyond it stands out from seed noise


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _best_minus_second(tuning: dict[str, Any]) -> float | None:
    stab = tuning.get("stability") if isinstance(tuning.get("stability"), dict) else {}
    if isinstance(tuning.get("top_k_values"), list) and len(tuning["top_k_values"]) < 2:
        return None  # one trial: no runner-up
    value = _finite(stab.get("best_minus_second"))
    if value is not None:
        return abs(value)
    values = [v for v in (_finite(x) for x in tuning.get("top_k_values") or []) if v is not None]
    return abs(values[0] - values[1]) if len(values) > 1 else None


def num(value: float | None, digits: int = 4) -> str:
    """As ``driftlab.report.fmt.num``: the report tables print the same text as the summary."""
    if value is None or not math.isfinite(value):
        return "—"
    if value != 0 and (abs(value) < 10 ** -digits or abs(value) >= 1e6):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def optimism(records: Iterable[dict[str, Any]], tuning: dict[str, Any] | None, *, reference: str, metric: str
             ) -> dict[str, Any] | None:
    """The ``optimism`` block; None without a tuned best value (nothing was tuned)."""
    if not isinstance(tuning, dict):
        return None
    tuned = _finite(tuning.get("best_value"))
    if tuned is None:
        return None
    name = f"val_{metric}"
    maximize = (tuning.get("direction") or ("minimize" if metric in ("rmse", "mae", "loss") else "maximize")
                ) != "minimize"
    cells: dict[tuple[int, int, int], list[float]] = defaultdict(list)
    for r in records:
        if r.get("status") != "ok" or r.get("profile") != reference:
            continue
        value = _finite((r.get("metrics") or {}).get(name))
        if value is not None:
            cells[(int(r["init_seed"]), int(r["shuffle_seed"]), int(r["split_seed"]))].append(value)
    out: dict[str, Any] = {"metric": name, "direction": "maximize" if maximize else "minimize",
                           "tuned_value": tuned, "best_trial": tuning.get("best_trial"), "reference": reference}
    n_runs = sum(len(v) for v in cells.values())
    levels = np.array([float(np.mean(v)) for _, v in sorted(cells.items())])
    m = len(levels)
    out["retrained"] = {
        "n_runs": n_runs, "n_levels": m,
        "levels": {k: len({c[i] for c in cells}) for i, k in enumerate(("init", "shuffle", "split"))},
        "mean": float(levels.mean()) if m else None,
        "sd": float(levels.std(ddof=1)) if m > 1 else None,
    }
    bms = _best_minus_second(tuning)
    out["pick"] = {"best_minus_second": bms, "noise_sd": None, "z": None, "distinguishable": None}
    if m < 2:
        out.update(gap=(tuned - levels.mean() if maximize else levels.mean() - tuned) if m else None,
                   gap_se=None, gap_ci95=None, gap_z=None, verdict=None,
                   note=f"{m} retrained seed point(s) with {name} on {reference}: at least 2 are needed")
        out["sentences"] = [f"Tuner's optimism: not measured ({out['note']})."]
        return out
    from scipy import stats as sps

    mean, sd = float(levels.mean()), float(levels.std(ddof=1))
    gap = tuned - mean if maximize else mean - tuned
    se = sd / math.sqrt(m)
    half = float(sps.t.ppf(0.975, m - 1)) * se
    ci = [gap - half, gap + half]
    out.update(gap=gap, gap_se=se, gap_ci95=ci, gap_z=gap / sd if sd > 0 else None,
               verdict="optimistic" if ci[0] > 0 else "pessimistic" if ci[1] < 0 else "consistent")
    if bms is not None:
        noise = math.sqrt(2) * sd
        z = bms / noise if noise > 0 else None
        out["pick"].update(noise_sd=noise, z=z,
                           distinguishable=None if z is None else bool(z >= Z_PICK))
    out["sentences"] = sentences(out)
    return out


def sentences(o: dict[str, Any]) -> list[str]:
    """The summary sentences: the optimism, then whether the winner beats the runner-up."""
    r = o["retrained"]
    trial = f" (trial {o['best_trial']})" if o.get("best_trial") is not None else ""
    head = (f"Tuned {o['metric']} {num(o['tuned_value'])}{trial}; retraining the same configuration on "
            f"{o['reference']} gives {num(r['mean'])} ± {num(r['sd'])} (mean ± SD over {r['n_levels']} seed points, "
            f"{r['n_runs']} runs)")
    ci = f"gap {num(o['gap'])}, 95% CI {num(o['gap_ci95'][0])} to {num(o['gap_ci95'][1])}"
    z = o.get("gap_z")
    by = f" by {abs(z):.1f} SD" if z is not None else ""
    if o["verdict"] == "optimistic":
        text = f"{head}: the tuned value is optimistic{by} ({ci})."
    elif o["verdict"] == "pessimistic":
        text = f"{head}: the tuned value is pessimistic{by} ({ci})."
    else:
        text = f"{head}: the tuned value is within what retraining gives ({ci}; {z or 0:.1f} SD)."
    out = [text]
    p = o["pick"]
    if p.get("z") is not None:
        diff = f"The best and second-best trials differ by {num(p['best_minus_second'])}"
        if p["distinguishable"]:
            out.append(f"{diff}, more than seed noise allows (z {p['z']:.1f} against √2·SD = {num(p['noise_sd'])}): "
                       "the best trial stands out from the runner-up.")
        else:
            rel = "less than" if p["best_minus_second"] < r["sd"] else "within"
            out.append(f"{diff}, {rel} seed noise (SD {num(r['sd'])}; z {p['z']:.1f} against √2·SD = "
                       f"{num(p['noise_sd'])}): the tuner's pick among them is noise.")
    return out


def attach(result: dict[str, Any], records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Add ``optimism`` (and its sentences to ``summary``) to a report body that holds ``tuning``."""
    block = optimism(records, result.get("tuning"), reference=result["reference"], metric=result["metric"]["name"])
    if block is not None:
        result["optimism"] = block
        result["summary"] = list(result.get("summary") or []) + block["sentences"]
    return result
