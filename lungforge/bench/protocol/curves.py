"""Learning curves (`--real-nodules K1,K2,…,all`): one k-fold benchmark per point K, one budget.

Every point runs the task's cross-validation with the real training slices of each fold cut to
K nodule slices (:func:`lungforge.bench.protocol.crossval.kept_real_slices`), the same subset for every
condition, and every point, fold and condition trains the same optimiser steps (the budget of
the full training set, :func:`lungforge.bench.protocol.budget.curve_steps`). Augmentation shows its
gains here: at small K a positive control (paste) should beat A, and the gap narrow as K grows.

A point K above the real training nodule slices of the smallest fold is refused before any work
(:func:`check_points`): that fold could not be cut to K, and a K at or above every fold's count
would only repeat the `all` point.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lungforge.bench.protocol.crossval import point_label
from lungforge.bench.protocol.foldlog import RESUME_ADVICE
from lungforge.bench.protocol.folds import OUTSIDE, real_groups
from lungforge.bench.protocol.inputs import REFERENCE
from lungforge.bench.protocol.results import CurveResult, TaskResult
from lungforge.bench.scoring.stats import compare, mean_std
from lungforge.choices import RealSplit
from lungforge.data.store import Store
from lungforge.errors import InputError
from lungforge.fileio import named_write

TaskRunner = Callable[..., TaskResult]
"""`run_detect` or `run_localize`: (real, synthetic, config, device, out, progress) -> result."""


def learning_curve(
    run: TaskRunner, real: Store, synthetic: dict[str, Store], config: Any, points: list[int | None], device: Any,
    out: Path | None = None, progress: Any = None,
) -> CurveResult:
    """Run `run` at every point K of `points` (None: all) with one fixed budget; a K the store
    cannot honour is refused first (:func:`check_points`)."""
    check_points(real, config.folds, config.real_split, points)
    results = {}
    for k in points:
        point_config = dataclasses.replace(config, real_nodules=k, fixed_budget=True)
        results[point_label(k)] = run(real, synthetic, point_config, device, out, progress)
    return CurveResult(results)


def training_nodule_slices(real: Store, folds: int, real_split: RealSplit) -> list[int]:
    """Real nodule slices in the training part of each fold (the most any point K can keep)."""
    groups = real_groups(real, folds, real_split)
    has = real.meta("has_nodule")
    return [int(((groups != fold) & (groups != OUTSIDE) & has).sum()) for fold in range(folds)]


def check_points(real: Store, folds: int, real_split: RealSplit, points: list[int | None]) -> None:
    """InputError naming the points K above the real training nodule slices of the smallest fold,
    with the counts the folds hold; `all` (None) always fits."""
    too_many = [k for k in points if k is not None]
    if not too_many:
        return
    counts = training_nodule_slices(real, folds, real_split)
    too_many = [k for k in too_many if k > min(counts)]
    if too_many:
        held = f"{min(counts)}" if min(counts) == max(counts) else f"{min(counts)} to {max(counts)}"
        raise InputError(
            f"--real-nodules {', '.join(map(str, too_many))}: the training folds of {real.path} hold {held} real nodule slices "
            f"(--folds {folds}, --real-split {real_split}); give points K up to {min(counts)}, or 'all' for every one"
        )


def curve_table(curve: CurveResult, metric: str) -> dict[str, Any]:
    """Per point and condition: mean ± std of `metric` over folds, the real nodule slices each
    fold trained on (mean) and, for conditions other than A, :func:`compare` against A."""
    table: dict[str, Any] = {}
    for point, result in curve.results.items():
        reference = result.values(REFERENCE, metric)
        table[point] = {
            condition: {
                **mean_std(result.values(condition, metric)),
                "real_nodule_slices": float(np.mean(result.values(condition, "real_nodule_slices"))),
                "vs_A": None if condition == REFERENCE else compare(result.values(condition, metric), reference),
            }
            for condition in result.folds
        }
    return table


def curve_markdown(curve: CurveResult, metric: str, task: str) -> list[str]:
    """Markdown: the budget, the generators' nodule counts, and one row per point and condition."""
    table = curve_table(curve, metric)
    seen = ", ".join(f"{n}: {'unknown' if v is None else v}" for n, v in curve.generator_nodules.items())
    lines = [
        f"### {task}: {metric} against real training nodule slices K",
        "",
        f"Optimiser budget for every K, fold and condition: {curve.optimizer_steps} steps.",
    ]
    if seen:
        lines.append(f"Real nodule slices the generators' weights saw: {seen}.")
    lines += ["", f"| K | real nodule slices / fold | condition | {metric} (%) | Δ vs A (pts) [95 % CI] | signed-rank p (min) |", "|---|---|---|---|---|---|"]
    for point, rows in table.items():
        for condition, row in rows.items():
            c = row["vs_A"]
            if c is None or c["diff_mean"] is None:
                delta, p = "–", "–"
            else:
                low, high = c["diff_ci95"]
                delta = f"{100 * c['diff_mean']:+.2f} [{100 * (low or 0):+.2f}, {100 * (high or 0):+.2f}]"
                p = "n/a" if c["p_signed_rank"] is None else f"{c['p_signed_rank']:.3g} (≥ {c['p_signed_rank_min']:.3g})"
            lines.append(f"| {point} | {row['real_nodule_slices']:.1f} | {condition} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} | {delta} | {p} |")
    return [*lines, ""]


def curve_figure(curve: CurveResult, metric: str, path: Path, title: str) -> Path:
    """`metric` (mean over folds, band ± std over folds) against the mean real nodule slices per
    fold at each point, one line per condition; log-scaled x. Written as PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = curve_table(curve, metric)
    conditions = list(next(iter(table.values()))) if table else []
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for i, condition in enumerate(conditions):
        x = np.array([rows[condition]["real_nodule_slices"] for rows in table.values()])
        y = np.array([rows[condition]["mean"] for rows in table.values()])
        s = np.array([rows[condition]["std"] for rows in table.values()])
        ax.plot(x, y, "o-", color=f"C{i}", label=condition)
        ax.fill_between(x, y - s, y + s, color=f"C{i}", alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("real training nodule slices per fold (K)")
    ax.set_ylabel(f"{metric} (mean ± std over folds)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with named_write(path, RESUME_ADVICE):
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
