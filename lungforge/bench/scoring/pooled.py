"""Tests on pooled out-of-fold predictions: DeLong's test of two correlated AUROCs and a
patient-level paired bootstrap of the AUROC and accuracy differences.

Every test patch of every scored fold is predicted once by each condition (the same patches:
the test folds are real and shared), so the two conditions' predictions can be pooled over the
folds and compared on thousands of patches instead of on K fold means. Both tests compare the
pooled scores as if one model had made them; a fold's model only ranks its own fold's patches,
so a pooled AUROC also rewards calibration agreeing across folds.

- DeLong, DeLong & Clarke-Pearson (1988), fast form of Sun & Xu (2014): the covariance of the two
  AUROCs from their structural components; assumes the patches are independent (patches of one
  patient are not, so its p is optimistic when patients contribute many patches).
- The paired bootstrap resamples patients with replacement (every patch of a drawn patient, in
  both conditions at once), so it keeps the within-patient correlation; two-sided p from the
  share of resampled differences on each side of 0, floor 2 / (B + 1).
Neither knows that the training sets of the folds overlap (see the corrected t-test).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse
from scipy.stats import norm, rankdata

POOLED_RESAMPLES = 2000
CHUNK = 250


@dataclass(frozen=True)
class Pooled:
    """Predictions of the scored folds pooled: target (n,) 0/1, score (n,) nodule probability,
    patient (n,) patient id of each patch."""

    target: np.ndarray
    score: np.ndarray
    patient: np.ndarray

    @classmethod
    def of(cls, rows: list[dict[str, Any]]) -> Pooled | None:
        """The fold rows' `predictions` concatenated in fold order; None when a row has none."""
        if not rows or any("predictions" not in r for r in rows):
            return None

        def column(key: str, dtype: type) -> np.ndarray:
            return np.concatenate([np.asarray(r["predictions"][key], dtype) for r in rows])

        return cls(column("target", np.int64), column("score", np.float64), column("patient", np.int64))


@dataclass(frozen=True)
class PooledTest:
    """Condition B against A on pooled predictions: AUROCs, the AUROC and accuracy (threshold 0.5)
    differences B − A with patient-bootstrap 95 % intervals, and the p of DeLong and of the bootstrap."""

    patients: int
    patches: int
    auroc: tuple[float, float]
    auroc_diff: float
    auroc_diff_ci95: tuple[float, float]
    accuracy_diff: float
    accuracy_diff_ci95: tuple[float, float]
    p: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "patients": self.patients,
            "patches": self.patches,
            "auroc_reference": self.auroc[0],
            "auroc": self.auroc[1],
            "auroc_diff": self.auroc_diff,
            "auroc_diff_ci95": list(self.auroc_diff_ci95),
            "accuracy_diff": self.accuracy_diff,
            "accuracy_diff_ci95": list(self.accuracy_diff_ci95),
        }


def delong(target: np.ndarray, score_a: np.ndarray, score_b: np.ndarray) -> tuple[float, float, float]:
    """(AUROC of a, AUROC of b, two-sided p of their difference) by DeLong's test on the same
    items; NaN p without both classes or with zero variance of the difference."""
    pos = np.asarray(target).astype(bool)
    m, n = int(pos.sum()), int((~pos).sum())
    if m == 0 or n == 0:
        return float("nan"), float("nan"), float("nan")
    aucs, v10, v01 = [], [], []
    for s in (np.asarray(score_a, np.float64), np.asarray(score_b, np.float64)):
        rank_all = rankdata(s)
        rank_pos, rank_neg = rankdata(s[pos]), rankdata(s[~pos])
        aucs.append(float((rank_all[pos].sum() - m * (m + 1) / 2) / (m * n)))
        v10.append((rank_all[pos] - rank_pos) / n)
        v01.append(1.0 - (rank_all[~pos] - rank_neg) / m)
    s10 = np.cov(np.stack(v10)) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.stack(v01)) if n > 1 else np.zeros((2, 2))
    cov = s10 / m + s01 / n
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    if not var > 0:
        return aucs[0], aucs[1], float("nan")
    z = (aucs[1] - aucs[0]) / np.sqrt(var)
    return aucs[0], aucs[1], float(2 * norm.sf(abs(z)))


