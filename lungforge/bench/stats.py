"""Fold statistics: mean ± std per condition and comparisons of two conditions over the same folds.

The paper's Table 1 reports the Wilcoxon rank-sum p of each condition against A; it treats the
folds as independent samples. The folds are paired (both conditions are tested on the same test
fold), so the paired Wilcoxon signed-rank test, the mean per-fold difference and its bootstrap
95 % interval are reported beside it, each p with the smallest value its test can reach with K
folds: with few folds a small p is impossible, whatever the effect.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import ranksums, wilcoxon

from lungforge.bench.inputs import REFERENCE

BOOTSTRAP_RESAMPLES = 10_000
PAPER_DETECT_P = (8.2e-5, 9.54e-6)
"""The paper's detection p-values (Table 1-I, B and C vs A, 10 folds)."""


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of the finite values."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if x.size > 1 else 0.0, "n": int(x.size)}


def rank_sum_p(values: list[float], reference: list[float]) -> float:
    """Two-sided Wilcoxon rank-sum p-value of `values` against `reference` (NaN folds dropped)."""
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size == 0 or b.size == 0:
        return float("nan")
    return float(ranksums(a, b).pvalue)


def _paired(values: list[float], reference: list[float]) -> np.ndarray:
    """Per-fold differences values[k] − reference[k] over the folds where both are finite."""
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired folds need equal counts, got {a.size} and {b.size}")
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep] - b[keep]


def signed_rank_p(values: list[float], reference: list[float]) -> float:
    """Two-sided paired Wilcoxon signed-rank p of per-fold `values` against `reference`.

    Folds with a NaN on either side are dropped; zero differences are dropped (Wilcoxon's
    convention), and all-zero differences give p = 1.
    """
    diff = _paired(values, reference)
    if diff.size == 0:
        return float("nan")
    if not np.any(diff != 0):
        return 1.0
    return float(wilcoxon(diff, zero_method="wilcox").pvalue)


def min_rank_sum_p(k1: int, k2: int) -> float:
    """Smallest two-sided rank-sum p with k1 and k2 folds (every value of one side above the other)."""
    if min(k1, k2) < 1:
        return float("nan")
    return float(ranksums(np.arange(k1) + k2, np.arange(k2)).pvalue)


def min_signed_rank_p(k: int) -> float:
    """Smallest two-sided signed-rank p with k paired folds (every difference of one sign): 2 / 2^k."""
    if k < 1:
        return float("nan")
    return float(wilcoxon(np.arange(1, k + 1, dtype=np.float64)).pvalue)


def bootstrap_mean_ci(diff: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of `diff` (folds resampled with replacement)."""
    if diff.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def compare(values: list[float], reference: list[float], seed: int = 0) -> dict[str, Any]:
    """`values` against `reference` over the same folds (fractions, per fold).

    Returns {"p_rank_sum", "p_rank_sum_min", "p_signed_rank", "p_signed_rank_min", "diff_mean",
    "diff_ci95": [low, high], "paired_folds"}; the *_min entries are the smallest p each test can
    reach with these fold counts.
    """
    diff = _paired(values, reference)
    n_a = int(np.isfinite(np.asarray(values, dtype=np.float64)).sum())
    n_b = int(np.isfinite(np.asarray(reference, dtype=np.float64)).sum())
    low, high = bootstrap_mean_ci(diff, seed)
    return {
        "p_rank_sum": rank_sum_p(values, reference),
        "p_rank_sum_min": min_rank_sum_p(n_a, n_b),
        "p_signed_rank": signed_rank_p(values, reference),
        "p_signed_rank_min": min_signed_rank_p(int(np.count_nonzero(diff)) or diff.size),
        "diff_mean": float(diff.mean()) if diff.size else float("nan"),
        "diff_ci95": [low, high],
        "paired_folds": int(diff.size),
    }


def summarize(result: dict[str, Any], metrics: tuple[str, ...], test_metric: str) -> dict[str, Any]:
    """Per condition: {metric: {mean, std, n}}, "p_value" (rank-sum, as the paper) and "comparison"
    (:func:`compare`) of `test_metric` against condition A (None for A itself), from a
    `run_detect` / `run_localize` result."""
    folds = result["folds"]
    reference = [f[test_metric] for f in folds[REFERENCE]]
    summary = {}
    for condition, rows in folds.items():
        comparison = None if condition == REFERENCE else compare([r[test_metric] for r in rows], reference)
        summary[condition] = {
            "metrics": {m: mean_std([r[m] for r in rows]) for m in metrics},
            "p_value": None if comparison is None else comparison["p_rank_sum"],
            "p_metric": test_metric,
            "comparison": comparison,
        }
    return summary


def paper_p_note(folds: int = 10) -> str:
    """One sentence: the paper's detection p-values against the smallest p a `folds`-fold rank-sum can give."""
    floor = min_rank_sum_p(folds, folds)
    reported = " and ".join(f"{p:.3g}" for p in PAPER_DETECT_P)
    return (
        f"The paper's detection p-values ({reported}) are below {floor:.3g}, the smallest two-sided Wilcoxon rank-sum p "
        f"that {folds} folds against {folds} can produce, so they cannot come from this test on per-fold values."
    )
