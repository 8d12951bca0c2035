"""Nodule visibility: HU contrast of a nodule against the lung around it.

A synthetic nodule is "visible" when its contrast is at least a low percentile of the contrast
of real nodules, measured the same way on a real store.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lungforge.core.errors import InputError
from lungforge.core.labels import LUNG_LABELS, NODULE
from lungforge.data.resize import resize_slices
from lungforge.store import WINDOW_HU

RING_PX = (2, 6)


def hu_from_uint8(image: np.ndarray) -> np.ndarray:
    """Undo the [-1000, 400] HU window: uint8 0..255 → float64 HU, same shape."""
    lo, hi = WINDOW_HU
    return lo + np.asarray(image, dtype=np.float64) / 255.0 * (hi - lo)


def _disk(radius: int) -> np.ndarray:
    return np.hypot(*np.mgrid[-radius : radius + 1, -radius : radius + 1]) <= radius


def nodule_contrast_hu_batch(
    images: np.ndarray,
    nodule_masks: np.ndarray,
    lung_masks: np.ndarray,
    ring_px: tuple[int, int] = RING_PX,
) -> np.ndarray:
    """(B,) mean HU inside each nodule minus mean HU of the lung ring around it.

    images (B, H, W) uint8 windowed CT; nodule_masks (B, H, W) bool, one nodule each;
    lung_masks (B, H, W) bool lung pixels, nodules excluded. The ring holds lung pixels at
    distance (ring_px[0], ring_px[1]] pixels from the nodule. NaN where nodule or ring is empty.
    """
    inner, outer = ring_px
    if not 0 <= inner < outer:
        raise ValueError(f"ring_px must be (inner, outer) pixels with 0 <= inner < outer, got {ring_px}")
    nodules = np.asarray(nodule_masks, dtype=bool)
    near = ndimage.binary_dilation(nodules, structure=_disk(inner)[None])
    far = ndimage.binary_dilation(nodules, structure=_disk(outer)[None])
    ring = far & ~near & np.asarray(lung_masks, dtype=bool) & ~nodules
    hu = hu_from_uint8(images)
    with np.errstate(invalid="ignore", divide="ignore"):
        inside = (hu * nodules).sum(axis=(1, 2)) / nodules.sum(axis=(1, 2))
        around = (hu * ring).sum(axis=(1, 2)) / ring.sum(axis=(1, 2))
    return inside - around


def nodule_contrast_hu(
    image: np.ndarray,
    nodule_mask: np.ndarray,
    lung_mask: np.ndarray,
    ring_px: tuple[int, int] = RING_PX,
) -> float:
    """Contrast (HU) of one nodule in an (H, W) uint8 image; see :func:`nodule_contrast_hu_batch`."""
    return float(nodule_contrast_hu_batch(image[None], nodule_mask[None], lung_mask[None], ring_px)[0])


def label_contrasts_hu(
    image: np.ndarray,
    label: np.ndarray,
    nodule_masks: np.ndarray | None = None,
    ring_px: tuple[int, int] = RING_PX,
) -> np.ndarray:
    """(K,) contrast (HU) of each nodule of one slice, image and label (H, W) uint8.

    `nodule_masks` (K, H, W) bool names the nodules (e.g. placed ones); by default each
    8-connected component of label == NODULE is one nodule. The lung ring uses labels 1 and 2.
    """
    if nodule_masks is None:
        components, count = ndimage.label(label == NODULE, structure=np.ones((3, 3), dtype=bool))
        nodule_masks = components[None] == np.arange(1, count + 1)[:, None, None]
    k = nodule_masks.shape[0]
    if k == 0:
        return np.zeros(0, dtype=np.float64)
    lung = np.isin(label, LUNG_LABELS)
    return nodule_contrast_hu_batch(
        np.broadcast_to(image, (k, *image.shape)), nodule_masks, np.broadcast_to(lung, (k, *lung.shape)), ring_px
    )


def real_contrasts_hu(store, ring_px: tuple[int, int] = RING_PX, size: int | None = None) -> np.ndarray:
    """Contrast (HU) of every nodule component on the nodule slices of a real store.

    With `size`, slices are first resized to size×size pixels as the generators see them, so
    the contrasts compare like with like with generated images of that size.
    """
    slices = np.flatnonzero(store.meta("has_nodule"))
    pairs = (store.read(int(i)) for i in slices)
    if size is not None and (size, size) != tuple(store.shape_hw):
        pairs = (tuple(a[0] for a in resize_slices(img[None], lab[None], size)) for img, lab in pairs)
    parts = [label_contrasts_hu(img, lab, ring_px=ring_px) for img, lab in pairs]
    values = np.concatenate(parts) if parts else np.zeros(0)
    return values[np.isfinite(values)]


def contrast_threshold_from_store(store, percentile: float = 5.0, ring_px: tuple[int, int] = RING_PX, size: int | None = None) -> float:
    """The `percentile` (0..100) of real nodule contrast (HU), measured at `size` pixels if given:
    synthetic nodules below it are not visible."""
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    values = real_contrasts_hu(store, ring_px, size)
    if values.size == 0:
        raise InputError(f"{store.path}: no measurable nodules on its nodule slices to derive a visibility threshold from")
    return float(np.percentile(values, percentile))
