"""Read slices of a store at the working resolution (lungforge.data.resize: images bilinear, labels nearest; boxes scaled)."""

from __future__ import annotations

from typing import Literal, overload

import numpy as np

from lungforge.data.resize import resize_images_uint8, resize_label_maps
from lungforge.store import Store

READ_BLOCK = 64


def scale_boxes(boxes: np.ndarray, height: int, width: int, size: int) -> np.ndarray:
    """Boxes (K, 4) x0, y0, x1, y1 in pixels of (height, width) → pixels of (size, size)."""
    scale = np.array([size / width, size / height, size / width, size / height], dtype=np.float32)
    return boxes.astype(np.float32) * scale


@overload
def read_resized(store: Store, indices: np.ndarray, size: int, *, labels: Literal[True] = True) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def read_resized(store: Store, indices: np.ndarray, size: int, *, labels: Literal[False]) -> tuple[np.ndarray, None]: ...
@overload
def read_resized(store: Store, indices: np.ndarray, size: int, *, labels: bool) -> tuple[np.ndarray, np.ndarray | None]: ...
def read_resized(store: Store, indices: np.ndarray, size: int, *, labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Slices `indices` of `store` at (size, size): images (n, size, size) uint8 and labels or None.

    Reads in sorted blocks of :data:`READ_BLOCK` slices and returns them in the order asked.
    """
    indices = np.asarray(indices, dtype=np.int64)
    out_img = np.zeros((indices.size, size, size), np.uint8)
    out_lab = np.zeros((indices.size, size, size), np.uint8) if labels else None
    order = np.argsort(indices, kind="stable")
    for start in range(0, indices.size, READ_BLOCK):
        pos = order[start : start + READ_BLOCK]
        sel = indices[pos]
        out_img[pos] = resize_images_uint8(np.asarray(store.image.oindex[sel, :, :]), size)
        if out_lab is not None:
            out_lab[pos] = resize_label_maps(np.asarray(store.label.oindex[sel, :, :]), size)
    return out_img, out_lab
