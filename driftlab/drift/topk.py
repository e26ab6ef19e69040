"""Is the tuner's winner really better than the runner-ups? P(A beats B) over seeds.

With ``tuning.retrain_top_k: K`` the top K configurations of the study are each retrained on
the same seed points (init × shuffle at the first split, repeat 0, determinism on), on the
reference profile. For each pair (A, B) and each shared seed point, A *beats* B when its
evaluation metric is better (higher accuracy, lower RMSE/MAE); a tie counts half.

    P(A beats B) = (wins + ties / 2) / n        over the n shared seed points
    interval     = Wilson score interval at 95% (driftlab.drift.compare.wilson)

A pair is *distinguishable* when the interval excludes 1/2. The noise-aware ranking orders
the configurations by mean metric and puts a configuration in the same tier as the one ranked
just above it unless that one beats it distinguishably (Bouthillier et al., MLSys 2021).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from driftlab.drift.compare import wilson


def _values(records: Sequence[dict[str, Any]], configs: list[dict[str, Any]], *, reference: str, metric: str,
            points: set[tuple[int, int, int]], mode: bool) -> list[dict[tuple, float]]:
    """Per configuration, {(init, shuffle, split): eval metric} of its finished runs at the points."""
    wanted = [dict(c) for c in configs]
    out: list[dict[tuple, float]] = [{} for _ in configs]
    for r in records:
        if r.get("status") != "ok" or r.get("profile") != reference or int(r.get("repeat", 0)) != 0:
            continue
        if bool(r.get("deterministic")) != mode:
            continue
        point = (int(r["init_seed"]), int(r["shuffle_seed"]), int(r["split_seed"]))
        hparams = (r.get("spec") or {}).get("hparams") or {}
        value = (r.get("metrics") or {}).get(f"eval_{metric}")
        if point not in points or value is None:
            continue
        for i, params in enumerate(wanted):
            if all(hparams.get(k) == v for k, v in params.items()):
                out[i][point] = float(value)
                break
    return out


def top_k(records: Sequence[dict[str, Any]], tuning: dict[str, Any], config: Any, *,
          reference: str) -> dict[str, Any] | None:
    """The P(A beats B) table and the noise-aware ranking; None when fewer than 2 configurations."""
    from driftlab.config.seedplan import top_k_points

    k = int(config.tuning.retrain_top_k)
    configs = list(tuning.get("top_k_params") or [])[:k]
    if len(configs) < 2:
        return None
    metric = config.metric
    higher = metric == "accuracy"
    seed_points = top_k_points(config.seeds)
    points = {(p.init_seed, p.shuffle_seed, p.split_seed) for p in seed_points}
    values = _values(records, configs, reference=reference, metric=metric, points=points,
                     mode=True in config.seeds.deterministic)
    trial_numbers = list(tuning.get("top_k_trials") or [None] * len(configs))
    rows = []
    for i, (params, vals) in enumerate(zip(configs, values)):
        v = np.array(list(vals.values()), dtype=np.float64)
        rows.append({"rank_tuned": i + 1, "trial": trial_numbers[i] if i < len(trial_numbers) else None,
                     "params": params, "runs": int(v.size), "planned": len(points),
                     "mean": float(v.mean()) if v.size else None,
                     "sd": float(v.std(ddof=1)) if v.size > 1 else None})
    pairs = []
    for a in range(len(configs)):
        for b in range(a + 1, len(configs)):
            shared = sorted(set(values[a]) & set(values[b]))
            if not shared:
                pairs.append({"a": a + 1, "b": b + 1, "n": 0, "p_a_beats_b": None, "ci95": None,
                              "distinguishable": None})
                continue
            da = np.array([values[a][p] for p in shared])
            db = np.array([values[b][p] for p in shared])
            wins = float(np.sum(da > db if higher else da < db) + 0.5 * np.sum(da == db))
            p = wins / len(shared)
            ci = wilson(wins, len(shared))
            pairs.append({"a": a + 1, "b": b + 1, "n": len(shared), "p_a_beats_b": p, "ci95": ci,
                          "distinguishable": bool(ci[0] > 0.5 or ci[1] < 0.5)})
    order = sorted(range(len(configs)), key=lambda i: (rows[i]["mean"] is None,
                                                      -(rows[i]["mean"] or 0) if higher else (rows[i]["mean"] or 0)))
    tiers, tier = {}, 1
    for pos, i in enumerate(order):
        if pos:
            above = order[pos - 1]
            pair = next(p for p in pairs if {p["a"], p["b"]} == {above + 1, i + 1})
            beats = pair["distinguishable"] and pair["p_a_beats_b"] is not None and (
                (pair["a"] == above + 1) == (pair["p_a_beats_b"] > 0.5))
            tier += 1 if beats else 0
        tiers[i] = tier
    for i, row in enumerate(rows):
        row["tier"] = tiers[i]
    best_pair = next((p for p in pairs if p["a"] == 1 and p["b"] == 2), None)
    return {"k": len(configs), "metric": metric, "reference": reference, "points": len(points), "configs": rows,
            "pairs": pairs, "ranking": [i + 1 for i in order], "sentence": _sentence(rows, best_pair, tiers)}


def _sentence(rows: list[dict[str, Any]], pair: dict[str, Any] | None, tiers: dict[int, int]) -> str:
    k = len(rows)
    if pair is None or pair["p_a_beats_b"] is None:
        return f"The top {k} configurations have no seed point in common: no comparison."
    lo, hi = pair["ci95"]
    same_tier = sum(1 for t in tiers.values() if t == tiers[0])
    verdict = ("the tuner's winner is distinguishably better" if pair["distinguishable"] and pair["p_a_beats_b"] > 0.5
               else "distinguishably worse" if pair["distinguishable"]
               else "indistinguishable given seed noise")
    return (f"Retrained over {pair['n']} seed points, the tuner's best configuration beats the runner-up in "
            f"{pair['p_a_beats_b']:.0%} of them (95% CI {lo:.0%}–{hi:.0%}): {verdict}; "
            f"{same_tier} of the top {k} share the first tier of the noise-aware ranking.")


def attach_top_k(result: dict[str, Any], records: Sequence[dict[str, Any]], config: Any, *, reference: str) -> None:
    """Add ``top_k`` to a report body and its sentence to the summary (before the gate line)."""
    block = top_k(records, result.get("tuning") or {}, config, reference=reference)
    if block is None:
        return
    result["top_k"] = block
    summary = result.setdefault("summary", [])
    at = next((i for i, line in enumerate(summary) if line.startswith("Tolerance gate")), len(summary))
    summary.insert(at, block["sentence"])
