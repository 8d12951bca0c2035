"""What a k-fold benchmark returns: :class:`TaskResult` for one task, :class:`CurveResult` for
one task at every learning-curve point, and their JSON (`bench detect --json`, report.json).

The per-fold rows stay plain dicts (:data:`FoldRow`): they are the JSON files of the fold log
(:mod:`lungforge.bench.protocol.foldlog`) that an interrupted run resumes from, and their keys
are the task's metrics (detect: accuracy, auroc, ...; localize: AP50, CPM, ...) plus the
training facts (`fold`, `condition`, `optimizer_steps`, `real_nodule_slices`, `real_nodules`,
`synthetic_positives` / `synthetic_negatives` (slices joined; a fold control's items added),
a fold control's `built_from` (the condition it was built from), sizes, `seconds`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from lungforge.bench.protocol.leakage import GeneratorExposure

FoldRow = dict[str, Any]
"""One (fold, condition) result as stored in the fold log; NaN where a metric is undefined."""
PREDICTIONS = "predictions"
"""The fold-row key of a task's out-of-fold predictions (detect: target, score, patient per test patch)."""


def json_safe(obj: Any) -> Any:
    """`obj` with NaN/inf floats replaced by None and tuples by lists, so the JSON is standard (no bare NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


@dataclass(frozen=True)
class TaskResult:
    """Every (fold, condition) of one task: `config` the task's config (DetectConfig or
    LocalizeConfig), `conditions` A first then the synthetic stores, `folds` {condition: one
    :data:`FoldRow` per fold, in fold order}, `leakage` each synthetic condition's generator exposure."""

    task: str
    config: Any
    conditions: tuple[str, ...]
    folds: dict[str, list[FoldRow]]
    leakage: dict[str, GeneratorExposure]

    @property
    def quick(self) -> bool:
        """Whether the config is a quick preset (not comparable to the paper)."""
        return bool(self.config.quick)

    def values(self, condition: str, key: str) -> list[Any]:
        """`key` of every fold of `condition`, in fold order (None where a row lacks it)."""
        return [row.get(key) for row in self.folds[condition]]

    def to_dict(self) -> dict[str, Any]:
        """{"task", "quick", "config", "conditions", "folds": {condition: [row]}, "leakage"}, JSON-safe;
        the rows without their out-of-fold `predictions` (kept in the fold log for the pooled tests)."""
        return json_safe(
            {
                "task": self.task,
                "quick": self.quick,
                "config": dataclasses.asdict(self.config),
                "conditions": list(self.conditions),
                "folds": {c: [{k: v for k, v in row.items() if k != PREDICTIONS} for row in rows] for c, rows in self.folds.items()},
                "leakage": {name: seen.as_dict() for name, seen in self.leakage.items()},
            }
        )


@dataclass(frozen=True)
class CurveResult:
    """A learning curve: `results` {point label ("4", …, "all"): the task's result at that K}, in
    ascending K; every point, fold and condition trained the same optimiser steps."""

    results: dict[str, TaskResult]

    @property
    def points(self) -> list[str]:
        return list(self.results)

    @property
    def last(self) -> TaskResult:
        """The result at the largest K (`all` when the curve has it): what the report's tables show."""
        return self.results[self.points[-1]]

    @property
    def leakage(self) -> dict[str, GeneratorExposure]:
        """The generator exposures (the same at every point)."""
        return next(iter(self.results.values())).leakage if self.results else {}

    @property
    def optimizer_steps(self) -> int | list[int]:
        """The budget of every point, fold and condition: one number when they all agree, else every value seen, sorted."""
        steps = sorted({row["optimizer_steps"] for r in self.results.values() for rows in r.folds.values() for row in rows})
        return steps[0] if len(steps) == 1 else steps

    @property
    def generator_nodules(self) -> dict[str, int | None]:
        """Distinct real nodules each generator's weights saw (None: unknown); model-free controls left out."""
        return {name: seen.nodules for name, seen in self.leakage.items() if not seen.model_free}

    @property
    def generator_nodule_slices(self) -> dict[str, int | None]:
        """Real nodule slices each generator's weights saw (None: unknown); model-free controls left out."""
        return {name: seen.nodule_slices for name, seen in self.leakage.items() if not seen.model_free}

    def to_dict(self) -> dict[str, Any]:
        """{"points", "results": {point: task result}, "optimizer_steps", "generator_nodules",
        "generator_nodule_slices"}, JSON-safe."""
        return {
            "points": self.points,
            "results": {point: result.to_dict() for point, result in self.results.items()},
            "optimizer_steps": self.optimizer_steps,
            "generator_nodules": self.generator_nodules,
            "generator_nodule_slices": self.generator_nodule_slices,
        }
