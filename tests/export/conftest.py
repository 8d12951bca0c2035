"""Helpers for export tests: the store's slices and boxes as a reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungforge.core.labels import NODULE
from lungforge.data.resize import resize_slices
from lungforge.store import open_store


class Reference:
    """A store read whole: images, labels, split, has_nodule and nodule rows by slice."""

    def __init__(self, path: Path):
        store = open_store(path)
        self.store = store
        self.image = np.asarray(store.image[...])
        self.label = np.asarray(store.label[...])
        self.split = store.meta("split")
        self.has_nodule = store.meta("has_nodule")
        self.spacing = store.meta("spacing")
        self.series = store.meta("series")
        self.fold = store.meta("fold")
        self.table = store.nodules()

    def rows(self, split: str = "all", nodule_only: bool = False) -> np.ndarray:
        keep = np.ones(len(self.split), bool) if split == "all" else self.split == {"train": 0, "test": 1}[split]
        return np.flatnonzero(keep & (self.has_nodule if nodule_only else True))

    def boxes(self, row: int) -> np.ndarray:
        return self.table["bbox"][self.table["slice"] == row].astype(np.float64)

    def resized(self, row: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(label map, boxes) of a slice at size × size px (the fixture has at most one nodule per
        slice): labels nearest neighbour; the box is the tight box of the resized nodule pixels,
        and a nodule the resize erased keeps the pixel that holds its centre of mass, as a nodule pixel."""
        h, w = self.label.shape[1:]
        boxes = self.boxes(row) * size / w
        label = resize_slices(self.image[row][None], self.label[row][None], size)[1][0].copy()
        if boxes.size:
            if not (label == NODULE).any():
                ys, xs = np.nonzero(self.label[row] == NODULE)
                label[int((ys.mean() + 0.5) * size / h), int((xs.mean() + 0.5) * size / w)] = NODULE
            rows, cols = np.flatnonzero((label == NODULE).any(axis=1)), np.flatnonzero((label == NODULE).any(axis=0))
            boxes[0] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        return label, boxes

    def resized_boxes(self, row: int, size: int) -> np.ndarray:
        """The boxes of :meth:`resized`."""
        return self.resized(row, size)[1]


@pytest.fixture(scope="session")
def reference(stores: dict[str, Path]) -> Reference:
    return Reference(stores["real"])