def _per_patient(values: np.ndarray, patient: np.ndarray, column: np.ndarray, n_patients: int, n_columns: int) -> sparse.csr_matrix:
    """(P, C) sparse sums of `values` per (patient, column)."""
    return sparse.csr_matrix((values, (patient, column)), shape=(n_patients, n_columns))


def _weighted_auroc(counts: np.ndarray, target: np.ndarray, score: np.ndarray, patient: np.ndarray, n_patients: int) -> np.ndarray:
    """(B,) AUROC of every resample whose patient multiplicities are `counts` (B, P) (ties count 1/2)."""
    values, column = np.unique(score, return_inverse=True)
    pos = target.astype(bool)
    w_pos = np.asarray(counts @ _per_patient(pos.astype(np.float64), patient, column, n_patients, values.size))
    w_neg = np.asarray(counts @ _per_patient((~pos).astype(np.float64), patient, column, n_patients, values.size))
    below = np.cumsum(w_neg, axis=1) - w_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w_pos * (below + 0.5 * w_neg)).sum(axis=1) / (w_pos.sum(axis=1) * w_neg.sum(axis=1))


def _bootstrap_p(diffs: np.ndarray) -> float:
    """Two-sided bootstrap p of a zero difference: twice the smaller tail share, (count + 1) / (B + 1)."""
    d = diffs[np.isfinite(diffs)]
    if d.size == 0:
        return float("nan")
    tail = min((d <= 0).sum(), (d >= 0).sum())
    return float(min(1.0, 2 * (tail + 1) / (d.size + 1)))


def _percentile_ci(diffs: np.ndarray) -> tuple[float, float]:
    """Percentile 95 % interval of the finite resampled differences (NaN without any)."""
    if not np.isfinite(diffs).any():
        return float("nan"), float("nan")
    low, high = np.nanpercentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def pooled_test(reference: Pooled, other: Pooled, seed: int = 0, resamples: int = POOLED_RESAMPLES) -> PooledTest:
    """`other` against `reference` on the same pooled patches (ValueError when their targets or
    patients differ): DeLong's p on the AUROCs, and the patient-level paired bootstrap (patients
    drawn with replacement, seeded by `seed`) of the AUROC and accuracy differences."""
    if not (np.array_equal(reference.target, other.target) and np.array_equal(reference.patient, other.patient)):
        raise ValueError("pooled predictions of the two conditions cover different test patches")
    target = reference.target
    auc_a, auc_b, p_delong = delong(target, reference.score, other.score)
    patients, patient = np.unique(reference.patient, return_inverse=True)
    n_p = patients.size
    correct = [((s > 0.5) == target.astype(bool)).astype(np.float64) for s in (reference.score, other.score)]
    items = np.bincount(patient, minlength=n_p).astype(np.float64)
    hits = [np.bincount(patient, weights=c, minlength=n_p) for c in correct]
    rng = np.random.default_rng([seed, 0xB007])
    d_auc, d_acc = [], []
    for start in range(0, resamples, CHUNK):
        b = min(CHUNK, resamples - start)
        counts = np.stack([np.bincount(rng.integers(0, n_p, n_p), minlength=n_p) for _ in range(b)]).astype(np.float64)
        d_auc.append(
            _weighted_auroc(counts, target, other.score, patient, n_p) - _weighted_auroc(counts, target, reference.score, patient, n_p)
        )
        d_acc.append((counts @ hits[1] - counts @ hits[0]) / (counts @ items))
    auc_diffs, acc_diffs = np.concatenate(d_auc), np.concatenate(d_acc)
    return PooledTest(
        patients=int(n_p),
        patches=int(target.size),
        auroc=(auc_a, auc_b),
        auroc_diff=auc_b - auc_a,
        auroc_diff_ci95=_percentile_ci(auc_diffs),
        accuracy_diff=float(correct[1].mean() - correct[0].mean()) if target.size else float("nan"),
        accuracy_diff_ci95=_percentile_ci(acc_diffs),
        p={"delong": p_delong, "bootstrap_auroc": _bootstrap_p(auc_diffs), "bootstrap_accuracy": _bootstrap_p(acc_diffs)},
    )
