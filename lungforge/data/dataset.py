"""`SliceDataset`: a torch Dataset over a lungforge store, safe with DataLoader workers."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from lungforge.data.resize import resize_image, resize_label
from lungforge.store import SPLIT_IDS, Store, open_store


class SliceDataset(Dataset):
    """Slices of a store, resized to `size`×`size` pixels.

    Each item is a dict: ``image`` float (1, S, S) in [-1, 1] (bilinear), ``label`` long (S, S)
    (nearest), ``boxes`` float (K, 4) x0, y0, x1, y1 in pixels at S, ``diameter_mm`` (K,),
    ``spacing_mm`` (2,) row/col mm per pixel at S, and ``index``, ``series``, ``fold``,
    ``has_nodule``. Use :func:`collate_slices` as the DataLoader ``collate_fn`` (K varies).

    `split` is "train", "test" or "all"; `folds` keeps only those folds; `nodule` keeps only
    nodule slices (True) or nodule-free ones (False); `indices` restricts to given store rows.
    """

    def __init__(
        self,
        store: str | os.PathLike | Store,
        size: int | None = 256,
        split: Literal["train", "test", "all"] = "train",
        folds: Sequence[int] | None = None,
        nodule: bool | None = None,
        indices: Sequence[int] | None = None,
    ):
        opened = store if isinstance(store, Store) else open_store(store)
        self.path = Path(opened.path)
        self._store: Store | None = opened
        self._pid = os.getpid()
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
        keep = np.ones(len(opened), dtype=bool)
        if split != "all":
            keep &= opened.meta("split") == SPLIT_IDS[split]
        if folds is not None:
            keep &= np.isin(opened.meta("fold"), np.asarray(list(folds)))
        if nodule is not None:
            keep &= opened.meta("has_nodule") == bool(nodule)
        if indices is not None:
            chosen = np.zeros_like(keep)
            chosen[np.asarray(indices, dtype=np.int64)] = True
            keep &= chosen
        self.indices = np.flatnonzero(keep)
        self.size = size
        self.height, self.width = opened.shape_hw
        self.series = opened.meta("series")
        self.fold = opened.meta("fold")
        self.has_nodule = opened.meta("has_nodule")
        self.spacing = opened.meta("spacing")
        table = opened.nodules()
        order = np.argsort(table["slice"], kind="stable")
        self._nod_slice = table["slice"][order]
        self._nod_bbox = table["bbox"][order]
        self._nod_diam = table["diameter_mm"][order]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    def _open(self) -> Store:
        # Zarr handles are reopened in each DataLoader worker process.
        if self._store is None or self._pid != os.getpid():
            self._store = open_store(self.path)
            self._pid = os.getpid()
        return self._store

    def __len__(self) -> int:
        return int(self.indices.size)

    def boxes_of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (K, 4) at the store's resolution and diameters (K,) mm of store row `row`."""
        lo, hi = np.searchsorted(self._nod_slice, [row, row + 1])
        return self._nod_bbox[lo:hi], self._nod_diam[lo:hi]

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = int(self.indices[i])
        image, label = self._open().read(row)
        img = torch.from_numpy(image.astype(np.float32) / 127.5 - 1.0)[None]
        lab = torch.from_numpy(label.astype(np.int64))
        boxes_px, diam = self.boxes_of(row)
        boxes = torch.from_numpy(boxes_px.astype(np.float32)).reshape(-1, 4)
        spacing = torch.from_numpy(self.spacing[row].astype(np.float32))
        size = self.size
        if size is not None and (size, size) != (self.height, self.width):
            img = resize_image(img[None], size)[0]
            lab = resize_label(lab[None], size)[0]
            sx, sy = size / self.width, size / self.height
            boxes = boxes * torch.tensor([sx, sy, sx, sy])
            spacing = spacing * torch.tensor([self.height / size, self.width / size])
        return {
            "image": img,
            "label": lab,
            "boxes": boxes,
            "diameter_mm": torch.from_numpy(diam.astype(np.float32)),
            "spacing_mm": spacing,
            "index": row,
            "series": int(self.series[row]),
            "fold": int(self.fold[row]),
            "has_nodule": bool(self.has_nodule[row]),
        }


def collate_slices(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack fixed-size fields into batches; keep `boxes` and `diameter_mm` as lists."""
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key in ("boxes", "diameter_mm"):
            out[key] = values
        elif isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = torch.tensor(values)
    return out
