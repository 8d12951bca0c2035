"""Cross-validation folds over real patients (docs/benchmark.md) and test-fold exclusion of synthetic slices.

A patient (series) belongs to the official LUNA16 fold `meta/fold` of the real store; `--folds K`
merges folds as `fold mod K`. A synthetic slice comes from up to three kinds of real patient: the
one whose label map it starts from, and, per nodule, those whose nodule masks gave its shape and
its size (`nodules/shape_source`, `size_source`, or for a LIDC contour the scan named by
`nodules/lidc_annotation`). It is dropped from the training of every fold
holding any of them, so a fold's test patients never reach its training data, real or synthetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungforge.core.choices import RealSplit
from lungforge.core.errors import InputError
from lungforge.store import NO_SOURCE, SPLIT_IDS, Store

OUTSIDE = -1


@dataclass(frozen=True)
class FoldSplit:
    """Slice indices of one fold: real test and train slices, and synthetic train slices by name."""

    fold: int
    test_real: np.ndarray
    train_real: np.ndarray
    train_synthetic: dict[str, np.ndarray]


def real_groups(real: Store, folds: int, real_split: RealSplit) -> np.ndarray:
    """(N,) int group of every real slice: `fold mod folds`, or -1 for patients outside `real_split`.

    `folds` and `real_split` are a task config's, already checked; an InputError when the
    `real_split` patients do not fill `folds` groups."""
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


def _patient_groups(real: Store, groups: np.ndarray) -> np.ndarray:
    """(N,) group of every real slice's patient (looked up per series, so all its slices agree)."""
    return _series_groups(real, groups)[real.meta("series")]


def source_groups(synthetic: Store, real: Store, groups: np.ndarray) -> np.ndarray:
    """(N_syn,) group of each synthetic slice's label-map patient (-1: patient outside the benchmark)."""
    return _patient_groups(real, groups)[synthetic.meta("source")]


def leak_groups(synthetic: Store, real: Store, groups: np.ndarray) -> np.ndarray:
    """(N_syn, K) bool, K = number of fold groups: True where synthetic slice i's label map or any
    of its nodules' shape or size source comes from a patient of group k (exclude it from fold k)."""
    patient = _patient_groups(real, groups)
    folds = int(groups.max()) + 1 if groups.size else 0
    touch = np.zeros((len(synthetic), folds), bool)

    def mark(slices: np.ndarray, group: np.ndarray) -> None:
        inside = group != OUTSIDE
        touch[slices[inside], group[inside]] = True

    mark(np.arange(len(synthetic)), patient[synthetic.meta("source")])
    table, real_slice = synthetic.nodules(), real.nodules()["slice"]
    for column in ("shape_source", "size_source"):
        rows = table[column]
        known = rows != NO_SOURCE
        mark(table["slice"][known], patient[real_slice[rows[known]]])
    lidc = lidc_patients(synthetic, real, table["lidc_annotation"])
    known = lidc != OUTSIDE
    mark(table["slice"][known], _series_groups(real, groups)[lidc[known]])
    return touch


def lidc_patients(synthetic: Store, real: Store, annotations: np.ndarray) -> np.ndarray:
    """(M,) real series index of each nodule's LIDC contour scan, -1 for other shapes or scans
    outside the real store (LUNA16 series are LIDC series, matched by uid)."""
    series_of = synthetic.attrs.get("lidc", {}).get("series", {})
    index = {uid: i for i, uid in enumerate(real.series_uids)}
    lookup = {int(k): index.get(uid, OUTSIDE) for k, uid in series_of.items()}
    return np.array([lookup.get(int(a), OUTSIDE) for a in annotations], dtype=np.int64)


def _series_groups(real: Store, groups: np.ndarray) -> np.ndarray:
    """(S,) group of every real series (-1 where it has no slice in the benchmark)."""
    series = real.meta("series")
    out = np.full(len(real.series_uids), OUTSIDE, np.int64)
    out[series] = groups
    return out


def fold_splits(real: Store, synthetic: dict[str, Store], folds: int, real_split: RealSplit) -> list[FoldSplit]:
    """One :class:`FoldSplit` per fold group 0..folds-1."""
    groups = real_groups(real, folds, real_split)
    leaks = {name: leak_groups(store, real, groups) for name, store in synthetic.items()}
    splits = []
    for fold in range(folds):
        splits.append(
            FoldSplit(
                fold=fold,
                test_real=np.flatnonzero(groups == fold),
                train_real=np.flatnonzero((groups != fold) & (groups != OUTSIDE)),
                train_synthetic={name: np.flatnonzero(~touch[:, fold]) for name, touch in leaks.items()},
            )
        )
    return splits
