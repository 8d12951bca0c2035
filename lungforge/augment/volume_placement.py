"""Where an inserted nodule may go in a host volume: the 3-D counterpart of the 2-D layout rules
(:mod:`lungforge.augment.layout`), with the same placement choices.

Array level: `label` is a host's (Z, Y, X) uint8 label volume at isotropic `spacing_mm`. The
lungs' distance maps are computed once per host, on the crop around its lungs, and every voxel
is judged at once: a nodule whose mask voxels lie within R mm of its anchor voxel (its reach)
fits wholly inside lung k when the anchor lies more than R mm from every voxel that is not
lung k (a Euclidean distance transform), so no voxel of the mask is tested one by one.

Rules, per placement: `any` either lung, `left` / `right` only that lung (label 1 / 2), the
whole mask inside one lung; `central` every mask voxel at least the nodule's equivalent radius
from the lung boundary; `peripheral` the mask 6-adjacent to the chest wall (body or background).
Always: the nodule and its feather stay :data:`GAP_VOXELS` voxels clear of every other nodule,
real (label 5) or inserted, and its padded patch lies inside the volume.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lungforge.augment.volume_nodules import SIX, VolumeNodule
from lungforge.core.choices import Placement
from lungforge.core.labels import BACKGROUND, BODY, LEFT_LUNG, LUNG_LABELS, NODULE, RIGHT_LUNG

GAP_VOXELS = 2
"""Free voxels kept between a new nodule's edit region and any other nodule (2-D: GAP_PX)."""
LUNGS: dict[str, tuple[int, ...]] = {"left": (LEFT_LUNG,), "right": (RIGHT_LUNG,)}
"""The lungs a placement allows (every other placement: both)."""
PERIPHERAL_TRIES = 32
"""Candidate anchors tested exactly for pleural contact before a peripheral nodule is redrawn."""


@dataclass(frozen=True, eq=False)
class HostMaps:
    """Distance maps of one host's lung crop `[lo, hi)` (voxels, half-open): per lung label, the
    distance (mm) of each crop voxel to the nearest voxel that is not that lung; the distance to the
    nearest nodule voxel and to the nearest wall voxel (body or background)."""

    lo: np.ndarray
    hi: np.ndarray
    lung: dict[int, np.ndarray]
    to_nodule: np.ndarray
    to_wall: np.ndarray
    spacing_mm: float


def host_maps(label: np.ndarray, spacing_mm: float, wall: bool) -> HostMaps | None:
    """The distance maps of a (Z, Y, X) label volume on the box around its lungs, grown by two
    voxels (so the wall around them is seen); the distance to the wall only with `wall` (for
    `peripheral`; otherwise infinite). None when the volume has no lung voxel."""
    lungs = np.isin(label, LUNG_LABELS)
    if not lungs.any():
        return None
    shape = np.array(label.shape)
    lo = np.array([np.flatnonzero(lungs.any(axis=tuple(a for a in range(3) if a != k)))[0] for k in range(3)]) - 2
    hi = np.array([np.flatnonzero(lungs.any(axis=tuple(a for a in range(3) if a != k)))[-1] for k in range(3)]) + 3
    lo, hi = np.maximum(lo, 0), np.minimum(hi, shape)
    crop = label[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]
    walls = (crop == BODY) | (crop == BACKGROUND)
    nodule = crop == NODULE
    return HostMaps(
        lo=lo,
        hi=hi,
        lung={k: ndimage.distance_transform_edt(crop == k, sampling=spacing_mm) for k in LUNG_LABELS},
        to_nodule=ndimage.distance_transform_edt(~nodule, sampling=spacing_mm) if nodule.any() else np.full(crop.shape, np.inf),
        to_wall=ndimage.distance_transform_edt(~walls, sampling=spacing_mm) if wall and walls.any() else np.full(crop.shape, np.inf),
        spacing_mm=spacing_mm,
    )


