"""Fold statistics as in the paper's Table 1: mean ± std per condition, Wilcoxon rank-sum p vs A."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import ranksums

from lungforge.bench.inputs import REFERENCE


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


def summarize(result: dict[str, Any], metrics: tuple[str, ...], test_metric: str) -> dict[str, Any]:
    """Per condition: {metric: {mean, std, n}} and "p_value" of `test_metric` against condition A
    (None for A itself), from a `run_detect`/`run_localize` result."""
    folds = result["folds"]
    reference = [f[test_metric] for f in folds[REFERENCE]]
    summary = {}
    for condition, rows in folds.items():
        summary[condition] = {
            "metrics": {m: mean_std([r[m] for r in rows]) for m in metrics},
            "p_value": None if condition == REFERENCE else rank_sum_p([r[test_metric] for r in rows], reference),
            "p_metric": test_metric,
        }
    return summary
