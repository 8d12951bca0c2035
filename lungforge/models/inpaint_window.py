"""Windows and edit regions of the inpainting SDM, shared by its training and by `augment`.

A window is a square of `window` pixels cut from a slice at its own resolution, given as a
half-open box (x0, y0, x1, y1) that always lies inside the slice. Its edit region is what the
model draws: a nodule footprint grown by a margin (pixels, a disk-shaped dilation). Everything
else in the window is context the model sees and never changes.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from lungforge.core.errors import InputError

Window = tuple[int, int, int, int]
"""Half-open pixel box x0, y0, x1, y1."""


def check_window_fits(window: int, height: int, width: int, where: str) -> None:
    """InputError unless a `window`-pixel square fits a `height`×`width` slice of `where`."""
    if window > height or window > width:
        raise InputError(f"{where}: window {window} px is larger than its {height}×{width} px slices; use a smaller --window")


def window_at(center_rc: tuple[float, float], window: int, height: int, width: int) -> Window:
    """The `window`² box centred as near (row, col) `center_rc` as the slice allows (shifted inside it)."""
    y0 = int(np.clip(np.floor(center_rc[0] - window / 2 + 0.5), 0, height - window))
    x0 = int(np.clip(np.floor(center_rc[1] - window / 2 + 0.5), 0, width - window))
    return x0, y0, x0 + window, y0 + window


def grow(mask: np.ndarray, margin_px: int) -> np.ndarray:
    """`mask` (H, W) bool dilated by a disk of radius `margin_px` pixels (the edit region)."""
    if margin_px <= 0:
        return mask.astype(bool)
    r = int(margin_px)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return ndimage.binary_dilation(mask, structure=xx**2 + yy**2 <= r * r)


def bounding_box(mask: np.ndarray) -> Window:
    """Half-open box x0, y0, x1, y1 of the True pixels of `mask` (H, W); ValueError if none."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        raise ValueError("mask has no pixels")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def check_edit_inside(edit_box: Window, box: Window, where: str) -> None:
    """InputError unless the edit region's box lies inside the window `box` (both half-open)."""
    x0, y0, x1, y1 = edit_box
    wx0, wy0, wx1, wy1 = box
    if x0 < wx0 or y0 < wy0 or x1 > wx1 or y1 > wy1:
        raise InputError(
            f"{where}: edit region x {x0}..{x1}, y {y0}..{y1} reaches past the {wx1 - wx0} px window "
            f"x {wx0}..{wx1}, y {wy0}..{wy1}; use inpainting weights with a larger --window or smaller nodules"
        )


def crop(array: np.ndarray, box: Window) -> np.ndarray:
    """The (..., y0:y1, x0:x1) part of `array` (..., H, W)."""
    x0, y0, x1, y1 = box
    return array[..., y0:y1, x0:x1]


def context_channels(known: torch.Tensor, edit: torch.Tensor) -> torch.Tensor:
    """The model's context (B, 2, S, S): the known image with the edit region blanked to 0, and the edit mask.

    `known` (B, 1, S, S) in [-1, 1], `edit` (B, 1, S, S) bool or {0, 1}.
    """
    mask = edit.to(known.dtype)
    return torch.cat([known * (1.0 - mask), mask], dim=1)
