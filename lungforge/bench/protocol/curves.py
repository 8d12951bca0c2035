"""Learning curves (`--real-nodules K1,K2,…,all`): one k-fold benchmark per point K, one budget.

Every point runs the task's cross-validation with the real training slices of each fold cut to
K whole nodules (:func:`lungforge.bench.protocol.crossval.kept_real_slices`), the same subset for every
condition, and every point, fold and condition trains the same optimiser steps (the budget of
the full training set, :func:`lungforge.bench.protocol.budget.curve_steps`). Augmentation shows its
gains here: at small K a positive control (paste) should beat A, and the gap narrow as K grows.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np

from lungforge.bench.protocol.crossval import point_label
from lungforge.bench.protocol.inputs import REFERENCE
from lungforge.bench.protocol.results import CurveResult, TaskResult
from lungforge.bench.scoring.stats import compare, mean_std
from lungforge.data.store import Store

TaskRunner = Callable[..., TaskResult]
"""`run_detect` or `run_localize`: (real, synthetic, config, device, out, progress) -> result."""


def learning_curve(
    run: TaskRunner, real: Store, synthetic: dict[str, Store], config: Any, points: list[int | None], device: Any,
    out: Path | None = None, progress: Any = None,
) -> CurveResult:
    """Run `run` at every point K of `points` (None: all) with one fixed budget."""
    results = {}
    for k in points:
        point_config = dataclasses.replace(config, real_nodules=k, fixed_budget=True)
        results[point_label(k)] = run(real, synthetic, point_config, device, out, progress)
    return CurveResult(results)


def curve_table(curve: CurveResult, metric: str) -> dict[str, Any]:
    """Per point and condition: mean ± std of `metric` over folds, the real nodules and nodule
    slices each fold trained on (means) and, for conditions other than A, :func:`compare` against A."""
    table: dict[str, Any] = {}
    for point, result in curve.results.items():
        reference = result.values(REFERENCE, metric)
        table[point] = {
            condition: {
                **mean_std(result.values(condition, metric)),
                "real_nodule_slices": float(np.mean(result.values(condition, "real_nodule_slices"))),
                "real_nodules": _mean_or_none(result, condition, "real_nodules"),
                "vs_A": None if condition == REFERENCE else compare(result.values(condition, metric), reference),
            }
            for condition in result.folds
        }
    return table


def _mean_or_none(result: TaskResult, condition: str, key: str) -> float | None:
    """The mean of `key` over the folds, None where a fold (logged before the key existed) lacks it."""
    values = [row.get(key) for row in result.folds[condition]]
    return None if any(v is None for v in values) else float(np.mean(values))


def curve_markdown(curve: CurveResult, metric: str, task: str) -> list[str]:
    """Markdown: the budget, the generators' nodule counts, and one row per point and condition."""
    table = curve_table(curve, metric)
    slices = curve.generator_nodule_slices
    seen = ", ".join(f"{n}: {'unknown' if v is None else v} ({slices[n]} slices)" for n, v in curve.generator_nodules.items())
    lines = [
        f"### {task}: {metric} against real training nodules K",
        "",
        f"Optimiser budget for every K, fold and condition: {curve.optimizer_steps} steps.",
    ]
    if seen:
        lines.append(f"Real nodules the generators' weights saw: {seen}.")
    lines += ["", f"| K | real nodules (slices) / fold | condition | {metric} (%) | Δ vs A (pts) [95 % CI] | signed-rank p (min) |", "|---|---|---|---|---|---|"]
    for point, rows in table.items():
        for condition, row in rows.items():
            c = row["vs_A"]
            if c is None or c["diff_mean"] is None:
                delta, p = "–", "–"
            else:
                low, high = c["diff_ci95"]
                delta = f"{100 * c['diff_mean']:+.2f} [{100 * (low or 0):+.2f}, {100 * (high or 0):+.2f}]"
                p = "n/a" if c["p_signed_rank"] is None else f"{c['p_signed_rank']:.3g} (≥ {c['p_signed_rank_min']:.3g})"
            nodules = "?" if row["real_nodules"] is None else f"{row['real_nodules']:.1f}"
            lines.append(f"| {point} | {nodules} ({row['real_nodule_slices']:.1f}) | {condition} | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} | {delta} | {p} |")
    return [*lines, ""]


def curve_figure(curve: CurveResult, metric: str, path: Path, title: str) -> Path:
    """`metric` (mean over folds, band ± std over folds) against the mean distinct real nodules
    per fold at each point (nodule slices for folds logged without them), one line per condition;
    log-scaled x. Written as PNG to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = curve_table(curve, metric)
    conditions = list(next(iter(table.values()))) if table else []
    fig, ax = plt.subplots(figsize=(5.0, 3.4))
    for i, condition in enumerate(conditions):
        x = np.array([rows[condition]["real_nodules"] or rows[condition]["real_nodule_slices"] for rows in table.values()])
        y = np.array([rows[condition]["mean"] for rows in table.values()])
        s = np.array([rows[condition]["std"] for rows in table.values()])
        ax.plot(x, y, "o-", color=f"C{i}", label=condition)
        ax.fill_between(x, y - s, y + s, color=f"C{i}", alpha=0.15)
    ax.set_xscale("log")
    ax.set_xlabel("real training nodules per fold (K)")
    ax.set_ylabel(f"{metric} (mean ± std over folds)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
