"""Fold statistics: mean ± std per condition and comparisons of two conditions over the same folds.

The paper's Table 1 reports the Wilcoxon rank-sum p of each condition against A; it treats the
folds as independent samples. The folds are paired (both conditions are tested on the same test
fold), so the paired Wilcoxon signed-rank test, the mean per-fold difference and its bootstrap
95 % interval are reported beside it, each p with the smallest value its test can reach with K
folds: with few folds a small p is impossible, whatever the effect.

Neither test knows that the K training sets overlap (each pair of folds shares (K−2)/(K−1) of
its real training data), which makes per-fold differences positively correlated and every
test that treats them as independent too eager. The corrected resampled t-test of Nadeau &
Bengio (2003) inflates the variance of the mean difference from s²/K to (1/K + n_test/n_train)·s²
to account for it; it is reported beside the signed-rank test, with its 95 % interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu, ranksums, wilcoxon
from scipy.stats import t as student_t

from lungforge.bench.protocol.inputs import REFERENCE

BOOTSTRAP_RESAMPLES = 10_000
PAPER_DETECT_P = (8.2e-5, 9.54e-6)
"""The paper's detection p-values (Table 1-I, B and C vs A, 10 folds)."""
SIZE_KEYS = (("test_patches", "train_patches"), ("test_slices", "train_slices"))
"""Per-fold record fields (test size, training size) that give n_test / n_train, first present wins."""


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


def min_exact_rank_sum_p(k1: int, k2: int) -> float:
    """Smallest two-sided p of the exact Mann–Whitney test with k1 and k2 folds: 2 / C(k1 + k2, k1)."""
    if min(k1, k2) < 1:
        return float("nan")
    return float(mannwhitneyu(np.arange(k1) + k2, np.arange(k2), method="exact").pvalue)


def corrected_t_test(diff: np.ndarray, test_train_ratio: float) -> dict[str, Any]:
    """Corrected resampled t-test (Nadeau & Bengio 2003) of per-fold differences `diff` (K,).

    t = mean(diff) / sqrt((1/K + test_train_ratio) · s²), s² the sample variance (ddof 1), with
    K − 1 degrees of freedom; `test_train_ratio` is n_test / n_train of one fold. Returns
    {"t", "p" (two-sided), "ci95": [low, high] of the mean difference, "variance_factor"
    (1/K + ratio)}. With zero variance, p is 1 for a zero mean and 0 otherwise; fewer than 2
    folds give NaNs.
    """
    k = int(diff.size)
    if k < 2 or not np.isfinite(test_train_ratio) or test_train_ratio < 0:
        return {"t": float("nan"), "p": float("nan"), "ci95": [float("nan"), float("nan")], "variance_factor": float("nan")}
    factor = 1.0 / k + test_train_ratio
    mean = float(diff.mean())
    se = float(np.sqrt(factor * diff.var(ddof=1)))
    if se == 0.0:
        t, p = (0.0, 1.0) if mean == 0.0 else (float(np.copysign(np.inf, mean)), 0.0)
    else:
        t = mean / se
        p = float(2 * student_t.sf(abs(t), k - 1))
    half = float(student_t.ppf(0.975, k - 1)) * se
    return {"t": t, "p": p, "ci95": [mean - half, mean + half], "variance_factor": factor}


def test_train_ratio(rows: list[dict[str, Any]]) -> float | None:
    """Mean n_test / n_train over the per-fold records `rows` (the first :data:`SIZE_KEYS` pair they
    all carry with a positive training size), None when they carry none."""
    for test_key, train_key in SIZE_KEYS:
        pairs = [(r.get(test_key), r.get(train_key)) for r in rows]
        if pairs and all(te is not None and tr for te, tr in pairs):
            return float(np.mean([te / tr for te, tr in pairs]))
    return None


def bootstrap_mean_ci(diff: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of `diff` (folds resampled with replacement)."""
    if diff.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def compare(values: list[float], reference: list[float], seed: int = 0, ratio: float | None = None) -> dict[str, Any]:
    """`values` against `reference` over the same folds (fractions, per fold).

    Returns {"p_rank_sum", "p_rank_sum_min", "p_signed_rank", "p_signed_rank_min", "diff_mean",
    "diff_ci95": [low, high] (bootstrap), "p_corrected_t", "corrected_t_ci95": [low, high],
    "test_train_ratio", "paired_folds"}; the *_min entries are the smallest p each test can reach
    with these fold counts. The corrected t-test uses `ratio` = n_test / n_train, by default
    1/(K − 1) (K-fold cross-validation with equal folds).
    """
    diff = _paired(values, reference)
    if ratio is None:
        ratio = 1.0 / (diff.size - 1) if diff.size > 1 else float("nan")
    corrected = corrected_t_test(diff, ratio)
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
        "p_corrected_t": corrected["p"],
        "corrected_t_ci95": corrected["ci95"],
        "test_train_ratio": ratio,
        "paired_folds": int(diff.size),
    }


def summarize(folds: dict[str, list[dict[str, Any]]], metrics: tuple[str, ...], test_metric: str) -> dict[str, Any]:
    """Per condition: {metric: {mean, std, n}}, "p_value" (rank-sum, as the paper) and "comparison"
    (:func:`compare`) of `test_metric` against condition A (None for A itself), from the per-fold
    rows {condition: [row]} of a `run_detect` / `run_localize` result. The corrected t-test's
    n_test / n_train comes from A's fold rows (:func:`test_train_ratio`): the overlap it corrects
    for is in the real data."""
    reference = [f[test_metric] for f in folds[REFERENCE]]
    ratio = test_train_ratio(folds[REFERENCE])
    summary = {}
    for condition, rows in folds.items():
        comparison = None if condition == REFERENCE else compare([r[test_metric] for r in rows], reference, ratio=ratio)
        summary[condition] = {
            "metrics": {m: mean_std([r[m] for r in rows]) for m in metrics},
            "p_value": None if comparison is None else comparison["p_rank_sum"],
            "p_metric": test_metric,
            "comparison": comparison,
        }
    return summary


def paper_p_note(folds: int = 10) -> str:
    """One paragraph: the paper's detection p-values against the smallest two-sided p a `folds`-vs-`folds`
    rank-sum test can give, exact (Mann–Whitney) and by the normal approximation of scipy's ranksums."""
    exact = min_exact_rank_sum_p(folds, folds)
    normal = min_rank_sum_p(folds, folds)
    reachable = [p for p in PAPER_DETECT_P if p >= exact]
    unreachable = [p for p in PAPER_DETECT_P if p < exact]
    text = (
        f"The smallest two-sided Wilcoxon rank-sum p of {folds} folds against {folds} is {exact:.3g} with the exact "
        f"(Mann–Whitney) distribution and {normal:.3g} with the normal approximation used here (scipy.stats.ranksums)."
    )
    if reachable:
        text += f" The paper's {' and '.join(f'{p:.3g}' for p in reachable)} lies above the exact floor, so a rank-sum test can reach it."
    if unreachable:
        text += (
            f" The paper's {' and '.join(f'{p:.3g}' for p in unreachable)} lies below it, so no two-sided rank-sum test "
            f"on per-fold values can have produced it (only a one-sided exact test, floor {exact / 2:.3g}, could)."
        )
    return text
