"""The regression noise floor: the standard error of an RMSE or MAE measured on n evaluation rows.

The classification floor (``stats.noise_floor``) is the binomial SE of an
accuracy. For a regression metric the evaluation rows play the same role:
a different draw of n rows from the same distribution would move the metric
by about its standard error, so differences below it are test-set sampling
noise, not drift.

With residuals ``e_i = prediction_i - target_i`` (for several outputs, the
mean of the squared / absolute residuals of a row is that row's value):

- MAE = mean |e|, ``SE(MAE) = sd(|e|) / sqrt(n)`` (exact for the mean of n i.i.d. rows);
- RMSE = sqrt(mean e²): by the delta method on ``f(m) = sqrt(m)`` at ``m = MSE``,
  ``SE(RMSE) ≈ sd(e²) / (2 · RMSE · sqrt(n))``.

The floor of a set of runs is the mean of their per-run SEs; a run's SEs are
measured once, while its arrays are read (``row_ses``, kept as ``Run.row_se``).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from driftlab.drift.runs import Run

REGRESSION_FLOOR_METRICS = ("rmse", "mae")


def _row_errors(run: Run) -> np.ndarray | None:
    """Per-row residuals, shape (n, outputs); None without targets or when shapes differ."""
    if run.truth is None:
        return None
    pred = np.asarray(run.predictions, dtype=np.float64)
    truth = np.asarray(run.truth, dtype=np.float64)
    n = pred.shape[0]
    if truth.shape[0] != n or truth.size != pred.size:
        return None
    return pred.reshape(n, -1) - truth.reshape(n, -1)


def _rows(errors: np.ndarray) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64)
    return e.reshape(e.shape[0], -1)


def se_rmse(errors: np.ndarray) -> float | None:
    """Delta-method SE of the RMSE of residuals ``errors`` (rows × outputs): sd(e²)/(2·RMSE·√n)."""
    e = _rows(errors)
    n = e.shape[0]
    if n < 2:
        return None
    sq = np.mean(e ** 2, axis=1)
    rmse = math.sqrt(float(np.mean(sq)))
    if rmse == 0:
        return 0.0
    return float(np.std(sq, ddof=1) / (2 * rmse * math.sqrt(n)))


def se_mae(errors: np.ndarray) -> float | None:
    """SE of the MAE of residuals ``errors`` (rows × outputs): sd(|e|)/√n."""
    e = _rows(errors)
    n = e.shape[0]
    if n < 2:
        return None
    return float(np.std(np.mean(np.abs(e), axis=1), ddof=1) / math.sqrt(n))


def row_ses(run: Run) -> dict[str, float | None]:
    """The run's SE of each floor metric on its evaluation rows (None without targets)."""
    e = _row_errors(run)
    return {"rmse": None if e is None else se_rmse(e), "mae": None if e is None else se_mae(e)}


def regression_floor(runs: Sequence[Run], metric: str) -> float | None:
    """Mean over runs of the SE of ``metric`` (rmse or mae) on their evaluation rows; None otherwise."""
    if metric not in REGRESSION_FLOOR_METRICS:
        return None
    values = []
    for r in runs:
        v = (r.row_se if r.row_se is not None else row_ses(r))[metric]
        if v is not None:
            values.append(v)
    return float(np.mean(values)) if values else None


def apply_regression_floor(result: dict, runs: Sequence[Run], *, reference: str, mode: bool,
                           metric: str) -> None:
    """Set the regression floor where the accuracy floor goes: ``metric.noise_floor``, each varied source's
    ``noise_floor``/``sd_to_noise_floor`` and each profile's ``noise_floor``/``drift_to_noise_floor``.

    The source floor is over the source's runs, the profile floor over the reference runs it is
    paired with (repeat 0, comparison mode), the metric floor over all reference runs. A classification
    report, or a metric other than rmse/mae, is left as it is.
    """
    if result.get("task") != "regression" or metric not in REGRESSION_FLOOR_METRICS:
        return
    from driftlab.drift import stats
    from driftlab.drift.sources import source_groups

    result["metric"]["noise_floor"] = regression_floor([r for r in runs if r.profile == reference], metric)
    for name, s in (result.get("sources") or {}).items():
        if s.get("varied"):
            floor = regression_floor([r for g in source_groups(runs, name, reference, mode) for r in g], metric)
            s["noise_floor"], s["sd_to_noise_floor"] = floor, stats.ratio(s.get("metric_sd"), floor)
    ref_points = [r for r in runs if r.profile == reference and r.repeat == 0 and r.deterministic == mode]
    for prof, h in (result.get("hardware") or {}).items():
        if h.get("compared"):
            seeds = {r.seeds for r in runs if r.profile == prof and r.repeat == 0 and r.deterministic == mode}
            floor = regression_floor([r for r in ref_points if r.seeds in seeds], metric)
            h["noise_floor"], h["drift_to_noise_floor"] = floor, stats.ratio(h.get("drift_sd"), floor)
