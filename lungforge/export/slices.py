"""The slices an export writes: selection by split and nodules, block reads, optional resizing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lungforge.data.resize import resize_label_maps, resize_slices
from lungforge.data.store import SPLIT_IDS, Store
from lungforge.labels import NODULE
from lungforge.choices import ExportSplit

SPLIT_NAMES = {sid: name for name, sid in SPLIT_IDS.items()}


@dataclass(frozen=True, eq=False)
class ExportSlice:
    """One slice as exported: pixels at the export size, one mask and one box per nodule.

    `masks` (K, H, W) bool are the nodule-label pixels of each nodule at the export size;
    `boxes` (K, 4) x0, y0, x1, y1 px (x = column, x1 and y1 exclusive) are their tight bounds
    after a resize, the store's boxes otherwise (see :func:`iter_slices`).
    """

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
    masks: np.ndarray
    diameters_mm: np.ndarray

    @property
    def shape_hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def nodule_mask(self, k: int) -> np.ndarray:
        """(H, W) bool: the pixels of nodule `k`."""
        return self.masks[k]

    def nodule_pixels(self) -> np.ndarray:
        """(K,) int: pixels of each nodule (0 where resizing erased a nodule)."""
        return self.masks.sum(axis=(1, 2), dtype=np.int64)


def nodule_masks(label: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(H, W) label map and (K, 4) boxes px → (K, H, W) bool: nodule-label pixels inside each box
    (its float edges rounded outward)."""
    h, w = label.shape
    nodule = label == NODULE
    masks = np.zeros((len(boxes), h, w), dtype=bool)
    for k, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)):
        rows = slice(max(int(np.floor(y0)), 0), min(int(np.ceil(y1)), h))
        cols = slice(max(int(np.floor(x0)), 0), min(int(np.ceil(x1)), w))
        masks[k, rows, cols] = nodule[rows, cols]
    return masks


def mask_boxes(masks: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """(K, H, W) bool → (K, 4) float64 tight boxes x0, y0, x1, y1 px (x1, y1 exclusive);
    an empty mask keeps its row of `fallback` (K, 4)."""
    boxes = np.asarray(fallback, dtype=np.float64).reshape(-1, 4).copy()
    for k, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size:
            boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def select_indices(store: Store, split: ExportSplit, nodule_only: bool) -> np.ndarray:
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
    (:func:`lungforge.data.resize.resize_slices`) and pixel spacing scaled with them. Each
    nodule's mask (its nodule pixels inside its store box) is resized like the label map, and its
    box becomes the tight box of the resized mask, so boxes, masks and label maps agree; a nodule
    whose mask the resize erased keeps its store box scaled (counted in `nodules_without_mask`).
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
        resized = bool(size) and (size, size) != (h, w)
        if resized:
            images_out, labels_out = resize_slices(images, labels, size)
        else:
            images_out, labels_out = images, labels
        for j, row in enumerate(rows.tolist()):
            lo, hi = np.searchsorted(nod_slice, [row, row + 1])
            boxes = nod_bbox[lo:hi].astype(np.float64).reshape(-1, 4)
            masks = nodule_masks(labels[j], boxes)
            if resized and len(boxes):
                masks = resize_label_maps(masks.astype(np.uint8), size).astype(bool)
                boxes = mask_boxes(masks, boxes * scale_xy)
            elif resized:
                masks = np.zeros((0, size, size), dtype=bool)
            sp = spacing[row] * scale_spacing
            yield ExportSlice(
                index=row,
                name=f"{row:0{width}d}",
                split=SPLIT_NAMES[int(split[row])],
                fold=int(fold[row]),
                series_uid=uids[int(series[row])],
                z=int(z[row]),
                image=images_out[j],
                label=labels_out[j],
                spacing_mm=(float(sp[0]), float(sp[1])),
                boxes=boxes,
                masks=masks,
                diameters_mm=nod_diam[lo:hi].astype(np.float64),
            )
