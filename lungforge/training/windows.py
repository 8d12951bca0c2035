"""Training windows of the inpainting SDM, cut from the train split at the store's native resolution.

The stream's items are, first, the real nodules of the train split whose grown masks fit the
window (a window around each, jittered, whose edit region is the nodule's mask grown by the
margin), repeated so that they make about half of the stream, then one per train slice (a
window on a random lung pixel with a random disk-shaped edit region), so the model learns to
draw nodules and plain lung although nodule slices are rare. Each draw's randomness comes
from (seed, stream position), so batches depend only on the seed and the position, as for
whole-slice training (:mod:`lungforge.training.data`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lungforge.core.errors import InputError
from lungforge.core.labels import LUNG_LABELS, NODULE
from lungforge.data.dataset import SliceDataset
from lungforge.models.inpaint_window import (
    Window,
    bounding_box,
    check_window_fits,
    context_channels,
    crop,
    grow,
    window_at,
)
from lungforge.training.data import LoaderSpec, StreamBatchSampler, flip_horizontal, stream_batches

WindowKey = tuple[int, bool, int]
"""(item position, flip horizontally, stream position): what one training window is cut from."""

MIN_NODULE_WINDOW_FRACTION = 0.5
"""Share of the train split's nodules that must fit a training window (grown by the edit margin)."""
LUNG_EDIT_RADIUS_PX = (2, 8)
"""Radius range (pixels, before the margin) of the random disk edited in a plain-lung window."""


class WindowBatchSampler(StreamBatchSampler):
    """Endless per-rank batches of :data:`WindowKey` (the stream position seeds each window's draw)."""

    def batch_at(self, start: int) -> list[WindowKey]:
        return [(p, f, start + i) for i, (p, f) in enumerate(super().batch_at(start))]


class InpaintWindows(Dataset):
    """Windows of `window` pixels from `slices` (a native-resolution train split).

    Item: ``image`` (1, S, S) [-1, 1] (the target), ``label`` (S, S) long, ``context`` (2, S, S)
    (:func:`lungforge.models.inpaint_window.context_channels`), ``row`` (store row), S = `window`.
    """

    def __init__(self, slices: SliceDataset, window: int, margin_px: int, seed: int) -> None:
        check_window_fits(window, slices.height, slices.width, str(slices.path))
        self.slices, self.window, self.margin_px, self.seed = slices, window, margin_px, seed
        reach = window - 2 * margin_px
        nodules: list[tuple[int, np.ndarray]] = []
        total = 0
        for position, row in enumerate(slices.indices):
            boxes, _ = slices.boxes_of(int(row))
            total += len(boxes)
            for box in boxes:
                if box[2] - box[0] <= reach and box[3] - box[1] <= reach:
                    nodules.append((position, box.astype(np.float64)))
        _check_nodule_windows(len(nodules), total, window, margin_px, str(slices.path))
        self.nodules = nodules
        """(train-split position, bbox x0, y0, x1, y1) of each nodule whose grown mask fits a window."""
        self.nodule_items = len(nodules) * max(1, round(len(slices) / len(nodules))) if nodules else 0
        """Stream items that are nodule windows (each nodule repeated, about as many as the slices)."""

    def __len__(self) -> int:
        return self.nodule_items + len(self.slices)

    def _nodule_window(self, label: np.ndarray, box: np.ndarray, rng: np.random.Generator) -> tuple[Window, np.ndarray]:
        x0, y0, x1, y1 = (round(v) for v in box)
        mask = np.zeros(label.shape, dtype=bool)
        mask[y0:y1, x0:x1] = label[y0:y1, x0:x1] == NODULE
        if not mask.any():
            mask[y0:y1, x0:x1] = True
        edit = grow(mask, self.margin_px)
        ex0, ey0, ex1, ey1 = bounding_box(edit)
        h, w = label.shape
        # Any window that holds the whole edit region: the nodule sits anywhere in it.
        y = int(rng.integers(max(0, ey1 - self.window), min(ey0, h - self.window) + 1))
        x = int(rng.integers(max(0, ex1 - self.window), min(ex0, w - self.window) + 1))
        return (x, y, x + self.window, y + self.window), edit

    def _lung_window(self, label: np.ndarray, rng: np.random.Generator) -> tuple[Window, np.ndarray]:
        h, w = label.shape
        lung = np.flatnonzero(np.isin(label, LUNG_LABELS))
        centre = divmod(int(rng.choice(lung)), w) if lung.size else (h // 2, w // 2)
        box = window_at(centre, self.window, h, w)
        radius = int(rng.integers(LUNG_EDIT_RADIUS_PX[0], LUNG_EDIT_RADIUS_PX[1] + 1))
        radius = min(radius, self.window // 2 - self.margin_px - 1)
        yy, xx = np.mgrid[:h, :w]
        edit = grow((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2, self.margin_px)
        return box, edit & _box_mask(box, (h, w))

    def __getitem__(self, key: WindowKey) -> dict[str, Any]:
        position, flip, stream_position = key
        rng = np.random.default_rng([self.seed, stream_position, 0x1A7E])
        nodule = position < self.nodule_items
        slice_position = self.nodules[position % len(self.nodules)][0] if nodule else position - self.nodule_items
        item = self.slices[slice_position]
        label = item["label"].numpy()
        if nodule:
            box, edit = self._nodule_window(label, self.nodules[position % len(self.nodules)][1], rng)
        else:
            box, edit = self._lung_window(label, rng)
        image = torch.from_numpy(np.ascontiguousarray(crop(item["image"].numpy(), box)))
        lab = torch.from_numpy(np.ascontiguousarray(crop(label, box)))
        mask = torch.from_numpy(np.ascontiguousarray(crop(edit, box)))[None]
        if flip:
            image, lab = flip_horizontal(image, lab)
            mask = torch.flip(mask, dims=(-1,))
        context = context_channels(image[None], mask[None])[0]
        return {"image": image, "label": lab, "context": context, "row": item["index"]}


def _check_nodule_windows(kept: int, total: int, window: int, margin_px: int, where: str) -> None:
    """InputError when fewer than :data:`MIN_NODULE_WINDOW_FRACTION` of the train split's `total`
    nodules (and not even one) fit a `window`-px window with `margin_px` margins: the model would
    learn to draw lung, not nodules."""
    if kept >= max(1, math.ceil(MIN_NODULE_WINDOW_FRACTION * total)):
        return
    raise InputError(
        f"{where}: only {kept} of its {total} train nodules fit a {window} px window with a {margin_px} px edit margin "
        f"(at least {max(1, math.ceil(MIN_NODULE_WINDOW_FRACTION * total))} needed); use a larger --window or a smaller --edit-margin"
    )


def _box_mask(box: Window, shape_hw: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros(shape_hw, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def window_batches(
    windows: InpaintWindows, spec: LoaderSpec, *, consumed: int = 0, rank: int = 0, world_size: int = 1
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches `{"image": (B, 1, S, S), "label": (B, S, S), "context": (B, 2, S, S), "row": (B,)}`."""
    return stream_batches(windows, spec, consumed=consumed, rank=rank, world_size=world_size, sampler=WindowBatchSampler)
