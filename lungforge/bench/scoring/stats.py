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
to account for it; it is reported beside the signed-rank test, with its 95 % interval. One rule
gives its n_test / n_train everywhere (:func:`nb_ratio`): 1 / (F − 1) for F-fold cross-validation.

With several comparisons (every condition against A, at every learning-curve point), each test's
p-values are Holm-adjusted together (:func:`holm`) except the one primary comparison fixed
before the run (:mod:`lungforge.bench.scoring.summary`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu, ranksums, wilcoxon
from scipy.stats import t as student_t

from lungforge.bench.protocol.inputs import REFERENCE

BOOTSTRAP_RESAMPLES = 10_000
PAPER_DETECT_P = (8.2e-5, 9.54e-6)
"""The paper's detection p-values (Table 1-I, B and C vs A, 10 folds)."""
FOLD_TESTS = ("rank_sum", "signed_rank", "corrected_t")
"""The per-fold tests of a :class:`Comparison`, by the key of their p in `Comparison.p`."""


@dataclass(frozen=True)
class MetricStat:
    """Mean and sample standard deviation (ddof 1; 0 for one value) of a metric over `n` finite folds."""

    mean: float
    std: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def mean_std(values: list[float]) -> MetricStat:
    """:class:`MetricStat` of the finite values (NaN mean and std when there are none)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return MetricStat(float("nan"), float("nan"), 0)
    return MetricStat(float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0, int(x.size))


def nb_ratio(folds: int) -> float:
    """The n_test / n_train of the corrected t-test for `folds`-fold cross-validation: 1 / (folds − 1),
    one test fold against the other folds' training data (Bouckaert & Frank 2004). Used for every
    comparison (tables, learning curves, benchmarks/power.py), whatever the training subset K."""
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    return 1.0 / (folds - 1)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of `p_values` (one family): the i-th smallest of m finite p
    becomes max over j ≤ i of min(1, (m − j + 1) · p_(j)); NaN stays NaN and does not count in m."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    order = finite[np.argsort(p[finite], kind="stable")]
    m = order.size
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * float(p[index])))
        out[index] = running
    return out.tolist()


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


@dataclass(frozen=True)
class CorrectedT:
    """The corrected resampled t-test of per-fold differences: `t`, two-sided `p`, the 95 % interval
    of the mean difference and the variance factor 1/K + n_test/n_train."""

    t: float
    p: float
    ci95: tuple[float, float]
    variance_factor: float


def corrected_t_test(diff: np.ndarray, test_train_ratio: float) -> CorrectedT:
    """Corrected resampled t-test (Nadeau & Bengio 2003) of per-fold differences `diff` (K,).

    t = mean(diff) / sqrt((1/K + test_train_ratio) · s²), s² the sample variance (ddof 1), with
    K − 1 degrees of freedom; `test_train_ratio` is n_test / n_train of one fold (:func:`nb_ratio`).
    With zero variance, p is 1 for a zero mean and 0 otherwise; fewer than 2 folds give NaNs.
    """
    k = int(diff.size)
    nan = float("nan")
    if k < 2 or not np.isfinite(test_train_ratio) or test_train_ratio < 0:
        return CorrectedT(nan, nan, (nan, nan), nan)
    factor = 1.0 / k + test_train_ratio
    mean = float(diff.mean())
    se = float(np.sqrt(factor * diff.var(ddof=1)))
    if se == 0.0:
        t, p = (0.0, 1.0) if mean == 0.0 else (float(np.copysign(np.inf, mean)), 0.0)
    else:
        t = mean / se
        p = float(2 * student_t.sf(abs(t), k - 1))
    half = float(student_t.ppf(0.975, k - 1)) * se
    return CorrectedT(t, p, (mean - half, mean + half), factor)


def bootstrap_mean_ci(diff: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of `diff` (folds resampled with replacement)."""
    if diff.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


@dataclass(frozen=True)
class Comparison:
    """`metric` of `condition` against `reference` over the same folds (fractions, per fold).

    `diff_mean` the mean per-fold difference, `diff_ci95` its percentile-bootstrap interval over
    folds, `corrected_t_ci95` the corrected t-test's; `p` the raw p of every test (:data:`FOLD_TESTS`,
    plus the pooled tests of :mod:`lungforge.bench.scoring.pooled` when predictions were kept),
    `p_min` the smallest p the rank tests can reach with these folds, `p_holm` each p
    Holm-adjusted over its test's family (the raw p for the `primary` comparison; empty until
    :func:`~lungforge.bench.scoring.summary.adjust` runs); `pooled` the pooled tests' effects.
    """

    condition: str
    reference: str
    metric: str
    diff_mean: float
    diff_ci95: tuple[float, float]
    corrected_t_ci95: tuple[float, float]
    test_train_ratio: float
    paired_folds: int
    p: dict[str, float]
    p_min: dict[str, float]
    pooled: Any = None
    primary: bool = False
    p_holm: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON record: effects, and per test {"raw", "holm", "min"} (min only for the rank tests)."""
        tests = {
            name: {"raw": p, "holm": self.p_holm.get(name), **({"min": self.p_min[name]} if name in self.p_min else {})}
            for name, p in self.p.items()
        }
        return {
            "condition": self.condition,
            "reference": self.reference,
            "metric": self.metric,
            "primary": self.primary,
            "diff_mean": self.diff_mean,
            "diff_ci95": list(self.diff_ci95),
            "corrected_t_ci95": list(self.corrected_t_ci95),
            "test_train_ratio": self.test_train_ratio,
            "paired_folds": self.paired_folds,
            "p": tests,
            "pooled": None if self.pooled is None else self.pooled.to_dict(),
        }


def compare(
    values: list[float],
    reference: list[float],
    ratio: float,
    seed: int = 0,
    condition: str = "",
    reference_name: str = REFERENCE,
    metric: str = "",
) -> Comparison:
    """:class:`Comparison` of per-fold `values` against `reference` (NaN folds dropped pairwise);
    the corrected t-test uses `ratio` = n_test / n_train (:func:`nb_ratio`)."""
    diff = _paired(values, reference)
    corrected = corrected_t_test(diff, ratio)
    n_a = int(np.isfinite(np.asarray(values, dtype=np.float64)).sum())
    n_b = int(np.isfinite(np.asarray(reference, dtype=np.float64)).sum())
    return Comparison(
        condition=condition,
        reference=reference_name,
        metric=metric,
        diff_mean=float(diff.mean()) if diff.size else float("nan"),
        diff_ci95=bootstrap_mean_ci(diff, seed),
        corrected_t_ci95=corrected.ci95,
        test_train_ratio=ratio,
        paired_folds=int(diff.size),
        p={"rank_sum": rank_sum_p(values, reference), "signed_rank": signed_rank_p(values, reference), "corrected_t": corrected.p},
        p_min={"rank_sum": min_rank_sum_p(n_a, n_b), "signed_rank": min_signed_rank_p(int(np.count_nonzero(diff)) or diff.size)},
    )


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
