"""The `blob` control: every planned nodule becomes a constant-intensity ellipse of its requested size.

A blob sample keeps the planner's host slice, nodule centres, requested diameters and nodule
sources (so it joins a benchmark fold exactly when `paste` does), but its footprint is an
ellipse of that equivalent diameter (axis ratio 0.6–1, any orientation, drawn from the sample's
seed) and its pixels one constant: the mean of the copied real nodule's pixels on its own
footprint. Label map, box and diameter are the ellipse's, exactly. A generator whose nodules do
no better than blobs adds shape and intensity a detector could get from an ellipse.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lungforge.augment.layout import PlacedNodule
from lungforge.augment.nodule_library import RealPatch
from lungforge.augment.plan import PlannedSample
from lungforge.core.labels import NODULE

AXIS_RATIO = (0.6, 1.0)
"""Range of the ellipse's minor / major axis ratio."""
BLOB_STREAM = 0xB10B
"""Mixed into the sample seed so a blob's ellipse draws do not reuse the layout's random numbers."""


def ellipse_footprint(diameter_mm: float, spacing_mm: tuple[float, float], ratio: float, angle: float) -> np.ndarray:
    """(h, w) bool tight footprint of an ellipse of equivalent diameter `diameter_mm` (area
    π d² / 4 mm²), minor/major axis `ratio`, major axis at `angle` rad from the row axis, on pixels of
    `spacing_mm` (row, col); always holds its centre pixel, odd-sized about it."""
    major, minor = diameter_mm / 2 / np.sqrt(ratio), diameter_mm / 2 * np.sqrt(ratio)
    reach = np.ceil(major / np.array(spacing_mm)).astype(int)
    rows, cols = np.mgrid[-reach[0] : reach[0] + 1, -reach[1] : reach[1] + 1]
    y, x = rows * spacing_mm[0], cols * spacing_mm[1]
    u = y * np.cos(angle) + x * np.sin(angle)
    v = -y * np.sin(angle) + x * np.cos(angle)
    inside = (u / major) ** 2 + (v / minor) ** 2 <= 1.0
    inside[reach[0], reach[1]] = True
    keep_r, keep_c = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    return inside[keep_r.min() : keep_r.max() + 1, keep_c.min() : keep_c.max() + 1]


def nodule_intensity(nodule: PlacedNodule) -> float:
    """Mean uint8 value of the copied real nodule on its own footprint (its `patch`); 255 without one."""
    if nodule.patch is None:
        return 255.0
    m = nodule.patch.margin
    h, w = nodule.footprint.shape
    return float(nodule.patch.image[m : m + h, m : m + w][nodule.footprint].mean())


def blob_sample(sample: PlannedSample, host_label: np.ndarray) -> PlannedSample:
    """`sample` with every nodule replaced by a constant ellipse about the same centre.

    `host_label` (S, S) uint8 is the host slice's own label map at the sample's size (no
    planned nodule in it). Each new nodule's `patch` holds only its constant: (h, w) pixels of
    the value :func:`nodule_intensity` with margin 0, what :meth:`ControlGenerator.render` writes.
    """
    if not sample.nodules:
        return sample
    rng = np.random.default_rng([sample.seed, BLOB_STREAM])
    label = host_label.copy()
    size = label.shape[0]
    nodules = []
    for nodule in sample.nodules:
        footprint = ellipse_footprint(nodule.requested_mm, sample.spacing_mm, rng.uniform(*AXIS_RATIO), rng.uniform(0.0, np.pi))
        centre = np.array(nodule.origin) + np.array(nodule.footprint.shape) // 2
        origin = np.clip(centre - np.array(footprint.shape) // 2, 0, size - np.array(footprint.shape))
        r, c = int(origin[0]), int(origin[1])
        h, w = footprint.shape
        label[r : r + h, c : c + w][footprint] = NODULE
        area_mm2 = footprint.sum() * sample.spacing_mm[0] * sample.spacing_mm[1]
        value = np.full(footprint.shape, round(nodule_intensity(nodule)), np.uint8)
        nodules.append(
            dataclasses.replace(
                nodule,
                footprint=footprint,
                origin=(r, c),
                achieved_mm=float(np.sqrt(4 * area_mm2 / np.pi)),
                patch=RealPatch(value, np.zeros(footprint.shape, bool), 0),
            )
        )
    return dataclasses.replace(sample, label=label, nodules=tuple(nodules))


def paint_blobs(image: np.ndarray, sample: PlannedSample) -> None:
    """Write each blob nodule's constant (its `patch`) on its footprint of `image` (S, S) uint8, in place."""
    for nodule in sample.nodules:
        if nodule.patch is None:
            raise ValueError("a blob nodule carries its constant in `patch`; plan it with blob_sample")
        r, c = nodule.origin
        h, w = nodule.footprint.shape
        image[r : r + h, c : c + w][nodule.footprint] = nodule.patch.image[nodule.footprint]
