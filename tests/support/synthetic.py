"""Synthetic run records with known variance components, for tests and benchmarks.

The metric of a run is ``base + a[init] + b[shuffle] + c[split] + h[profile] +
ab[init, shuffle] + e``, each term drawn from a normal distribution with the
SD given in ``sigmas``; ``e`` (nondeterminism) is drawn per run only with
determinism off. With determinism on, repeats are bitwise identical (same
predictions, weights and digest), as on a real deterministic profile.
Records have the shape of ``Store.load_runs`` output.

With ``exact=True`` the drawn effects are rescaled so that the balanced
ANOVA estimator must return the given variances exactly (up to float
round-off): each main effect is centred with sample variance
``sigma^2 (+ sigma_int^2 / L_other for init and shuffle)``, the interaction is
double-centred, and each deterministic-off cell's noise is centred with
sample variance ``sigma_nondeterminism^2``. A known-answer test for the
algebra; the random draws test the statistics.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SIGMA_KEYS = ("init", "shuffle", "split", "hardware", "init×shuffle", "nondeterminism")


@dataclass
class SyntheticPlan:
    """What to generate. ``sigmas`` are SDs of the metric terms (see module docstring)."""

    task: str = "classification"
    init: tuple[int, ...] = (0, 1)
    shuffle: tuple[int, ...] = (0, 1)
    split: tuple[int, ...] = (0, 1)
    repeats: int = 2
    deterministic: tuple[bool, ...] = (True, False)
    profiles: tuple[str, ...] = ("ref",)
    design: str = "factorial"
    sigmas: dict[str, float] = field(default_factory=dict)
    base: float = 0.9
    n_eval: int = 200
    n_classes: int = 4
    n_params: int = 32
    epochs: int = 4
    fit_s: dict[bool, float] = field(default_factory=lambda: {True: 1.3, False: 1.0})
    versions: dict[str, dict[str, Any]] = field(default_factory=dict)
    flip_rate: float = 0.05  # share of eval predictions a different run changes
    seed: int = 0
    exact: bool = False


def _rng(*parts: Any) -> np.random.Generator:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _points(plan: SyntheticPlan) -> list[tuple[int, int, int, int, bool]]:
    pts = set()
    for d in plan.deterministic:
        if plan.design == "factorial":
            for i, s, p, r in itertools.product(plan.init, plan.shuffle, plan.split, range(plan.repeats)):
                pts.add((i, s, p, r, d))
        else:
            i0, s0, p0 = plan.init[0], plan.shuffle[0], plan.split[0]
            pts.update((i0, s0, p0, r, d) for r in range(plan.repeats))
            pts.update((i, s0, p0, 0, d) for i in plan.init)
            pts.update((i0, s, p0, 0, d) for s in plan.shuffle)
            pts.update((i0, s0, p, 0, d) for p in plan.split)
    return sorted(pts)


def generate(plan: SyntheticPlan) -> list[dict[str, Any]]:
    """Records for every point of the plan on the first profile, and its deterministic points on the others."""
    sig = {k: float(plan.sigmas.get(k, 0.0)) for k in SIGMA_KEYS}
    eff = _rng(plan.seed, "effects")
    a = {i: eff.normal(0, sig["init"]) for i in plan.init}
    b = {s: eff.normal(0, sig["shuffle"]) for s in plan.shuffle}
    c = {p: eff.normal(0, sig["split"]) for p in plan.split}
    h = {q: eff.normal(0, sig["hardware"]) for q in plan.profiles}
    ab = {(i, s): eff.normal(0, sig["init×shuffle"]) for i in plan.init for s in plan.shuffle}
    if plan.exact:
        a, b, c, h, ab = _exact(plan, sig, a, b, c, h, ab)
    data = _rng(plan.seed, "data")
    labels = data.integers(0, plan.n_classes, plan.n_eval)
    target = data.normal(0, 1, plan.n_eval)
    det_modes = [d for d in plan.deterministic if d] or list(plan.deterministic)
    records = []
    for q_index, profile in enumerate(plan.profiles):
        for (i, s, p, r, d) in _points(plan):
            if q_index > 0 and d not in det_modes:
                continue
            # Runs that are bitwise identical share an identity (deterministic repeats).
            identity = (plan.seed, i, s, p, profile if sig["hardware"] or q_index == 0 else "ref", d, None if d else r)
            noise = 0.0 if d else _noise(plan, sig["nondeterminism"], (i, s, p, profile), r)
            value = plan.base + a[i] + b[s] + c[p] + h[profile] + ab[(i, s)] + noise
            records.append(_record(plan, identity, value, labels, target, profile, (i, s, p, r, d)))
    return records


def _scaled(values: dict, variance: float) -> dict:
    keys = list(values)
    x = np.array([values[k] for k in keys], dtype=np.float64)
    if len(x) < 2:
        return {k: 0.0 for k in keys}
    x = x - x.mean()
    sd = x.std(ddof=1)
    x = x * (np.sqrt(variance) / sd) if sd > 0 else x * 0.0
    return dict(zip(keys, x))


def _exact(plan: SyntheticPlan, sig: dict[str, float], a: dict, b: dict, c: dict, h: dict, ab: dict):
    li, ls = len(plan.init), len(plan.shuffle)
    inter = sig["init×shuffle"] ** 2
    m = np.array([[ab[(i, s)] for s in plan.shuffle] for i in plan.init])
    m = m - m.mean(axis=0, keepdims=True) - m.mean(axis=1, keepdims=True) + m.mean()
    df = (li - 1) * (ls - 1)
    norm = np.sum(m ** 2) / df if df else 0.0
    m = m * np.sqrt(inter / norm) if norm > 0 else m * 0.0
    ab = {(i, s): m[x, y] for x, i in enumerate(plan.init) for y, s in enumerate(plan.shuffle)}
    # The ANOVA estimator of a main effect subtracts the interaction's expected share of it.
    return (_scaled(a, sig["init"] ** 2 + (inter / ls if df else 0.0)),
            _scaled(b, sig["shuffle"] ** 2 + (inter / li if df else 0.0)),
            _scaled(c, sig["split"] ** 2), _scaled(h, sig["hardware"] ** 2), ab)


def _noise(plan: SyntheticPlan, sd: float, cell: tuple, repeat: int) -> float:
    draws = _rng(plan.seed, *cell, "nondet").normal(0, sd, plan.repeats)
    if plan.exact:
        draws = draws - draws.mean()
        spread = draws.std(ddof=1) if plan.repeats >= 2 else 0.0
        draws = draws * (sd / spread) if spread > 0 else draws * 0.0
    return float(draws[repeat])


def _record(plan: SyntheticPlan, identity: tuple, value: float, labels: np.ndarray, target: np.ndarray,
            profile: str, point: tuple[int, int, int, int, bool]) -> dict[str, Any]:
    i, s, p, r, d = point
    rng = _rng(*identity)
    if plan.task == "classification":
        pred_labels = np.where(rng.random(plan.n_eval) < plan.flip_rate,
                               rng.integers(0, plan.n_classes, plan.n_eval), labels)
        probs = rng.random((plan.n_eval, plan.n_classes)).astype(np.float32) * 0.5
        probs[np.arange(plan.n_eval), pred_labels] += 1.0
        predictions = probs / probs.sum(axis=1, keepdims=True)
        metrics = {"eval_accuracy": value, "val_accuracy": value}
    else:
        predictions = (target + rng.normal(0, 0.1, plan.n_eval)).astype(np.float32)
        metrics = {"eval_rmse": value, "eval_mae": value * 0.8, "val_rmse": value}
    weights = rng.normal(0, 1, plan.n_params).astype(np.float32)
    loss = [1.0 / (e + 1) + (0.0 if e == 0 else float(rng.normal(0, 1e-3))) for e in range(plan.epochs)]
    key = hashlib.sha256(repr((plan.seed, profile, point)).encode()).hexdigest()[:24]
    return {
        "key": key, "profile": profile, "init_seed": i, "shuffle_seed": s, "split_seed": p, "repeat": r,
        "deterministic": d, "status": "ok", "task": plan.task, "spec": {}, "metrics": metrics,
        "history": {"loss": loss, "val_metric": [value] * plan.epochs},
        "fingerprint": {"tensorflow": "2.21.0", "keras": "3.15.1", "numpy": "2.4.6", "cpu_model": "synthetic",
                        "gpus": [], "env": {}, **plan.versions.get(profile, {})},
        "timings": {"build_s": 0.1, "fit_s": plan.fit_s[d], "predict_s": 0.01, "total_s": plan.fit_s[d] + 0.11},
        "init_digest": hashlib.sha256(repr((identity[1],)).encode()).hexdigest()[:32],
        "weights_digest": hashlib.sha256(repr(identity).encode()).hexdigest()[:32],
        "predictions": predictions, "eval_labels": labels if plan.task == "classification" else target, "weights": weights, "weights_kind": "full",
        "n_params": plan.n_params, "created_at": None,
    }