@dataclass(frozen=True, eq=False)
class Placed:
    """A nodule placed in a host: the start (z, y, x voxels, host index) of its padded patch, its
    anchor voxel (host index) and its reach and padded reach (mm) for the gap to later nodules."""

    nodule: VolumeNodule
    start: np.ndarray
    anchor: np.ndarray
    reach_mm: float
    padded_reach_mm: float

    @property
    def stop(self) -> np.ndarray:
        return self.start + np.array(self.nodule.mask.shape)

    def mask_box(self) -> np.ndarray:
        """z0, y0, x0, z1, y1, x1 (host voxels, half-open) of the mask."""
        where = np.nonzero(self.nodule.mask)
        return np.array([*(self.start + [w.min() for w in where]), *(self.start + [w.max() + 1 for w in where])], dtype=np.int64)


def _anchor_and_reach(nodule: VolumeNodule, spacing_mm: float) -> tuple[np.ndarray, float, float]:
    """The mask voxel nearest the mask's centroid (patch index), the largest distance (mm) from it
    to a mask voxel, and that plus the patch's feather (the edit region's reach)."""
    where = np.argwhere(nodule.mask)
    anchor = where[np.argmin(((where - where.mean(axis=0)) ** 2).sum(axis=1))]
    reach = float(np.sqrt(((where - anchor) ** 2).sum(axis=1).max())) * spacing_mm
    return anchor, reach, reach + nodule.pad * spacing_mm


def place(
    maps: HostMaps,
    nodule: VolumeNodule,
    diameter_mm: float,
    placement: Placement,
    placed: list[Placed],
    rng: np.random.Generator,
    volume_shape: tuple[int, int, int],
    label: np.ndarray,
) -> Placed | None:
    """A random anchor for `nodule` in the host of `maps` by the rules of `placement` (module
    docstring), clear of the `placed` nodules; None when none fits.

    `label` is the host's whole label volume (only read around candidates, for the exact
    pleural-contact test of `peripheral`)."""
    spacing = maps.spacing_mm
    anchor, reach, padded = _anchor_and_reach(nodule, spacing)
    depth = reach + (diameter_mm / 2.0 if placement == "central" else 0.0)
    lungs = LUNGS.get(placement, LUNG_LABELS)
    ok = np.zeros(maps.to_nodule.shape, dtype=bool)
    for k in lungs:
        ok |= maps.lung[k] > depth
    ok &= maps.to_nodule > padded + GAP_VOXELS * spacing
    if placement == "peripheral":
        ok &= maps.to_wall <= reach + 1.5 * spacing
    # The padded patch must lie inside the volume: anchor - patch anchor >= 0, stop <= shape.
    first = anchor - maps.lo
    last = np.array(volume_shape) - (np.array(nodule.mask.shape) - anchor) - maps.lo
    valid = tuple(slice(max(0, int(a)), max(0, int(b) + 1)) for a, b in zip(first, last))
    inside = np.zeros_like(ok)
    inside[valid] = True
    ok &= inside
    candidates = np.argwhere(ok)
    if placed and len(candidates):
        centres = np.array([p.anchor for p in placed]) - maps.lo
        clear = np.array([p.padded_reach_mm for p in placed]) + padded + GAP_VOXELS * spacing
        distance = np.sqrt((((candidates[:, None, :] - centres[None]) * spacing) ** 2).sum(axis=2))
        candidates = candidates[(distance > clear[None]).all(axis=1)]
    if not len(candidates):
        return None
    tries = PERIPHERAL_TRIES if placement == "peripheral" else 1
    for pick in rng.choice(len(candidates), size=min(tries, len(candidates)), replace=False):
        host_anchor = candidates[pick] + maps.lo
        start = host_anchor - anchor
        result = Placed(nodule, start, host_anchor, reach, padded)
        if placement != "peripheral" or _touches_wall(result, label):
            return result
    return None


def _touches_wall(placed: Placed, label: np.ndarray) -> bool:
    """True when a mask voxel is 6-adjacent to a body or background voxel of the host."""
    mask = placed.nodule.mask
    ring = ndimage.binary_dilation(mask, structure=SIX) & ~mask
    crop = np.asarray(label[tuple(slice(int(a), int(b)) for a, b in zip(placed.start, placed.stop))])
    return bool(np.isin(crop[ring], (BODY, BACKGROUND)).any())
