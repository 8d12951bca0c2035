"""Text cells of the statistics, shared by report.md, the learning-curve tables and the terminal tables."""

from __future__ import annotations

import math

from lungforge.bench.scoring.stats import Comparison, MetricStat

TEST_NAMES = {
    "rank_sum": "rank-sum",
    "signed_rank": "signed-rank",
    "corrected_t": "corrected t",
    "delong": "DeLong",
    "bootstrap_auroc": "bootstrap AUROC",
    "bootstrap_accuracy": "bootstrap accuracy",
}
"""Column names of the tests, by the key of their p in :attr:`Comparison.p`."""


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def pct(stat: MetricStat, compact: bool = False) -> str:
    """`mean ± std` in %, two decimals (one, without spaces, when `compact`); n/a without data."""
    if not _finite(stat.mean):
        return "n/a"
    return f"{100 * stat.mean:.1f}±{100 * stat.std:.1f}" if compact else f"{100 * stat.mean:.2f} ± {100 * stat.std:.2f}"


def p_text(value: float | None) -> str:
    return f"{value:.3g}" if _finite(value) else "n/a"


def interval(low: float, high: float, digits: int = 2, sep: str = ", ") -> str:
    """`[low, high]` in points; [n/a] when undefined."""
    if not (_finite(low) and _finite(high)):
        return "[n/a]"
    return f"[{100 * low:+.{digits}f}{sep}{100 * high:+.{digits}f}]"


def delta(c: Comparison | None, compact: bool = False) -> str:
    """Mean per-fold difference in points with its bootstrap 95 % interval; – for A itself."""
    if c is None:
        return "–"
    if not _finite(c.diff_mean):
        return "n/a"
    digits, sep = (1, ",") if compact else (2, ", ")
    return f"{100 * c.diff_mean:+.{digits}f} {interval(*c.diff_ci95, digits=digits, sep=sep)}"


def p_cell(c: Comparison | None, test: str, compact: bool = False) -> str:
    """A test's p: raw, its floor where the test has one, and its Holm adjustment (or "primary").
    Compact: `raw/holm` (`raw*` for the primary)."""
    if c is None:
        return "–"
    if test not in c.p:
        return "n/a"
    raw, holm = c.p[test], c.p_holm.get(test)
    if not _finite(raw):
        return "n/a"
    if compact:
        return f"{p_text(raw)}*" if c.primary else f"{p_text(raw)}/{p_text(holm)}"
    floor = f"≥ {p_text(c.p_min[test])}; " if test in c.p_min else ""
    adjusted = "primary" if c.primary else f"Holm {p_text(holm)}"
    return f"{p_text(raw)} ({floor}{adjusted})"


def comparison_cells(c: Comparison | None, tests: tuple[str, ...]) -> list[str]:
    """Δ [CI], then per test in `tests` its p cell; the corrected t's cell also carries its interval."""
    cells = [delta(c)]
    for test in tests:
        cell = p_cell(c, test)
        if c is not None and test == "corrected_t":
            cell += f" {interval(*c.corrected_t_ci95)}"
        cells.append(cell)
    return cells
