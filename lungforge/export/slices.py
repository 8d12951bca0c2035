"""The slices an export writes: selection by split and nodules, block reads, optional resizing."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lungforge.core.choices import ExportSplit
from lungforge.core.labels import NODULE
from lungforge.data.resize import resize_label_maps, resize_slices
from lungforge.store import SPLIT_IDS, Store

SPLIT_NAMES = {sid: name for name, sid in SPLIT_IDS.items()}


@dataclass(frozen=True, eq=False)
class ExportSlice:
    """One slice as exported: pixels at the export size, one mask and one box per nodule.

    `masks` (K, H, W) bool are the nodule-label pixels of each nodule at the export size, never
    empty; `boxes` (K, 4) x0, y0, x1, y1 px (x = column, x1 and y1 exclusive) are their tight
    bounds after a resize, the store's boxes otherwise; `restored` (K,) bool marks the nodules
    the resize erased, kept as their nearest pixel (see :func:`iter_slices`).
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
    restored: np.ndarray

    @property
    def shape_hw(self) -> tuple[int, int]:
        return int(self.image.shape[0]), int(self.image.shape[1])

    def nodule_mask(self, k: int) -> np.ndarray:
        """(H, W) bool: the pixels of nodule `k`."""
        return self.masks[k]

    def nodule_pixels(self) -> np.ndarray:
        """(K,) int: pixels of each nodule at the export size (1 for a restored one)."""
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


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """(K, H, W) bool, none empty → (K, 4) float64 tight boxes x0, y0, x1, y1 px (x1, y1 exclusive)."""
    boxes = np.zeros((len(masks), 4), dtype=np.float64)
    for k, mask in enumerate(masks):
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes[k] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def nearest_pixel(mask: np.ndarray, box: np.ndarray, size: int) -> tuple[int, int]:
    """(row, col) of the size × size pixel that holds the centre of mass of `mask` (H, W) bool,
    or of `box` (x0, y0, x1, y1 px at H × W) when the mask is empty."""
    h, w = mask.shape
    if mask.any():
        rows, cols = np.nonzero(mask)
        cy, cx = rows.mean() + 0.5, cols.mean() + 0.5  # pixel centres
    else:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return min(max(int(cy * size / h), 0), size - 1), min(max(int(cx * size / w), 0), size - 1)


def resized_nodules(label: np.ndarray, boxes: np.ndarray, label_out: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nodules of one slice at the export size: (masks (K, S, S) bool, boxes (K, 4) px, restored (K,) bool).

    `label` (H, W) is the store's label map, `boxes` (K, 4) its nodule boxes px and `label_out`
    (S, S) the label map resized nearest neighbour. Each nodule's mask (its nodule pixels inside
    its store box) is resized the same way and its box becomes the mask's tight box; a nodule the
    resize erased keeps its nearest pixel (:func:`nearest_pixel`), which is set to the nodule
    label in `label_out` (in place), so mask, box and label map agree for every nodule.
    """
    size = label_out.shape[0]
    if not len(boxes):
        return np.zeros((0, size, size), dtype=bool), np.zeros((0, 4)), np.zeros(0, dtype=bool)
    native = nodule_masks(label, boxes)
    masks = resize_label_maps(native.astype(np.uint8), size).astype(bool)
    restored = np.asarray(~masks.any(axis=(1, 2)))
    for k in np.flatnonzero(restored):
        row, col = nearest_pixel(native[k], boxes[k], size)
        masks[k, row, col] = True
        label_out[row, col] = NODULE
    return masks, mask_boxes(masks), restored


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
    (:func:`lungforge.data.resize.resize_slices`), pixel spacing scaled with them, and each
    nodule's mask and box follow the label map (:func:`resized_nodules`): a nodule too small for
    the export size keeps its nearest pixel, in its mask, its box and the label map.
    """
    h, w = store.shape_hw
    table = store.nodules()
    order = np.argsort(table["slice"], kind="stable")
    nod_slice, nod_bbox, nod_diam = table["slice"][order], table["bbox"][order], table["diameter_mm"][order]
    split, fold, series, z = store.meta("split"), store.meta("fold"), store.meta("series"), store.meta("z")
    spacing = store.meta("spacing").astype(np.float64)
    uids = store.series_uids
    width = max(6, len(str(max(len(store) - 1, 0))))
    scale_spacing = np.array([h / size, w / size]) if size else np.ones(2)
    block = store.shard_slices
    starts = np.unique(indices // block) * block
    for start in starts.tolist():
        rows = indices[(indices >= start) & (indices < start + block)]
        end = int(rows[-1]) + 1
        images, labels = np.asarray(store.image[start:end]), np.asarray(store.label[start:end])
        images, labels = images[rows - start], labels[rows - start]
        resized = size if size and (size, size) != (h, w) else None
        if resized is not None:
            images_out, labels_out = resize_slices(images, labels, resized)
        else:
            images_out, labels_out = images, labels
        for j, row in enumerate(rows.tolist()):
            lo, hi = np.searchsorted(nod_slice, [row, row + 1])
            boxes = nod_bbox[lo:hi].astype(np.float64).reshape(-1, 4)
            if resized is not None:
                masks, boxes, restored = resized_nodules(labels[j], boxes, labels_out[j])
            else:
                masks, restored = nodule_masks(labels[j], boxes), np.zeros(len(boxes), dtype=bool)
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
                restored=restored,
            )
