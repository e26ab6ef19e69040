"""Intervals that respect the number of seed levels: coverage by simulation, and an independent oracle.

Simulated plans: a source with L levels crossed with two held-fixed seeds of 2 levels each (the
quickstart's 2 x 2 x 2 shape when L = 2), one run per cell. The source's true within-group
variance is ``theta = sigma_A^2 + sigma_AxB^2 + sigma_cell^2`` (everything that differs between
two runs differing only in A). Coverage must lie in [90%, 99%]: too low is a false claim of
precision, too high (an infinitely wide interval covers always) is no information.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import optimize

from driftlab.config import ExperimentConfig
from driftlab.drift import analyze, stats
from driftlab.drift.anova import anova_components
from support.synthetic import SyntheticPlan, generate

DESIGNS = 500  # simulated plans per (levels, case)
COVERAGE_RANGE = (0.90, 0.99)  # nominal 95%; 500 designs give an SE of about 1 point
MIN_RATIO_2_LEVELS = 5.0  # a 2-level interval must span at least x5 (the chi-square one with 1 df spans x71)
ORACLE_REL = 1e-4  # REML optimum vs the ANOVA closed form (optimizer tolerance)
SIGMAS = {"main": dict(a=1.0, b=0.7, c=0.5, ab=0.0, cell=0.2),
          "interaction": dict(a=1.0, b=0.7, c=0.5, ab=0.8, cell=0.2)}


def simulate(levels: int, case: str, n: int = DESIGNS, seed: int = 0) -> np.ndarray:
    """``n`` tables of shape (levels, 2, 2): the source on axis 0 (vectorised draw)."""
    s = SIGMAS[case]
    rng = np.random.default_rng([seed, levels, len(case)])
    return (rng.normal(0, s["a"], (n, levels, 1, 1)) + rng.normal(0, s["b"], (n, 1, 2, 1))
            + rng.normal(0, s["c"], (n, 1, 1, 2)) + rng.normal(0, s["ab"], (n, levels, 2, 1))
            + rng.normal(0, s["cell"], (n, levels, 2, 2)))


def true_sd(case: str) -> float:
    s = SIGMAS[case]
    return float(np.sqrt(s["a"] ** 2 + s["ab"] ** 2 + s["cell"] ** 2))


def coverage(levels: int, case: str, *, old: bool = False, n: int = DESIGNS) -> tuple[float, np.ndarray]:
    """Share of designs whose interval covers the true SD, and every interval's upper ÷ lower."""
    tables, truth = simulate(levels, case, n), true_sd(case)
    hits, ratios = 0, []
    for y in tables:
        if old:  # the former headline: cluster bootstrap over the 4 groups (cells of the other seeds)
            lo, hi = stats.bootstrap_ci([list(y[:, j, k]) for j in range(2) for k in range(2)], n_boot=400)
        else:
            lo, hi = stats.crossed_sd_interval(y, 0)["ci95"]
        hits += lo <= truth <= hi
        ratios.append(np.inf if lo == 0 else hi / lo)
    return hits / n, np.asarray(ratios)


def test_two_level_source_covers_and_is_wide_smoke():
    for case in SIGMAS:
        cov, ratios = coverage(2, case)
        assert COVERAGE_RANGE[0] <= cov <= COVERAGE_RANGE[1], (case, cov)
        assert ratios.min() >= MIN_RATIO_2_LEVELS, (case, ratios.min())


@pytest.mark.slow
@pytest.mark.parametrize("levels", [2, 3, 5, 8])
@pytest.mark.parametrize("case", list(SIGMAS))
def test_level_aware_interval_covers_the_true_sd(levels, case):
    cov, ratios = coverage(levels, case)
    assert COVERAGE_RANGE[0] <= cov <= COVERAGE_RANGE[1], (levels, case, cov)
    if levels == 2:
        assert ratios.min() >= MIN_RATIO_2_LEVELS


@pytest.mark.slow
def test_old_bootstrap_over_groups_under_covers():
    """The former headline interval: what the review found (far below 95% with 2 or 3 levels)."""
    for levels in (2, 3):
        cov, _ = coverage(levels, "main", old=True)
        assert cov < COVERAGE_RANGE[0], (levels, cov)


def test_one_sweep_interval_is_exact_chi_square():
    """One-at-a-time: a single sweep of L levels has L - 1 df; the chi-square interval is exact."""
    rng = np.random.default_rng(3)
    for levels in (2, 3, 5, 8):
        x = rng.normal(0, 1.0, (DESIGNS, levels))
        var = x.var(axis=1, ddof=1)
        ivl = np.array([stats.sd_ci_from_var(v, levels - 1) for v in var])
        cov = np.mean((ivl[:, 0] <= 1.0) & (1.0 <= ivl[:, 1]))
        assert COVERAGE_RANGE[0] <= cov <= COVERAGE_RANGE[1], (levels, cov)


def test_zero_and_negative_estimates_give_lower_bound_zero():
    assert stats.chi2_var_ci(-0.1, 3)[0] == 0.0
    assert stats.mls_var_ci([0.0, 1.0], [1, 3], [0.25, 0.25])[0] >= 0.0
    assert stats.crossed_sd_interval(np.zeros((2, 2, 2)), 0)["ci95"] == [0.0, 0.0]


