"""Pairwise comparisons: the exact shortcuts agree with pair-by-pair hand computation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from driftlab.drift.pairs import compare, first_parting_epoch, label_disagreement
from driftlab.drift.runs import Run

EXACT = 1e-12
FLOAT32 = 1e-6


def run(pred, *, digest="d", weights=None, loss=(1.0, 0.5, 0.25), task="classification", key="k") -> Run:
    pred = np.asarray(pred, dtype=np.float32)
    return Run(key=key, profile="p", init_seed=0, shuffle_seed=0, split_seed=0, repeat=0, deterministic=True,
               metrics={}, loss=np.asarray(loss, dtype=np.float64), predictions=pred,
               labels=np.argmax(pred, axis=1) if task == "classification" else None,
               weights=None if weights is None else np.asarray(weights, dtype=np.float32), weights_kind="full",
               weights_digest=digest, fit_s=1.0, n_eval=len(pred))


def onehot(labels, n=3):
    return np.eye(n)[labels]


def test_disagreement_on_a_hand_fixture():
    # Three runs, four examples. Pairs: (a,b) differ on 1 of 4, (a,c) on 2, (b,c) on 1 -> mean 4/12.
    a, b, c = [0, 1, 2, 0], [0, 1, 2, 1], [0, 2, 2, 1]
    res = compare([[run(onehot(a), digest="x"), run(onehot(b), digest="x"), run(onehot(c), digest="y")]],
                  "classification")
    assert res["pairs"] == 3
    assert res["disagreement"] == pytest.approx(4 / 12, abs=EXACT)
    assert res["identical_share"] == pytest.approx(1 / 3, abs=EXACT)  # only (a,b) share a digest
    assert res["max_abs_diff"] == pytest.approx(1.0, abs=FLOAT32)


def test_label_shortcut_equals_pair_loop():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=(6, 50))
    brute = np.mean([np.mean(labels[i] != labels[j]) for i, j in itertools.combinations(range(6), 2)])
    assert label_disagreement(labels) / 15 == pytest.approx(brute, abs=EXACT)


def test_regression_rms_and_max_abs_by_hand():
    # a=[0,0], b=[3,4], c=[0,0]: squared diffs per pair: (a,b) mean 12.5, (a,c) 0, (b,c) 12.5
    runs = [run([0.0, 0.0], task="regression"), run([3.0, 4.0], task="regression"),
            run([0.0, 0.0], task="regression")]
    res = compare([runs], "regression")
    assert res["rms_diff"] == pytest.approx(np.sqrt(25 / 3), abs=FLOAT32)
    assert res["disagreement"] == res["rms_diff"]  # regression: disagreement is the RMS difference
    assert res["max_abs_diff"] == pytest.approx(4.0, abs=FLOAT32)


def test_correlation_weight_distance_and_parting_epoch():
    p1 = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]
    p2 = [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
    w1, w2 = [3.0, 4.0], [0.0, 0.0]  # |w1-w2| = 5; mean norm (5 + 0) / 2 = 2.5 -> relative distance 2
    res = compare([[run(p1, weights=w1, loss=(1.0, 0.5, 0.2)), run(p2, weights=w2, loss=(1.0, 0.5, 0.3))]],
                  "classification")
    expected = np.corrcoef(np.ravel(p1), np.ravel(p2))[0, 1]
    assert res["correlation"] == pytest.approx(expected, abs=FLOAT32)
    assert res["weight_distance"] == pytest.approx(2.0, abs=FLOAT32)
    assert res["first_parting_epoch"] == 3
    assert first_parting_epoch([np.array([1.0, 0.5]), np.array([1.0, 0.5])]) is None


def test_identical_runs_are_identical_everywhere():
    p = onehot([0, 1, 2])
    res = compare([[run(p, weights=[1.0, 2.0]), run(p, weights=[1.0, 2.0])]], "classification")
    assert res["disagreement"] == 0 and res["max_abs_diff"] == 0 and res["rms_diff"] == 0
    assert res["identical_share"] == 1.0 and res["weight_distance"] == 0.0 and res["correlation"] == pytest.approx(1.0)
    assert compare([[run(p)]], "classification") == {}  # one run: nothing to compare
