"""Visibility check of inserted nodules: each sample's weakest nodule contrast (HU) against a threshold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lungforge.augment.plan import PlannedSample
from lungforge.augment.visibility import nodule_contrast_hu_batch
from lungforge.core.labels import LUNG_LABELS


def weakest_contrast_hu(images: np.ndarray, samples: Sequence[PlannedSample]) -> np.ndarray:
    """(B,) lowest contrast (HU) over each sample's inserted nodules, for images (B, H, W) uint8.

    +inf for a sample without nodules (nothing to see), −inf where a contrast is undefined (no
    lung ring around the nodule): such a nodule cannot be shown to be visible.
    """
    owner = np.array([i for i, s in enumerate(samples) for _ in s.nodules], dtype=np.int64)
    weakest = np.full(len(samples), np.inf)
    if owner.size == 0:
        return weakest
    shape = images.shape[1:]
    masks = np.stack([n.mask(shape) for s in samples for n in s.nodules])
    lungs = np.stack([np.isin(s.label, LUNG_LABELS) for s in samples])[owner]
    contrast = np.nan_to_num(nodule_contrast_hu_batch(images[owner], masks, lungs), nan=-np.inf)
    np.minimum.at(weakest, owner, contrast)
    return weakest
