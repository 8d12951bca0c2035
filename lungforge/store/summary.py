"""Counts of a store by split, fold and nodule size, as `lungforge info` prints them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from lungforge.store.schema import SPLIT_IDS

if TYPE_CHECKING:
    from lungforge.store.handle import Store


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
    edges = [0, 5, 10, 20, 30, np.inf]
    counts, _ = np.histogram(diam, bins=edges)
    hist = {
        (f"{int(lo)}-{int(hi)} mm" if np.isfinite(hi) else f">={int(lo)} mm"): int(c) for lo, hi, c in zip(edges[:-1], edges[1:], counts)
    }
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
