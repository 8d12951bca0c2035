"""The report of `bench all` as typed sections (:class:`BenchReport`); `to_dict()` is report.json.

Statistics inside the sections are the dataclasses of :mod:`lungforge.bench.scoring.summary`
(an undefined statistic is NaN there and null in the JSON).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lungforge.bench.protocol.controls import Separation
from lungforge.bench.protocol.detect import QUICK_LABEL
from lungforge.bench.protocol.inputs import REFERENCE
from lungforge.bench.protocol.leakage import leakage_warning
from lungforge.bench.protocol.results import CurveResult, TaskResult, json_safe
from lungforge.bench.protocol.verdict import Verdict
from lungforge.bench.scoring.fid import FidConfig, FidResult
from lungforge.bench.scoring.fidelity import FidelityResult
from lungforge.bench.scoring.summary import TaskSummary

TITLE = "lungforge downstream benchmark"
TEST_METRIC = {"detect": "auroc", "localize": "AP50"}
"""The primary metric of each task, that conditions are compared on (against A, controls, learning curves)."""


def report_title(quick: bool) -> str:
    return f"{TITLE} — {QUICK_LABEL}" if quick else TITLE


@dataclass(frozen=True)
class Budget:
    """Optimiser steps per fold of every condition (None where a fold row lacks them)."""

    steps: dict[str, list[int | None]]

    @classmethod
    def of(cls, result: TaskResult) -> Budget:
        return cls({c: result.values(c, "optimizer_steps") for c in result.conditions})

    @property
    def equal(self) -> bool:
        """Whether every condition trained A's steps in every fold."""
        return all(v == self.steps[REFERENCE] for v in self.steps.values())

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "equal": self.equal}


@dataclass(frozen=True)
class TaskReport:
    """One task's section: its k-fold result, `summary` (:func:`~lungforge.bench.scoring.summary.summarize`)
    and training budget."""

    result: TaskResult
    summary: TaskSummary
    budget: Budget

    def to_dict(self) -> dict[str, Any]:
        return {**self.result.to_dict(), "summary": self.summary.to_dict(), "budget": self.budget.to_dict()}


@dataclass(frozen=True)
class CurveSection:
    """One task's learning curve and its `table` of `metric`: a summary per point (:func:`~lungforge.bench.protocol.curves.curve_table`)."""

    curve: CurveResult
    metric: str
    table: dict[str, TaskSummary]

    def to_dict(self) -> dict[str, Any]:
        """The curve without its per-point results (they are in the fold logs), plus the table."""
        curve = self.curve.to_dict()
        return {**{k: v for k, v in curve.items() if k != "results"}, "table": {p: s.to_dict() for p, s in self.table.items()}}


@dataclass(frozen=True)
class FidSection:
    """FID under `config`: the `result`, or None and the `reason` it is missing (no Inception weights)."""

    config: FidConfig
    result: FidResult | None
    reason: str | None = None

    @property
    def available(self) -> bool:
        return self.result is not None

    @property
    def warnings(self) -> list[str]:
        return [] if self.result is None else self.result.warnings

    def to_dict(self) -> dict[str, Any]:
        body = {"available": True, **self.result.to_dict()} if self.result is not None else {"available": False, "reason": self.reason}
        return {**body, "config": dataclasses.asdict(self.config)}


@dataclass(frozen=True)
class BenchReport:
    """What `bench all` measured on one real store and its synthetic conditions: FID, label
    fidelity (None when not run), the selection rule's effect per condition (`selection`, one
    record each), detection and localization (at K = all, or the largest K, on a learning curve),
    the controls' separation per task (None without `--controls`), the learning curves per task
    (None without `--real-nodules`), the figures (paths relative to the report folder) and,
    with `--controls`, each generator's verdict per task (helpful only when it beats A, classic
    and blob: :mod:`lungforge.bench.protocol.verdict`)."""

    device: str
    real: Path
    synthetic: dict[str, Path]
    fid: FidSection
    fidelity: FidelityResult | None
    selection: dict[str, dict[str, Any]]
    detect: TaskReport
    localize: TaskReport
    controls: dict[str, Separation] | None
    curves: dict[str, CurveSection] | None
    figures: list[str]
    verdicts: dict[str, list[Verdict]] | None = None

    @property
    def quick(self) -> bool:
        return self.detect.result.quick or self.localize.result.quick

    @property
    def title(self) -> str:
        return report_title(self.quick)

    @property
    def warning(self) -> str | None:
        """The report's first line when generator leakage was allowed and is present or unknown."""
        return leakage_warning(self.detect.result.leakage)

    def to_dict(self) -> dict[str, Any]:
        """report.json: standard JSON (an undefined number is null)."""
        return json_safe(
            {
                "warning": self.warning,
                "title": self.title,
                "quick": self.quick,
                "device": self.device,
                "real": str(self.real),
                "synthetic": {name: str(path) for name, path in self.synthetic.items()},
                "fid": self.fid.to_dict(),
                "fidelity": None if self.fidelity is None else self.fidelity.to_dict(),
                "selection": self.selection,
                "detect": self.detect.to_dict(),
                "localize": self.localize.to_dict(),
                "controls": None if self.controls is None else {task: s.to_dict() for task, s in self.controls.items()},
                "verdicts": None if self.verdicts is None else {task: [v.to_dict() for v in vs] for task, vs in self.verdicts.items()},
                "curves": None if self.curves is None else {task: c.to_dict() for task, c in self.curves.items()},
                "figures": self.figures,
            }
        )
