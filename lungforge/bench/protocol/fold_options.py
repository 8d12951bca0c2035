"""The options every k-fold benchmark task shares (:class:`FoldOptions`, composed into
:class:`~lungforge.bench.protocol.detect.DetectConfig` and
:class:`~lungforge.bench.protocol.localize_config.LocalizeConfig`), and what the k-fold driver
reads from a task config (:class:`FoldConfig`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lungforge.core.choices import (
    MAX_EPOCHS,
    MAX_SIZE_PX,
    MIN_FOLDS,
    MIN_PATCH_PX,
    OFFICIAL_FOLDS,
    RealSplit,
    Selection,
    check_choice,
    check_range,
)
from lungforge.core.seeds import check_seed


@dataclass(frozen=True)
class FoldOptions:
    """The options every k-fold task config shares with the same meaning and default: which
    synthetic slices train, the seed, the quick label, the learning-curve settings, the working
    size, the folds and the real patients. Checked on construction (:meth:`check`)."""

    select: Selection = "first-draw"
    """Synthetic slices every condition trains on: 'first-draw' or 'all'."""
    seed: int = 0
    quick: bool = False
    real_nodules: int | None = None
    """Learning-curve point: real training nodules per fold, each with all its slices (None: all)."""
    fixed_budget: bool = False
    """Train every point, fold and condition the same steps (:func:`~lungforge.bench.protocol.budget.curve_steps`)."""
    allow_generator_leakage: bool = False
    """Bench generators whose weights saw test-fold patients (the report says so)."""
    fold_controls: bool = False
    """Also run the per-fold controls `hosts` and `classic` (:mod:`~lungforge.bench.protocol.fold_controls`;
    needs the `mislabeled` and `paste` control stores)."""
    allow_empty_synthetic: bool = False
    """Bench a synthetic condition that adds no nodule slice to some fold (refused otherwise)."""
    repeats: int = 1
    """Training seeds per fold and condition; their fold rows are averaged (:mod:`~lungforge.bench.protocol.repeats`)."""
    size: int = 256
    """Working resolution (pixels, `min_size`..MAX_SIZE_PX) every store is resized to."""
    folds: int = OFFICIAL_FOLDS
    """Cross-validation folds (MIN_FOLDS..OFFICIAL_FOLDS); fewer than 10 merge the official folds as fold mod K."""
    real_split: RealSplit = "all"
    """Real patients in the cross-validation: all (the paper) or the test split's."""

    min_size: ClassVar[int] = MIN_PATCH_PX
    """Smallest working size (pixels) of the task."""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """ConfigError (a ValueError) naming the first shared field out of its choices or range."""
        check_seed(self.seed)
        check_choice("real_split", self.real_split, RealSplit)
        check_choice("select", self.select, Selection)
        check_range("size", self.size, self.min_size, MAX_SIZE_PX)
        check_range("folds", self.folds, MIN_FOLDS, OFFICIAL_FOLDS)
        check_range("repeats", self.repeats, 1)
        if self.real_nodules is not None:
            check_range("real_nodules", self.real_nodules, 1)


def check_training(epochs: int, batch_size: int) -> None:
    """ConfigError naming `epochs` (1..MAX_EPOCHS) or `batch_size` (>= 1) when out of range."""
    check_range("epochs", epochs, 1, MAX_EPOCHS)
    check_range("batch_size", batch_size, 1)


class FoldConfig(FoldOptions):
    """What the k-fold driver reads from a task's config (DetectConfig, LocalizeConfig, which
    derive from it): the :class:`FoldOptions` and the task's own `epochs` (passes over A's
    training items) and `batch_size` (items per step), whose defaults differ by task."""

    epochs: int
    batch_size: int
