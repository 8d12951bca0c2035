"""Learning curves (`--real-nodules K1,K2,…,all`): one k-fold benchmark per point K, one budget.

Every point runs the task's cross-validation with the real training slices of each fold cut to
K whole nodules (:func:`lungforge.bench.protocol.crossval.kept_real_slices`), the same subset for every
condition, and every point, fold and condition trains the same optimiser steps (the budget of
the full training set, :func:`lungforge.bench.protocol.budget.curve_steps`). Augmentation shows its
gains here: at small K a positive control (paste) should beat A, and the gap narrow as K grows.

A point K above the real training nodules of the smallest fold is refused before any work
(:func:`check_points`): that fold could not be cut to K, and a K at or above every fold's count
would only repeat the `all` point.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.bench.protocol.crossval import kept_nodules, point_label
from lungforge.bench.protocol.foldlog import RESUME_ADVICE
from lungforge.bench.protocol.folds import OUTSIDE, real_groups
from lungforge.bench.protocol.results import CurveResult, TaskResult
from lungforge.bench.reporting.cells import TEST_NAMES, comparison_cells, pct
from lungforge.bench.scoring.summary import PrimarySpec, TaskSummary, real_nodule_slices, real_nodules, summarize_curve
from lungforge.core.choices import RealSplit
from lungforge.core.errors import InputError
from lungforge.core.fileio import named_write
from lungforge.store import Store

TaskRunner = Callable[..., TaskResult]
"""`run_detect` or `run_localize`: (real, synthetic, config, device, out, progress) -> result."""


def learning_curve(
    run: TaskRunner,
    real: Store,
    synthetic: dict[str, Store],
    config: Any,
    points: list[int | None],
    device: Any,
    out: Path | None = None,
    progress: Any = None,
) -> CurveResult:
    """Run `run` at every point K of `points` (None: all) with one fixed budget; a K the store
    cannot honour is refused first (:func:`check_points`)."""
    check_points(real, config.folds, config.real_split, points)
    results = {}
    for k in points:
        point_config = dataclasses.replace(config, real_nodules=k, fixed_budget=True)
        results[point_label(k)] = run(real, synthetic, point_config, device, out, progress)
    return CurveResult(results)


def training_nodules(real: Store, folds: int, real_split: RealSplit) -> list[int]:
    """Distinct real nodules in the training part of each fold (the most any point K can keep)."""
    groups = real_groups(real, folds, real_split)
    return [int(kept_nodules(real, (groups != fold) & (groups != OUTSIDE)).size) for fold in range(folds)]


def check_points(real: Store, folds: int, real_split: RealSplit, points: list[int | None]) -> None:
    """InputError naming the points K above the real training nodules of the smallest fold, with
    the counts the folds hold; `all` (None) always fits."""
    too_many = [k for k in points if k is not None]
    if not too_many:
        return
    counts = training_nodules(real, folds, real_split)
    too_many = [k for k in too_many if k > min(counts)]
    if too_many:
        held = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)} to {max(counts)}"
        raise InputError(
            f"--real-nodules {', '.join(map(str, too_many))}: the training folds of {real.path} hold {held} real nodules "
            f"(--folds {folds}, --real-split {real_split}); give points K up to {min(counts)}, or 'all' for every one"
        )


CURVE_TESTS = ("signed_rank", "corrected_t", "delong", "bootstrap_auroc")
"""The tests a curve table shows (every test is in the JSON)."""


def curve_table(curve: CurveResult, metrics: tuple[str, ...], metric: str, primary: PrimarySpec | None = None) -> dict[str, TaskSummary]:
    """Per point: the :class:`~lungforge.bench.scoring.summary.TaskSummary` on `metric` (one Holm
    family over the whole curve, the primary comparison left out of it)."""
    return summarize_curve(curve, metrics, metric, primary)


def curve_markdown(curve: CurveResult, metric: str, task: str, table: dict[str, TaskSummary]) -> list[str]:
    """Markdown: the budget, the generators' nodule counts, the primary comparison, one row per
    point and condition (Δ vs A and the p of :data:`CURVE_TESTS`, raw with Holm beside), notes."""
    slices = curve.generator_nodule_slices
    seen = ", ".join(f"{n}: {'unknown' if v is None else v} ({slices.get(n)} slices)" for n, v in curve.generator_nodules.items())
    first = next(iter(table.values()), None)
    lines = [
        f"### {task}: {metric} against real training nodules K",
        "",
        f"Optimiser budget for every K, fold and condition: {curve.optimizer_steps} steps.",
    ]
    if seen:
        lines.append(f"Real nodules the generators' weights saw: {seen}.")
    if first is not None and first.primary is not None:
        lines.append(
            f"Primary comparison (fixed before the run): {first.primary.condition} vs A at K = {first.primary.point}; "
            f"every other p is Holm-adjusted over the curve's comparisons; corrected t: n_test/n_train = {first.test_train_ratio:.3g}."
        )
    heads = [f"p {TEST_NAMES[t]}" for t in CURVE_TESTS]
    lines += [
        "",
        f"| K | real nodules (slices) / fold | condition | {metric} (%) | Δ vs A (pts) [95 % CI] | " + " | ".join(heads) + " |",
        "|---" * (5 + len(heads)) + "|",
    ]
    for point, summary in table.items():
        result = curve.results[point]
        nodules = f"{real_nodules(result):.1f} ({real_nodule_slices(result):.1f})"
        for condition, row in summary.conditions.items():
            cells = [point, nodules, condition, pct(row.metrics[metric]), *comparison_cells(row.comparison, CURVE_TESTS)]
            lines.append("| " + " | ".join(cells) + " |")
    notes = [f"- K = {point}: {note}" for point, summary in table.items() for note in summary.notes]
    return [*lines, "", *notes, *([""] if notes else [])]


def curve_figure(curve: CurveResult, metric: str, path: Path, title: str) -> Path:
    """`metric` (mean over folds, band ± std over folds) against the mean distinct real nodules
    per fold at each point (nodule slices for folds logged without them), one line per condition;
    log-scaled x. Written as PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = curve_table(curve, (metric,), metric)
    conditions = list(curve.last.conditions) if curve.results else []
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    x = np.array([real_nodules(result) for result in curve.results.values()])
    for i, condition in enumerate(conditions):
        y = np.array([summary.conditions[condition].metrics[metric].mean for summary in table.values()])
        s = np.array([summary.conditions[condition].metrics[metric].std for summary in table.values()])
        ax.plot(x, y, "o-", color=f"C{i}", label=condition)
        ax.fill_between(x, y - s, y + s, color=f"C{i}", alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("real training nodules per fold (K)")
    ax.set_ylabel(f"{metric} (mean ± std over folds)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with named_write(path, RESUME_ADVICE):
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
