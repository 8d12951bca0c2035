"""The slices an export writes: selection by split and nodules, block reads, optional resizing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from lungforge.data.resize import resize_slices
from lungforge.data.store import SPLIT_IDS, Store
from lungforge.labels import NODULE

SplitChoice = Literal["train", "test", "all"]
SPLIT_NAMES = {sid: name for name, sid in SPLIT_IDS.items()}


@dataclass(frozen=True, eq=False)
class ExportSlice:
    """One slice as exported: pixels at the export size and its boxes scaled with them."""

    index: int
    name: str
    split: str
    fold: int
    series_uid: str
    z: int
    image: np.ndarray
    label: np.ndarray
    spacing_mm: tuple[float, float]
    boxes: np.ndarray
    diameters_mm: np.ndarray

    @property
    def shape_hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def box_window(self, k: int) -> tuple[slice, slice]:
        """Rows and columns of the pixels box `k` touches (its float edges rounded outward)."""
        h, w = self.shape_hw
        x0, y0, x1, y1 = self.boxes[k]
        rows = slice(max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), h))
        cols = slice(max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), w))
        return rows, cols

    def nodule_mask(self, k: int) -> np.ndarray:
        """(H, W) bool: the nodule-label pixels inside box `k` (the mask of nodule `k`)."""
        mask = np.zeros(self.shape_hw, dtype=bool)
        rows, cols = self.box_window(k)
        mask[rows, cols] = self.label[rows, cols] == NODULE
        return mask

    def nodule_pixels(self) -> np.ndarray:
        """(K,) int: nodule-label pixels inside each box (0 where resizing erased a nodule)."""
        counts = [int((self.label[self.box_window(k)] == NODULE).sum()) for k in range(len(self.boxes))]
        return np.asarray(counts, dtype=np.int64)


def select_indices(store: Store, split: SplitChoice, nodule_only: bool) -> np.ndarray:
    """Store rows to export, ascending: the chosen split(s), optionally nodule slices only."""
    keep = np.ones(len(store), dtype=bool)
    if split != "all":
        keep &= store.meta("split") == SPLIT_IDS[split]
    if nodule_only:
        keep &= store.meta("has_nodule").astype(bool)
    return np.flatnonzero(keep)


def iter_slices(store: Store, indices: np.ndarray, size: int | None) -> Iterator[ExportSlice]:
    """Yield the slices of `indices` (ascending rows), read one shard-sized block at a time.

    With `size`, images are resized bilinearly and label maps nearest-neighbour to size × size
    (:func:`lungforge.data.resize.resize_slices`), boxes and pixel spacing scaled with them.
    """
    h, w = store.shape_hw
    table = store.nodules()
    order = np.argsort(table["slice"], kind="stable")
    nod_slice, nod_bbox, nod_diam = table["slice"][order], table["bbox"][order], table["diameter_mm"][order]
    split, fold, series, z = store.meta("split"), store.meta("fold"), store.meta("series"), store.meta("z")
    spacing = store.meta("spacing").astype(np.float64)
    uids = store.series_uids
    width = max(6, len(str(max(len(store) - 1, 0))))
    scale_xy = np.array([size / w, size / h] * 2) if size else np.ones(4)
    scale_spacing = np.array([h / size, w / size]) if size else np.ones(2)
    block = store.shard_slices
    starts = np.unique(indices // block) * block
    for start in starts.tolist():
        rows = indices[(indices >= start) & (indices < start + block)]
        end = int(rows[-1]) + 1
        images, labels = np.asarray(store.image[start:end]), np.asarray(store.label[start:end])
        images, labels = images[rows - start], labels[rows - start]
        if size and (size, size) != (h, w):
            images, labels = resize_slices(images, labels, size)
        for j, row in enumerate(rows.tolist()):
            lo, hi = np.searchsorted(nod_slice, [row, row + 1])
            sp = spacing[row] * scale_spacing
            yield ExportSlice(
                index=row,
                name=f"{row:0{width}d}",
                split=SPLIT_NAMES[int(split[row])],
                fold=int(fold[row]),
                series_uid=uids[int(series[row])],
                z=int(z[row]),
                image=images[j],
                label=labels[j],
                spacing_mm=(float(sp[0]), float(sp[1])),
                boxes=(nod_bbox[lo:hi].astype(np.float64) * scale_xy).reshape(-1, 4),
                diameters_mm=nod_diam[lo:hi].astype(np.float64),
            )
