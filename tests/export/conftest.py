"""Helpers for export tests: the store's slices and boxes as a reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lungforge.data.store import open_store


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


@pytest.fixture(scope="session")
def reference(stores: dict[str, Path]) -> Reference:
    return Reference(stores["real"])
