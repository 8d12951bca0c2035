"""Tests on pooled out-of-fold predictions (issue 24 item 6): DeLong and the patient bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lungforge.bench.scoring.pooled import Pooled, delong, pooled_test


def _brute_force_delong_variance(target, a, b):
    """The variance of AUC(b) − AUC(a) from DeLong's structural components, written out pair by pair."""
    pos, neg = target == 1, target == 0
    comps10, comps01 = [], []
    for s in (a, b):
        psi = (s[pos][:, None] > s[neg][None, :]) + 0.5 * (s[pos][:, None] == s[neg][None, :])
        comps10.append(psi.mean(axis=1))
        comps01.append(psi.mean(axis=0))
    s10, s01 = np.cov(np.stack(comps10)), np.cov(np.stack(comps01))
    cov = s10 / pos.sum() + s01 / neg.sum()
    return cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


def test_delong_matches_the_definition_and_sklearn():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 2, 60)
    a = np.round(target * 0.5 + rng.normal(0, 0.5, 60), 1)  # rounded: ties
    b = np.round(target * 1.0 + rng.normal(0, 0.5, 60), 1)
    auc_a, auc_b, p = delong(target, a, b)
    assert auc_a == pytest.approx(roc_auc_score(target, a)) and auc_b == pytest.approx(roc_auc_score(target, b))
    from scipy.stats import norm

    z = (auc_b - auc_a) / np.sqrt(_brute_force_delong_variance(target, a, b))
    assert p == pytest.approx(2 * norm.sf(abs(z)))
    assert np.isnan(delong(target, a, a)[2]) and np.isnan(delong(np.ones(5), a[:5], b[:5])[2])


def test_delong_holds_its_level_under_the_null():
    """Two equally good, correlated scorers: about 5 % of 400 trials reject at 0.05."""
    rng = np.random.default_rng(3)
    rejections = 0
    for _ in range(400):
        target = rng.integers(0, 2, 80)
        shared = rng.normal(0, 1, 80)
        a = target + shared + rng.normal(0, 1, 80)
        b = target + shared + rng.normal(0, 1, 80)
        rejections += delong(target, a, b)[2] < 0.05
    assert 0.02 <= rejections / 400 <= 0.09


def _pooled(target, score, patient) -> Pooled:
    return Pooled(np.asarray(target), np.asarray(score, np.float64), np.asarray(patient))


def test_patient_bootstrap_sees_a_clear_gain_and_no_gain_for_equal_scores():
    rng = np.random.default_rng(0)
    patient = np.repeat(np.arange(30), 6)
    target = np.tile([1, 0, 1, 0, 1, 0], 30)
    weak = 1 / (1 + np.exp(-(target * 0.3 + rng.normal(0, 1, target.size))))
    strong = 1 / (1 + np.exp(-(target * 3.0 + rng.normal(0, 1, target.size))))
    ref = _pooled(target, weak, patient)
    better = pooled_test(ref, _pooled(target, strong, patient), seed=0, resamples=500)
    assert better.patients == 30 and better.patches == 180
    assert better.auroc_diff > 0.2 and better.auroc_diff_ci95[0] > 0 and better.p["bootstrap_auroc"] < 0.01
    assert better.accuracy_diff > 0 and better.p["bootstrap_accuracy"] < 0.05 and better.p["delong"] < 1e-4
    same = pooled_test(ref, ref, seed=0, resamples=200)
    assert same.auroc_diff == 0 and same.p["bootstrap_auroc"] == 1.0
    assert pooled_test(ref, _pooled(target, strong, patient), seed=0, resamples=500) == better  # seeded
    with pytest.raises(ValueError, match="different test patches"):
        pooled_test(ref, _pooled(target[::-1], strong, patient))


def test_bootstrap_auroc_of_one_resample_is_the_weighted_auroc():
    """With every patient drawn once, the resampled AUROC is the plain AUROC."""
    from lungforge.bench.scoring.pooled import _weighted_auroc

    rng = np.random.default_rng(2)
    target = rng.integers(0, 2, 40)
    score = np.round(rng.random(40), 1)
    patient = np.arange(40) // 4
    counts = np.ones((1, 10))
    assert _weighted_auroc(counts, target, score, patient, 10)[0] == pytest.approx(roc_auc_score(target, score))
    twice = np.where(np.arange(10) == 3, 2.0, 1.0)[None, :]
    weights = twice[0][patient]
    assert _weighted_auroc(twice, target, score, patient, 10)[0] == pytest.approx(roc_auc_score(target, score, sample_weight=weights))
