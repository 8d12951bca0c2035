"""What a k-fold result says: per condition the metrics over the scored folds and its comparison
with A, one primary comparison fixed before the run, Holm's adjustment for all the others.

- A fold is scored only when its test set holds both classes (:func:`fold_exclusion`); others are
  excluded from every mean and test, with a note naming them (`excluded`).
- The primary comparison (`--primary COND@K`, default the first synthetic condition against A at
  the smallest K) keeps its raw p; every other comparison of the run (every condition, every K)
  gets its p Holm-adjusted per test over that family (:func:`adjust`).
- The corrected t-test's n_test / n_train is :func:`~lungforge.bench.scoring.stats.nb_ratio` of
  the run's folds, everywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from lungforge.bench.protocol.inputs import REFERENCE
from lungforge.bench.protocol.results import CurveResult, TaskResult, json_safe
from lungforge.bench.protocol.sources import SOURCES
from lungforge.bench.scoring.pooled import Pooled, pooled_test
from lungforge.bench.scoring.stats import Comparison, MetricStat, compare, holm, mean_std, nb_ratio
from lungforge.core.errors import ConfigError

TRAIN_KEYS = ("train_patches", "train_slices")
"""Per-fold row fields that count a condition's training items (first present wins)."""


def fold_exclusion(row: dict[str, Any]) -> str | None:
    """Why a fold's test set cannot be scored ("no test positives" / "no test negatives"), or None.
    Rows without `test_negative` (localize: AP needs nodule slices only) check positives alone."""
    if row.get("test_positive") == 0:
        return "no test positives"
    if row.get("test_negative") == 0:
        return "no test negatives"
    return None


@dataclass(frozen=True)
class PrimarySpec:
    """The comparison fixed before the run: `condition` against A at learning-curve point `point`
    ("all" outside a curve)."""

    condition: str
    point: str

    def __str__(self) -> str:
        return f"{self.condition}@{self.point}"


class PrimaryError(ConfigError):
    """A `--primary COND@K` naming no condition the run compares with A, or no point of its curve."""

    def __init__(self, message: str) -> None:
        super().__init__("primary", message)


def parse_primary(text: str | None, conditions: list[str], points: list[str]) -> PrimarySpec | None:
    """`COND@K` (or `COND`: the smallest K) checked against `conditions` (those the run compares
    with A, :func:`~lungforge.bench.protocol.crossval.compared_conditions`) and the curve's
    `points` (["all"] outside a curve); None text: the first condition at the first point (None
    without conditions). :class:`PrimaryError` naming the bad part."""
    if text is None:
        return PrimarySpec(conditions[0], points[0]) if conditions else None
    condition, _, point = text.partition("@")
    point = point or points[0]
    if condition not in conditions:
        why = (
            f"; {SOURCES} runs only where synthetic stores draw on real patients outside the benchmark (--real-split test)"
            if condition == SOURCES
            else ""
        )
        raise PrimaryError(
            f"primary {text!r}: condition {condition!r} is not compared with A in this run, expected one of {', '.join(conditions) or 'none'}{why}"
        )
    if point not in points:
        raise PrimaryError(f"primary {text!r}: K {point!r} is not a point of this run, expected one of {', '.join(points)}")
    return PrimarySpec(condition, point)


@dataclass(frozen=True)
class ConditionSummary:
    """One condition: `metrics` over the scored folds, `comparison` with A (None for A), and its
    training items per fold (`train_items`) and how many more than A's (`joined`, per fold)."""

    condition: str
    metrics: dict[str, MetricStat]
    comparison: Comparison | None
    train_items: list[int | None]
    joined: list[int | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {m: s.to_dict() for m, s in self.metrics.items()},
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
            "train_items": self.train_items,
            "joined": self.joined,
        }


