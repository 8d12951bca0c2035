"""A PNG preview of a synthetic store: per row, the coloured label map beside the generated slice."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from lungforge.data.store import open_store
from lungforge.training.grid import save_grid


def preview_indices(has_nodule: np.ndarray, rows: int) -> np.ndarray:
    """Up to `rows` slice indices, nodule slices first (half the rows when both kinds exist)."""
    nodule, free = np.flatnonzero(has_nodule), np.flatnonzero(~has_nodule)
    take_free = min(free.size, max(rows - nodule.size, rows // 2 if nodule.size else rows))
    return np.concatenate([nodule[: rows - take_free], free[:take_free]])


def write_preview(store_path: str | os.PathLike, png: str | os.PathLike, rows: int = 8) -> Path:
    """Write a (label | image) grid of up to `rows` slices of a store to `png`."""
    store = open_store(store_path)
    index = preview_indices(store.meta("has_nodule"), rows)
    label = torch.from_numpy(np.stack([np.asarray(store.label[int(i)]) for i in index]).astype(np.int64))
    image = torch.from_numpy(np.stack([np.asarray(store.image[int(i)]) for i in index]).astype(np.float32) / 127.5 - 1.0)
    return save_grid(png, label, image[:, None])
