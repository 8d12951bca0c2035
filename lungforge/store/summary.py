"""Counts of a store by split, fold and nodule size, as `lungforge info` prints them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lungforge.store.schema import SPLIT_IDS

if TYPE_CHECKING:
    from lungforge.store.handle import Store
    from lungforge.store.volumes import VolumeStore


@dataclass(frozen=True)
class StoreSummary:
    """Counts of a store, as printed by `lungforge info`."""

    path: str
    kind: str
    slices: int
    height: int
    width: int
    series: int
    nodule_slices: int
    nodule_free_slices: int
    nodules: int
    splits: dict[str, dict[str, int]]
    folds: dict[str, int]
    nodule_diameter_hist: dict[str, int]
    attrs: dict[str, Any]


def count_store(store: Store) -> StoreSummary:
    """Counts by split, fold and nodule size, as `lungforge info` prints them."""
    split = store.meta("split")
    has_nod = store.meta("has_nodule")
    fold = store.meta("fold")
    splits = {}
    for name, sid in SPLIT_IDS.items():
        sel = split == sid
        series = np.unique(store.meta("series")[sel])
        splits[name] = {
            "slices": int(sel.sum()),
            "nodule_slices": int((sel & has_nod).sum()),
            "patients": int(series.size),
        }
    folds = {str(f): int((fold == f).sum()) for f in sorted(np.unique(fold).tolist())}
    diam = store.nodules()["diameter_mm"]
    hist = diameter_histogram(diam)
    h, w = store.shape_hw
    return StoreSummary(
        path=str(store.path),
        kind=store.kind,
        slices=len(store),
        height=h,
        width=w,
        series=len(store.series_uids),
        nodule_slices=int(has_nod.sum()),
        nodule_free_slices=int((~has_nod).sum()),
        nodules=int(diam.size),
        splits=splits,
        folds=folds,
        nodule_diameter_hist=hist,
        attrs={k: v for k, v in store.attrs.items() if k not in ("labels",)},
    )


def diameter_histogram(diameters_mm: np.ndarray) -> dict[str, int]:
    """Nodule counts in the diameter bins 0-5, 5-10, 10-20, 20-30 and >= 30 mm."""
    edges = [0, 5, 10, 20, 30, np.inf]
    counts, _ = np.histogram(diameters_mm, bins=edges)
    return {
        (f"{int(lo)}-{int(hi)} mm" if np.isfinite(hi) else f">={int(lo)} mm"): int(c) for lo, hi, c in zip(edges[:-1], edges[1:], counts)
    }


@dataclass(frozen=True)
class VolumeSummary:
    """Counts of a volume store, as printed by `lungforge info`: `scans` volumes of `voxels` voxels
    in all at `spacing_mm`, the smallest and largest (Z, Y, X) shape, `nodules` rows of which
    `nodules_labelled` have a non-empty mask; per split its scans, nodules and labelled nodules;
    scans per fold."""

    path: str
    kind: str
    schema: str
    scans: int
    spacing_mm: float
    voxels: int
    shape_min: list[int]
    shape_max: list[int]
    nodules: int
    nodules_labelled: int
    splits: dict[str, dict[str, int]]
    folds: dict[str, int]
    nodule_diameter_hist: dict[str, int]
    attrs: dict[str, Any]


def count_volume_store(store: VolumeStore) -> VolumeSummary:
    """Counts by split, fold and nodule size of a volume store."""
    shapes = np.array([store.shape(i) for i in range(len(store))], dtype=np.int64).reshape(-1, 3)
    table = store.nodules()
    labelled = table["voxels"] > 0
    splits = {}
    for name, sid in SPLIT_IDS.items():
        scans = np.flatnonzero(store.split == sid)
        mine = np.isin(table["scan"], scans)
        splits[name] = {"scans": int(scans.size), "nodules": int(mine.sum()), "nodules_labelled": int((mine & labelled).sum())}
    return VolumeSummary(
        path=str(store.path),
        kind=str(store.attrs.get("kind")),
        schema=str(store.attrs.get("schema")),
        scans=len(store),
        spacing_mm=store.spacing_mm,
        voxels=int(shapes.prod(axis=1).sum()),
        shape_min=shapes.min(axis=0).tolist() if len(shapes) else [0, 0, 0],
        shape_max=shapes.max(axis=0).tolist() if len(shapes) else [0, 0, 0],
        nodules=int(labelled.size),
        nodules_labelled=int(labelled.sum()),
        splits=splits,
        folds={str(f): int((store.fold == f).sum()) for f in sorted(np.unique(store.fold).tolist())},
        nodule_diameter_hist=diameter_histogram(table["diameter_mm"]),
        attrs={k: v for k, v in store.attrs.items() if k not in ("labels",)},
    )
