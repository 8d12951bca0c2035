"""Cross-validation folds over real patients (DESIGN §9) and test-fold exclusion of synthetic slices.

A patient (series) belongs to the official LUNA16 fold `meta/fold` of the real store; `--folds K`
merges folds as `fold mod K`. Synthetic slices inherit the group of their source patient, so a
fold's test patients never appear in its training data, real or synthetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lungforge.data.store import SPLIT_IDS, Store
from lungforge.errors import InputError

RealSplit = Literal["all", "test"]
OFFICIAL_FOLDS = 10
OUTSIDE = -1


@dataclass(frozen=True)
class FoldSplit:
    """Slice indices of one fold: real test and train slices, and synthetic train slices by name."""

    fold: int
    test_real: np.ndarray
    train_real: np.ndarray
    train_synthetic: dict[str, np.ndarray]


def real_groups(real: Store, folds: int, real_split: RealSplit) -> np.ndarray:
    """(N,) int group of every real slice: `fold mod folds`, or -1 for patients outside `real_split`."""
    if not 2 <= folds <= OFFICIAL_FOLDS:
        raise InputError(f"--folds must be between 2 and {OFFICIAL_FOLDS}, got {folds}")
    if real_split not in ("all", "test"):
        raise InputError(f"--real-split must be 'all' or 'test', got {real_split!r}")
    groups = real.meta("fold").astype(np.int64) % folds
    if real_split == "test":
        groups = np.where(real.meta("split") == SPLIT_IDS["test"], groups, OUTSIDE)
    present = np.unique(groups[groups != OUTSIDE])
    if present.size < folds:
        official = np.unique(real.meta("fold")[groups != OUTSIDE]).tolist()
        raise InputError(
            f"{real.path}: --folds {folds} needs patients in {folds} fold groups, but the {real_split!r} patients "
            f"cover official folds {official} ({present.size} groups)"
        )
    return groups


def source_groups(synthetic: Store, real: Store, groups: np.ndarray) -> np.ndarray:
    """(N_syn,) group of each synthetic slice's source patient (-1: patient outside the benchmark).

    Looked up per patient (series), so every slice of a test-fold patient is excluded.
    """
    series = real.meta("series")
    series_group = np.full(int(series.max()) + 1 if series.size else 0, OUTSIDE, np.int64)
    series_group[series] = groups
    return series_group[series[synthetic.meta("source")]]


def fold_splits(real: Store, synthetic: dict[str, Store], folds: int, real_split: RealSplit) -> list[FoldSplit]:
    """One :class:`FoldSplit` per fold group 0..folds-1."""
    groups = real_groups(real, folds, real_split)
    syn_groups = {name: source_groups(store, real, groups) for name, store in synthetic.items()}
    splits = []
    for fold in range(folds):
        splits.append(
            FoldSplit(
                fold=fold,
                test_real=np.flatnonzero(groups == fold),
                train_real=np.flatnonzero((groups != fold) & (groups != OUTSIDE)),
                train_synthetic={name: np.flatnonzero(g != fold) for name, g in syn_groups.items()},
            )
        )
    return splits
