"""A PNG preview of a synthetic store: a `lungforge view` contact sheet of a few output slices."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lungforge.store import open_store
from lungforge.view import ViewOptions, write_view


def preview_indices(has_nodule: np.ndarray, rows: int) -> np.ndarray:
    """Up to `rows` slice indices, nodule slices first (half the rows when both kinds exist)."""
    nodule, free = np.flatnonzero(has_nodule), np.flatnonzero(~has_nodule)
    take_free = min(free.size, max(rows - nodule.size, rows // 2 if nodule.size else rows))
    return np.concatenate([nodule[: rows - take_free], free[:take_free]])


def write_preview(store_path: str | os.PathLike, png: str | os.PathLike, rows: int = 8) -> Path:
    """Write a contact sheet (CT | CT + label overlay + boxes) of up to `rows` slices of a store to `png`."""
    store = open_store(store_path)
    index = preview_indices(store.meta("has_nodule"), rows)
    tile_px = int(np.clip(max(store.shape_hw), 64, 256))
    path, _ = write_view(store_path, png, ViewOptions(index=tuple(index.tolist()), tile_px=tile_px, columns=4))
    return path
