"""Report figures (PNG, matplotlib Agg): sample grid (paper Fig. 1A), per-fold metrics, and
localization examples (Fig. 1B: ground truth green, predictions red with their scores, legend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lungforge.bench.protocol.foldlog import RESUME_ADVICE
from lungforge.bench.protocol.results import TaskResult
from lungforge.core.drawing import PREDICTION_COLOUR, TRUTH_COLOUR, colour_labels, draw_boxes, draw_scored_boxes, enlarge, grey_rgb
from lungforge.core.fileio import named_write
from lungforge.store import Store

EXAMPLE_TILE_PX = 256
"""Localization examples are enlarged (pixel repetition) to at least this size, so scores are legible."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _pick_source(synthetic: dict[str, Store], nodule: bool) -> int | None:
    """A real source index with a (nodule | nodule-free) sample in as many synthetic stores as possible."""
    best, best_count = None, 0
    per_store = [set(s.meta("source")[s.meta("has_nodule") == nodule].tolist()) for s in synthetic.values()]
    if not per_store or not per_store[0]:
        return None
    for source in sorted(per_store[0]):
        count = sum(source in p for p in per_store)
        if count > best_count:
            best, best_count = source, count
            if count == len(per_store):
                break
    return best


def sample_grid(real: Store, synthetic: dict[str, Store], path: Path, title: str) -> Path:
    """Rows nodule / nodule-free; columns real CT, label map of the first store's sample, one image
    per synthetic store generated from that same source label map."""
    plt = _pyplot()
    cols = 2 + len(synthetic)
    fig, axes = plt.subplots(2, cols, figsize=(2.4 * cols, 5.0), squeeze=False)
    for row, nodule in enumerate((True, False)):
        source = _pick_source(synthetic, nodule)
        kind = "nodule" if nodule else "nodule-free"
        for ax in axes[row]:
            ax.axis("off")
        if source is None:
            axes[row, 0].set_title(f"no {kind} sample", fontsize=8)
            continue
        ct, _ = real.read(source)
        axes[row, 0].imshow(ct, cmap="gray", vmin=0, vmax=255)
        axes[row, 0].set_title(f"real CT ({kind})", fontsize=8)
        label_shown = False
        for col, (name, store) in enumerate(synthetic.items(), start=2):
            rows = np.flatnonzero((store.meta("source") == source) & (store.meta("has_nodule") == nodule))
            if rows.size == 0:
                axes[row, col].set_title(f"{name}: none from this source", fontsize=8)
                continue
            image, label = store.read(int(rows[0]))
            axes[row, col].imshow(image, cmap="gray", vmin=0, vmax=255)
            axes[row, col].set_title(name, fontsize=8)
            if not label_shown:
                axes[row, 1].imshow(colour_labels(label), interpolation="nearest")
                axes[row, 1].set_title("label map", fontsize=8)
                label_shown = True
    return _save(plt, fig, path, title)


def _save(plt: Any, fig: Any, path: Path, title: str) -> Path:
    """Title `fig`, write it to `path` (PNG, 110 dpi; a failed write names the file) and close it."""
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with named_write(path, RESUME_ADVICE):
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def fold_metrics(result: TaskResult, metrics: tuple[str, ...], path: Path, title: str) -> Path:
    """One panel per metric: per-fold values (dots) and mean ± std (bar, error bar) per condition."""
    plt = _pyplot()
    conditions = result.conditions
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 3.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for i, condition in enumerate(conditions):
            values = np.array(result.values(condition, metric), dtype=float)
            finite = values[np.isfinite(values)]
            mean = finite.mean() if finite.size else np.nan
            std = finite.std(ddof=1) if finite.size > 1 else 0.0
            ax.bar(i, mean, yerr=std, color=f"C{i}", alpha=0.5, capsize=4)
            ax.scatter(np.full(finite.size, i), finite, color=f"C{i}", s=12, zorder=3)
        ax.set_xticks(range(len(conditions)), conditions)
        ax.set_ylim(0, 1.05)
        ax.set_title(metric, fontsize=9)
    return _save(plt, fig, path, title)


def _unit_rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    """An 8-bit RGB colour as matplotlib's 0–1 floats."""
    red, green, blue = colour
    return red / 255, green / 255, blue / 255


def localization_tile(image: np.ndarray, example: dict[str, Any]) -> np.ndarray:
    """(S, S) uint8 test slice → RGB (k·S, k·S, 3): truth boxes green, predictions (score ≥ 0.5) red
    with their scores; k enlarges it to at least EXAMPLE_TILE_PX."""
    factor = max(1, -(-EXAMPLE_TILE_PX // image.shape[0]))
    rgb = enlarge(grey_rgb(image), factor)
    rgb = draw_boxes(rgb, np.asarray(example["truth"], dtype=np.float64).reshape(-1, 4) * factor, TRUTH_COLOUR)
    predicted = np.asarray(example["predicted"], dtype=np.float64).reshape(-1, 4) * factor
    return draw_scored_boxes(rgb, predicted, example["scores"], PREDICTION_COLOUR)


def localization_examples(real: Store, result: TaskResult, size: int, path: Path, title: str) -> Path:
    """Rows = conditions, columns = example test slices of fold 0 at the working size; ground
    truth boxes green, predictions (score ≥ 0.5) red with their scores; a legend says which is which."""
    from matplotlib.patches import Patch

    from lungforge.bench.protocol.slices import read_resized

    plt = _pyplot()
    conditions = result.conditions
    examples = {c: result.folds[c][0]["examples"] for c in conditions}
    cols = max(1, max(len(e) for e in examples.values()))
    fig, axes = plt.subplots(len(conditions), cols, figsize=(2.4 * cols, 2.5 * len(conditions) + 0.4), squeeze=False)
    for row, condition in enumerate(conditions):
        items = examples[condition]
        images, _ = read_resized(real, np.array([e["slice"] for e in items], np.int64), size, labels=False)
        for col in range(cols):
            ax = axes[row, col]
            ax.axis("off")
            if col >= len(items):
                continue
            ax.imshow(localization_tile(images[col], items[col]), interpolation="nearest")
            ax.set_title(f"{condition}: slice {items[col]['slice']}", fontsize=8)
    handles = [
        Patch(facecolor="none", edgecolor=_unit_rgb(TRUTH_COLOUR), label="ground truth"),
        Patch(facecolor="none", edgecolor=_unit_rgb(PREDICTION_COLOUR), label="prediction (score ≥ 0.5, value shown)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    with named_write(path, RESUME_ADVICE):
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