@dataclass(frozen=True)
class TaskSummary:
    """A task's result summarised on `metric`: `conditions` (A first), the folds `excluded`
    {fold: reason}, the `primary` comparison and the corrected t-test's `test_train_ratio`."""

    task: str
    metric: str
    folds: int
    conditions: dict[str, ConditionSummary]
    excluded: dict[int, str]
    primary: PrimarySpec | None
    test_train_ratio: float

    @property
    def notes(self) -> list[str]:
        """One line per excluded fold."""
        return [f"fold {f} excluded from means and tests: {why}" for f, why in self.excluded.items()]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: means, std, Δ with intervals, every p with its Holm adjustment, joined counts, notes."""
        return json_safe(
            {
                "metric": self.metric,
                "folds": self.folds,
                "test_train_ratio": self.test_train_ratio,
                "primary": None if self.primary is None else str(self.primary),
                "excluded": [{"fold": f, "reason": why} for f, why in self.excluded.items()],
                "notes": self.notes,
                "conditions": {c: s.to_dict() for c, s in self.conditions.items()},
            }
        )


def _train_items(rows: list[dict[str, Any]]) -> list[int | None]:
    key = next((k for k in TRAIN_KEYS if rows and rows[0].get(k) is not None), None)
    return [None if key is None else r.get(key) for r in rows]


def _scored(values: list[Any], excluded: dict[int, str]) -> list[float]:
    """Per-fold values with excluded folds (and missing values) as NaN."""
    return [float("nan") if f in excluded or v is None else float(v) for f, v in enumerate(values)]


def comparison_of(result: TaskResult, condition: str, metric: str, excluded: dict[int, str]) -> Comparison:
    """`condition` against A on `metric` over the scored folds of `result`, with the pooled tests
    when the rows kept their predictions."""
    ratio = nb_ratio(result.config.folds)
    values = _scored(result.values(condition, metric), excluded)
    comparison = compare(values, _scored(result.values(REFERENCE, metric), excluded), ratio, condition=condition, metric=metric)
    keep = [f for f in range(len(result.folds[REFERENCE])) if f not in excluded]
    mine, theirs = Pooled.of([result.folds[condition][f] for f in keep]), Pooled.of([result.folds[REFERENCE][f] for f in keep])
    if mine is None or theirs is None or mine.target.size == 0:
        return comparison
    test = pooled_test(theirs, mine, seed=result.config.seed)
    return dataclasses.replace(comparison, pooled=test, p={**comparison.p, **test.p})


def _unadjusted_summary(result: TaskResult, metrics: tuple[str, ...], metric: str) -> TaskSummary:
    """:class:`TaskSummary` with raw p only (no primary, no adjustment yet)."""
    excluded = {f: why for f, row in enumerate(result.folds[REFERENCE]) if (why := fold_exclusion(row))}
    reference_items = _train_items(result.folds[REFERENCE])
    conditions = {}
    for condition in result.conditions:
        items = _train_items(result.folds[condition])
        conditions[condition] = ConditionSummary(
            condition,
            {m: mean_std(_scored(result.values(condition, m), excluded)) for m in metrics},
            None if condition == REFERENCE else comparison_of(result, condition, metric, excluded),
            items,
            [None if a is None or b is None else int(a - b) for a, b in zip(items, reference_items)],
        )
    return TaskSummary(result.task, metric, result.config.folds, conditions, excluded, None, nb_ratio(result.config.folds))


def adjust(comparisons: dict[Any, Comparison], primary: Any) -> dict[Any, Comparison]:
    """Every comparison with `p_holm`: the `primary` key keeps its raw p (and `primary` True); the
    others are Holm-adjusted together, test by test."""
    others = [k for k in comparisons if k != primary]
    adjusted: dict[Any, dict[str, float]] = {k: {} for k in others}
    for test in sorted({t for k in others for t in comparisons[k].p}):
        raw = [comparisons[k].p.get(test, float("nan")) for k in others]
        for k, p in zip(others, holm(raw)):
            adjusted[k][test] = p
    out = {k: dataclasses.replace(c, p_holm=adjusted[k]) for k, c in comparisons.items() if k != primary}
    if primary in comparisons:
        c = comparisons[primary]
        out[primary] = dataclasses.replace(c, primary=True, p_holm=dict(c.p))
    return {k: out[k] for k in comparisons}


def _with_comparisons(summary: TaskSummary, comparisons: dict[str, Comparison], primary: PrimarySpec | None) -> TaskSummary:
    conditions = {c: dataclasses.replace(s, comparison=comparisons.get(c, s.comparison)) for c, s in summary.conditions.items()}
    return dataclasses.replace(summary, conditions=conditions, primary=primary)


def summarize(result: TaskResult, metrics: tuple[str, ...], metric: str, primary: PrimarySpec | None = None) -> TaskSummary:
    """Summary of one k-fold run: `metrics` per condition over the scored folds, every condition
    compared with A on `metric`; `primary` (default the first synthetic condition) keeps its raw p,
    the others are Holm-adjusted."""
    summary = _unadjusted_summary(result, metrics, metric)
    primary = primary or parse_primary(None, [c for c in result.conditions if c != REFERENCE], ["all"])
    comparisons = {c: s.comparison for c, s in summary.conditions.items() if s.comparison is not None}
    return _with_comparisons(summary, adjust(comparisons, None if primary is None else primary.condition), primary)


def summarize_curve(
    curve: CurveResult, metrics: tuple[str, ...], metric: str, primary: PrimarySpec | None = None
) -> dict[str, TaskSummary]:
    """{point: summary} of a learning curve; one Holm family over every condition at every point,
    the `primary` (default: the first synthetic condition at the smallest K) left out of it."""
    summaries = {point: _unadjusted_summary(result, metrics, metric) for point, result in curve.results.items()}
    synthetic = [c for c in curve.last.conditions if c != REFERENCE] if curve.results else []
    primary = primary or parse_primary(None, synthetic, curve.points)
    family = {(p, c): s.comparison for p, summary in summaries.items() for c, s in summary.conditions.items() if s.comparison is not None}
    adjusted = adjust(family, None if primary is None else (primary.point, primary.condition))
    return {
        point: _with_comparisons(summary, {c: adjusted[(point, c)] for c in summary.conditions if (point, c) in adjusted}, primary)
        for point, summary in summaries.items()
    }


def real_nodule_slices(result: TaskResult) -> float:
    """Mean real nodule slices per fold that A trained on (NaN when rows lack them)."""
    return _mean_of_reference(result, "real_nodule_slices")


def real_nodules(result: TaskResult) -> float:
    """Mean distinct real nodules per fold that A trained on (NaN when rows lack them)."""
    return _mean_of_reference(result, "real_nodules")


def _mean_of_reference(result: TaskResult, key: str) -> float:
    values = [v for v in result.values(REFERENCE, key) if v is not None]
    return float(np.mean(values)) if values else float("nan")
