"""32×32 patches for nodule detection: positives centred on nodules, negatives in lung away from them.

Sampling is balanced 1:1 inside every block of slices that share a fold group, so any union of
blocks (a fold's training or test set) is balanced too. Each block draws from its own seeded
generator, so a block's patches do not depend on which other blocks exist.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter

from lungforge.bench.protocol.classic import classic_copies
from lungforge.bench.protocol.inputs import nodule_boxes, nodule_rows
from lungforge.bench.protocol.slices import read_resized, scale_boxes
from lungforge.core.labels import LUNG_LABELS, NODULE
from lungforge.store import Store

PATCH = 32
JITTER_PX = 2
REDRAW_ROUNDS = 8
FIELDS = ("images", "target", "group", "slice", "centre", "nodule")


@dataclass(frozen=True)
class PatchSet:
    """Patches with their targets: images (n, P, P) uint8, target (n,) 1 nodule / 0 not,
    group (n,) fold group of the slice's patient, slice (n,) index in the store, centre (n, 2) y, x px,
    nodule (n,) row of a positive's nodule in the store's nodule table (-1 for negatives)."""

    images: np.ndarray
    target: np.ndarray
    group: np.ndarray
    slice: np.ndarray
    centre: np.ndarray
    nodule: np.ndarray

    def __len__(self) -> int:
        return int(self.target.size)

    def select(self, mask: np.ndarray) -> PatchSet:
        return PatchSet(*(getattr(self, f)[mask] for f in FIELDS))

    @property
    def positive(self) -> np.ndarray:
        """(n,) bool: the nodule patches."""
        return self.target.astype(bool)

    def nodule_free(self) -> PatchSet:
        """The same patches, every one labelled 0 (the `hosts` control)."""
        return dataclasses.replace(self, target=np.zeros_like(self.target), nodule=np.full_like(self.nodule, -1))

    def classic(self, count: int, rng: np.random.Generator) -> PatchSet:
        """`count` classically augmented copies of the positive patches (:func:`classic_copies`)."""
        positives = self.select(self.positive)
        rows, images, _ = classic_copies(positives.images, None, count, rng)
        return dataclasses.replace(positives.select(rows), images=images)

    @staticmethod
    def concat(sets: list[PatchSet], patch: int = PATCH) -> PatchSet:
        if not sets:
            return PatchSet(
                np.zeros((0, patch, patch), np.uint8),
                np.zeros(0, np.uint8),
                np.zeros(0, np.int64),
                np.zeros(0, np.int64),
                np.zeros((0, 2), np.int64),
                np.zeros(0, np.int64),
            )
        return PatchSet(*(np.concatenate([getattr(s, f) for s in sets]) for f in FIELDS))


def positive_centres(boxes: np.ndarray, size: int, rng: np.random.Generator, patch: int = PATCH, jitter_px: int = JITTER_PX) -> np.ndarray:
    """(K, 2) int y, x patch centres: box centres (K, 4 x0,y0,x1,y1 px) plus uniform jitter in
    [-jitter_px, jitter_px], clamped so the patch lies inside a (size, size) image."""
    cx = np.floor((boxes[:, 0] + boxes[:, 2]) / 2).astype(np.int64)
    cy = np.floor((boxes[:, 1] + boxes[:, 3]) / 2).astype(np.int64)
    jitter = rng.integers(-jitter_px, jitter_px + 1, size=(boxes.shape[0], 2))
    centres = np.stack([cy, cx], axis=1) + jitter
    return np.clip(centres, patch // 2, size - patch // 2)


def negative_candidates(label: np.ndarray, boxes: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """(S, S) bool: centres of patches that lie inside the image, are centred on lung (label 1 or 2)
    and overlap no nodule box (K, 4 px) and no nodule pixel."""
    size = label.shape[0]
    half = patch // 2
    inside = np.zeros(label.shape, bool)
    inside[half : size - half + 1, half : size - half + 1] = True
    near_nodule = maximum_filter(label == NODULE, size=patch, mode="constant", cval=False)
    ys = np.arange(size)[None, :, None]
    xs = np.arange(size)[None, None, :]
    b = boxes[:, :, None, None]
    # the patch [c - half, c + half) overlaps [x0, x1] when c - half < x1 and c + half > x0
    in_box = (xs - half < b[:, 2]) & (xs + half > b[:, 0]) & (ys - half < b[:, 3]) & (ys + half > b[:, 1])
    return inside & np.isin(label, LUNG_LABELS) & ~near_nodule & ~in_box.any(axis=0)


def crop(images: np.ndarray, rows: np.ndarray, centres: np.ndarray, patch: int = PATCH) -> np.ndarray:
    """Patches (n, patch, patch) from images (m, S, S): image `rows[i]` around `centres[i]` (y, x)."""
    offs = np.arange(patch) - patch // 2
    ys = centres[:, 0, None] + offs
    xs = centres[:, 1, None] + offs
    return images[rows[:, None, None], ys[:, :, None], xs[:, None, :]]


def sample_block(
    store: Store,
    slices: np.ndarray,
    boxes: list[np.ndarray],
    table_rows: list[np.ndarray],
    group: int,
    size: int,
    rng: np.random.Generator,
    patch: int = PATCH,
    jitter_px: int = JITTER_PX,
) -> PatchSet:
    """Balanced patches of one block of slices; `boxes` are every slice's nodule boxes at `size`,
    `table_rows` their rows in the nodule table (:func:`nodule_rows`)."""
    counts = np.array([boxes[s].shape[0] for s in slices], np.int64)
    pos_slices = np.repeat(slices, counts)
    n_pos = pos_slices.size
    if n_pos == 0:
        return PatchSet.concat([], patch)
    pos_boxes = np.concatenate([boxes[s] for s in slices if boxes[s].shape[0]])
    pos_rows = np.concatenate([table_rows[s] for s in slices if boxes[s].shape[0]])
    pos_centres = positive_centres(pos_boxes, size, rng, patch, jitter_px)

    neg_slices: list[np.ndarray] = []
    neg_centres: list[np.ndarray] = []
    needed = n_pos
    images: dict[int, np.ndarray] = {}
    for _ in range(REDRAW_ROUNDS):
        if needed == 0:
            break
        drawn, per_slice = np.unique(rng.choice(slices, size=needed), return_counts=True)
        imgs, labs = read_resized(store, drawn, size)
        for s, k, img, lab in zip(drawn.tolist(), per_slice.tolist(), imgs, labs):
            cand = np.argwhere(negative_candidates(lab, boxes[s], patch))
            if cand.shape[0] == 0:
                continue
            take = cand[rng.choice(cand.shape[0], size=k, replace=k > cand.shape[0])]
            neg_slices.append(np.full(k, s, np.int64))
            neg_centres.append(take)
            images[s] = img
            needed -= k
    pos_unique = np.unique(pos_slices)
    missing = np.array([s for s in pos_unique.tolist() if s not in images], np.int64)
    if missing.size:
        imgs, _ = read_resized(store, missing, size, labels=False)
        images.update(zip(missing.tolist(), imgs))

    all_slices = np.concatenate([pos_slices, *neg_slices])
    all_centres = np.concatenate([pos_centres, *neg_centres]).astype(np.int64)
    keys = np.array(sorted(images), np.int64)
    stack = np.stack([images[k] for k in keys.tolist()])
    rows = np.searchsorted(keys, all_slices)
    target = np.concatenate([np.ones(n_pos, np.uint8), np.zeros(all_slices.size - n_pos, np.uint8)])
    nodule = np.concatenate([pos_rows, np.full(all_slices.size - n_pos, -1, np.int64)])
    return PatchSet(
        crop(stack, rows, all_centres, patch), target, np.full(all_slices.size, group, np.int64), all_slices, all_centres, nodule
    )


def sample_patches(
    store: Store,
    slices: np.ndarray,
    groups: np.ndarray,
    size: int,
    seed: int,
    stream: int = 0,
    patch: int = PATCH,
    jitter_px: int = JITTER_PX,
) -> PatchSet:
    """Balanced patches from `slices` of `store` (resized to `size`), one block per value of `groups`.

    Block `g` uses the generator seeded by (seed, stream, g), so it is reproducible on its own;
    give each store its own `stream`.
    """
    h, w = store.shape_hw
    boxes = [scale_boxes(b, h, w, size) for b in nodule_boxes(store)]
    table_rows = nodule_rows(store)
    sets = []
    for g in np.unique(groups).tolist():
        rng = np.random.default_rng([seed, stream, g + 1])
        sets.append(sample_block(store, slices[groups == g], boxes, table_rows, g, size, rng, patch, jitter_px))
    return PatchSet.concat(sets, patch)
