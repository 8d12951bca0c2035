"""The k-fold driver shared by `bench detect` and `bench localize` (DESIGN §9).

For every (fold, condition) not already saved in the fold log, a task-specific runner trains on
the other folds' real slices (+ that condition's synthetic slices whose source patient is not in
the fold) and tests on the fold's real slices. Conditions: A (real only) + one per synthetic store.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from lungforge.bench.foldlog import FoldLog, run_signature
from lungforge.bench.folds import real_groups
from lungforge.bench.inputs import REFERENCE
from lungforge.data.store import Store

FoldRunner = Callable[[int, str], dict[str, Any]]
"""`runner(fold, condition) -> per-fold metrics` for one task."""


class FoldConfig(Protocol):
    folds: int
    real_split: str
    quick: bool


def cross_validate(
    task: str,
    real: Store,
    synthetic: dict[str, Store],
    config: FoldConfig,
    make_runner: Callable[[np.ndarray], FoldRunner],
    out: Path | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run every unfinished (fold, condition) of `task`; finished folds in `out` are reused.

    `make_runner(groups)` receives the fold group of every real slice (−1 outside the
    benchmark) and loads its data once. Returns {"task", "quick", "config", "conditions",
    "folds": {condition: [per-fold dict]}}.
    """
    log = FoldLog(out, task, run_signature(task, config, real, synthetic))
    conditions = [REFERENCE, *synthetic]
    todo = [(f, c) for f in range(config.folds) for c in conditions if log.get(c, f) is None]
    total = config.folds * len(conditions)
    bar = progress.add_task(task, total=total, completed=total - len(todo), status="") if progress else None
    if todo:
        runner = make_runner(real_groups(real, config.folds, config.real_split))
        for fold, condition in todo:
            if progress:
                progress.update(bar, status=f"fold {fold} {condition}")
            log.put(condition, fold, {"fold": fold, "condition": condition, **runner(fold, condition)})
            if progress:
                progress.advance(bar)
    return {
        "task": task,
        "quick": config.quick,
        "config": dataclasses.asdict(config),
        "conditions": conditions,
        "folds": {c: [log.get(c, f) for f in range(config.folds)] for c in conditions},
    }