def _quickstart(**kw) -> dict:
    plan = SyntheticPlan(init=(0, 1), shuffle=(0, 1), split=(0, 1), profiles=("ref", "b"), n_eval=1000, seed=3,
                         sigmas={"init": 0.01, "shuffle": 0.005, "split": 0.008, "hardware": 0.003,
                                 "init×shuffle": 0.004, "nondeterminism": 0.004}, **kw)
    cfg = ExperimentConfig.model_validate({"name": "syn", "dataset": {"name": "digits"}, "profiles": {"auto": True}})
    return analyze(generate(plan), cfg, reference="ref")


def test_quickstart_like_report_is_level_aware():
    res = _quickstart()
    for name in ("init", "shuffle", "split", "hardware"):
        s = res["sources"][name]
        lo, hi = s["metric_sd_ci95"]
        assert s["levels"] == 2 and s["ci_method"]
        assert lo == 0 or hi / lo >= MIN_RATIO_2_LEVELS, name
        assert lo <= s["metric_sd"] <= hi
        assert s["metric_df_effective"] < 2  # one main-effect df dominates, not 4 groups
    seed = res["seed_noise"]
    assert seed["runs"] == 8 and seed["df"] == 7  # 8 distinct runs, not 12 (3 sources x 4 groups)
    var = res["variance"]
    for name in ("init", "shuffle", "split", "hardware"):
        assert var["shares"][name] is None and "not estimable from 2 levels" in var["share_notes"][name]
    for name, share in var["shares"].items():
        if share is not None:
            lo, hi = var["shares_ci95"][name]
            assert lo <= share <= hi or lo == hi
    line = next(x for x in res["summary"] if "moves accuracy most" in x)
    assert "cannot tell with 2 seeds" in line and "within" not in line
    assert res == _quickstart()  # fixed seeds: the same records give the same report


def test_claims_follow_the_interval():
    from driftlab.drift.summary import _source_line

    def result(ci, floor=0.01):
        return {"metric": {"name": "accuracy"},
                "sources": {"init": {"varied": True, "metric_sd": (ci[0] + ci[1]) / 2, "metric_sd_ci95": ci,
                                     "levels": 8, "noise_floor": floor}}}

    assert "within test-set noise" in _source_line(result([0.001, 0.009]))
    assert "above the noise floor" in _source_line(result([0.011, 0.02]))
    assert "cannot tell with 8 seeds" in _source_line(result([0.005, 0.03]))


def test_levels_advice():
    assert stats.levels_to_tell(0.5, 1.0) is not None and stats.levels_to_tell(0.99, 1.0) is None
    need = stats.levels_to_tell(0.5, 1.0)
    assert stats.sd_ci_from_var(0.25, need - 1)[1] < 1.0 < stats.sd_ci_from_var(0.25, need - 2)[1]
    assert stats.sd_interval_ratio(stats.levels_to_narrow(2.0) - 1) <= 2.0 < stats.sd_interval_ratio(
        stats.levels_to_narrow(2.0) - 2)
    assert stats.plan_advice({"init": 2, "split": 1})[0].startswith("init: 2 levels — a 95% interval on its SD spans ×71")


def _reml_fit(y: np.ndarray) -> dict[str, float]:
    """Brute force: maximise the REML likelihood of y[a, b, r] over (sigma2_A, sigma2_B, sigma2_AB, sigma2_e)."""
    la, lb, r = y.shape
    n = y.size
    ia, ib = np.meshgrid(np.arange(la), np.arange(lb), indexing="ij")
    za = np.repeat(np.eye(la)[ia.ravel()], r, axis=0)
    zb = np.repeat(np.eye(lb)[ib.ravel()], r, axis=0)
    zab = np.repeat(np.eye(la * lb), r, axis=0)
    ks = [za @ za.T, zb @ zb.T, zab @ zab.T, np.eye(n)]
    yv, x = y.reshape(-1), np.ones((n, 1))

    def neg_reml(log_s2):
        v = sum(np.exp(p) * k for p, k in zip(log_s2, ks))
        vi = np.linalg.inv(v)
        xvx = x.T @ vi @ x
        p = vi - vi @ x @ np.linalg.inv(xvx) @ x.T @ vi
        return 0.5 * (np.linalg.slogdet(v)[1] + np.linalg.slogdet(xvx)[1] + yv @ p @ yv)

    best = optimize.minimize(neg_reml, np.zeros(4), method="Nelder-Mead",
                             options={"xatol": 1e-9, "fatol": 1e-12, "maxiter": 20000, "maxfev": 20000})
    best = optimize.minimize(neg_reml, best.x, method="BFGS", options={"gtol": 1e-10})
    return dict(zip(("A", "B", "A×B", "residual"), np.exp(best.x)))


def test_anova_matches_brute_force_reml_on_a_balanced_design():
    """In a balanced design REML equals the ANOVA estimates whenever those are all positive."""
    rng = np.random.default_rng(5)
    y = (rng.normal(0, 1.0, (4, 1, 1)) + rng.normal(0, 0.8, (1, 3, 1)) + rng.normal(0, 0.6, (4, 3, 1))
         + rng.normal(0, 0.4, (4, 3, 2)))
    res = anova_components(y, ["A", "B"])
    anova = {t["name"]: t["variance_raw"] for t in res["terms"]} | {"residual": res["residual"]["variance"]}
    assert min(anova.values()) > 0  # inside the parameter space, where the two must agree
    reml = _reml_fit(y)
    for k, v in anova.items():
        assert reml[k] == pytest.approx(v, rel=ORACLE_REL), k
