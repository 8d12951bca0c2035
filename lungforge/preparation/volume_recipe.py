"""The volume recipe for one scan (docs/prepare.md, "Volumes"): display orientation, crop to the
body, resampling to one isotropic spacing, label volume and nodule table.

The scan is read and checked as for slices (:func:`~lungforge.preparation.scan_recipe.read_scan`),
cropped to the box holding the body, the lungs and every annotated nodule (grown by a margin),
and resampled on a grid of `spacing_mm` voxels that starts at the crop's first voxel: HU
linearly, lung labels by nearest neighbour. The body and the nodules are then found on the
resampled volume with the slice recipe's own functions: body = windowed > 127, holes filled,
largest component per axial slice; nodule = the sphere of the annotated diameter ∩ the nodule
threshold (:func:`~lungforge.preparation.masks.nodule_mask`), a 3-D mask whose extent along z is
the sphere's at this spacing. Labels are painted as for slices: body, lungs/trachea, nodule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from lungforge.luna16 import scans as luna16
from lungforge.preparation.masks import body_mask, compose_labels, nodule_mask, seg_to_labels, window_to_uint8
from lungforge.preparation.options import VolumeOptions
from lungforge.preparation.scan_recipe import nodule_centres, read_scan
from lungforge.store.volume_schema import NO_BOX

SLAB = 32
"""Axial slices resampled, or windowed for the body mask, at a time: bounds the float and label
temporaries to a slab whatever the scan's length (the steps are per slice or local in z)."""


@dataclass
class ScanVolume:
    """One scan as a volume: HU (Z, Y, X) int16 and labels (Z, Y, X) uint8 at the isotropic
    spacing; `origin_mm` (3,) world x, y, z of voxel (0, 0, 0); `direction` (3, 3) as ITK's;
    `source_spacing_mm` (3,) x, y, z of the file; `nodules` one row per annotation (the columns
    of :data:`lungforge.store.volume_schema.NODULE_COLUMNS` except `scan`); `lost` the
    annotations whose mask is empty."""

    uid: str
    image: np.ndarray
    label: np.ndarray
    origin_mm: np.ndarray
    direction: np.ndarray
    source_spacing_mm: np.ndarray
    nodules: dict[str, np.ndarray]
    lost: list[dict[str, Any]] = field(default_factory=list)


def process_scan_volume(root: Path, ref: luna16.ScanRef, annotations: list[luna16.Annotation], options: VolumeOptions) -> ScanVolume:
    """Run the volume recipe on one scan. Raises :class:`ScanError` naming the file and the problem
    (as the slice recipe: unreadable, not HU, seg mask laid out otherwise, no lung, an
    annotation outside the volume)."""
    volume, lungs, _ = read_scan(root, ref, options.lungs, options.seg_values)
    centres = nodule_centres(volume, ref, annotations) if annotations else np.zeros((0, 3))
    lung_ids = seg_to_labels(lungs, options.seg_values) if options.lungs == "seg" else lungs
    del lungs
    source_zyx = volume.spacing_mm[::-1]
    radii_mm = np.array([a.diameter_mm / 2.0 for a in annotations])
    lo, hi = crop_box(volume.hu, lung_ids, centres[:, ::-1], radii_mm, source_zyx, options.margin_mm)
    step = options.spacing_mm / source_zyx
    shape = tuple(int(n) for n in np.floor((hi - lo) / step + 1e-6) + 1)
    hu = resample(volume.hu, lo, step, shape, order=1)
    lungs_out = resample(lung_ids, lo, step, shape, order=0)
    del lung_ids
    spacing = np.full(3, options.spacing_mm)
    origin = luna16.index_to_world(lo[::-1][None].astype(np.float64), volume.origin_mm, volume.spacing_mm, volume.direction)[0]
    nodule_px, nodules, lost = _nodules(hu, annotations, origin, spacing, volume.direction, ref.uid)
    label = compose_labels(_body(hu), lungs_out, nodule_px)
    return ScanVolume(
        uid=ref.uid,
        image=hu,
        label=label,
        origin_mm=origin,
        direction=volume.direction,
        source_spacing_mm=volume.spacing_mm,
        nodules=nodules,
        lost=lost,
    )


def crop_box(
    hu: np.ndarray, lungs: np.ndarray, centres_zyx: np.ndarray, radii_mm: np.ndarray, spacing_zyx_mm: np.ndarray, margin_mm: float
) -> tuple[np.ndarray, np.ndarray]:
    """The (z, y, x) voxel box, first and last index (inclusive, (3,) int64 each), holding the
    body of the (Z, Y, X) HU volume `hu`, its lung labels `lungs` (non-zero voxels) and every
    nodule (centres (N, 3) continuous z, y, x; radii (N,) mm), grown by `margin_mm` on each side
    and clipped to the volume."""
    keep = _body(hu) | (lungs > 0)
    shape = np.array(hu.shape)
    lo, hi = shape.copy(), np.full(3, -1)
    for axis in range(3):
        present = np.flatnonzero(keep.any(axis=tuple(a for a in range(3) if a != axis)))
        if present.size:
            lo[axis], hi[axis] = present[0], present[-1]
    if centres_zyx.size:
        reach = radii_mm[:, None] / spacing_zyx_mm[None, :]
        lo = np.minimum(lo, np.floor((centres_zyx - reach).min(axis=0)).astype(np.int64))
        hi = np.maximum(hi, np.ceil((centres_zyx + reach).max(axis=0)).astype(np.int64))
    if (hi < lo).any():  # neither body nor lung nor nodule: keep the whole volume
        lo, hi = np.zeros(3, dtype=np.int64), shape - 1
    grow = np.ceil(margin_mm / spacing_zyx_mm).astype(np.int64)
    return np.maximum(lo - grow, 0).astype(np.int64), np.minimum(hi + grow, shape - 1).astype(np.int64)


def resample(array: np.ndarray, start_zyx: np.ndarray, step_zyx: np.ndarray, shape_zyx: tuple[int, ...], order: int) -> np.ndarray:
    """Sample the (Z, Y, X) `array` on the grid start + j·step (voxel units of `array`, per axis)
    of `shape_zyx` points: linearly (`order` 1, rounded back to the dtype; for HU) or nearest
    neighbour (`order` 0; for labels). Points are clamped to the array's edge voxels.

    Done with :func:`scipy.ndimage.affine_transform` on slabs of :data:`SLAB` output slices, each
    reading only the input slices it needs, so temporaries stay a slab's size.
    """
    out = np.empty(shape_zyx, dtype=array.dtype)
    start = np.asarray(start_zyx, dtype=np.float64)
    step = np.asarray(step_zyx, dtype=np.float64)
    for z0 in range(0, shape_zyx[0], SLAB):
        n = min(SLAB, shape_zyx[0] - z0)
        first = start[0] + z0 * step[0]
        below = max(0, math.floor(first))
        above = min(array.shape[0], math.ceil(first + (n - 1) * step[0]) + 2)
        offset = (first - below, start[1], start[2])
        if order == 0:
            out[z0 : z0 + n] = ndimage.affine_transform(
                array[below:above], step, offset=offset, output_shape=(n, *shape_zyx[1:]), order=0, mode="nearest"
            )
        else:
            sampled = ndimage.affine_transform(
                array[below:above], step, offset=offset, output_shape=(n, *shape_zyx[1:]), order=1, mode="nearest", output=np.float32
            )
            out[z0 : z0 + n] = np.rint(sampled)
    return out


def _body(hu: np.ndarray) -> np.ndarray:
    """The slice recipe's body mask of a (Z, Y, X) HU volume (per axial slice), a slab at a time."""
    body = np.zeros(hu.shape, dtype=bool)
    for z0 in range(0, hu.shape[0], SLAB):
        body[z0 : z0 + SLAB] = body_mask(window_to_uint8(hu[z0 : z0 + SLAB]))
    return body


def _nodules(
    hu: np.ndarray, annotations: list[luna16.Annotation], origin_mm: np.ndarray, spacing_mm: np.ndarray, direction: np.ndarray, uid: str
) -> tuple[np.ndarray, dict[str, np.ndarray], list[dict[str, Any]]]:
    """The nodule voxels (Z, Y, X) bool of the resampled volume, the nodule table of `annotations`
    and the annotations whose mask is empty."""
    nodule_px = np.zeros(hu.shape, dtype=bool)
    count = len(annotations)
    centres_mm = np.array([a.center_mm for a in annotations], dtype=np.float64).reshape(count, 3)
    centres_xyz = luna16.world_to_index(centres_mm, origin_mm, spacing_mm, direction).reshape(count, 3)
    voxels = np.zeros(count, dtype=np.int64)
    bbox = np.full((count, 6), NO_BOX, dtype=np.int32)
    lost = []
    for k, (annotation, centre) in enumerate(zip(annotations, centres_xyz)):
        box, mask = nodule_mask(hu, centre, annotation.diameter_mm, spacing_mm, direction)
        nodule_px[box] |= mask
        voxels[k] = int(mask.sum())
        if voxels[k] == 0:
            lost.append(
                {
                    "series": uid,
                    "center_mm": [round(float(v), 2) for v in annotation.center_mm],
                    "diameter_mm": round(annotation.diameter_mm, 2),
                    "reason": f"mask empty at {spacing_mm[0]:g} mm (no voxel of its sphere is denser than the threshold)",
                }
            )
            continue
        where = np.nonzero(mask)
        starts = np.array([s.start for s in box])
        bbox[k, :3] = starts + [w.min() for w in where]
        bbox[k, 3:] = starts + [w.max() + 1 for w in where]
    table = {
        "center_mm": centres_mm,
        "center_voxel": centres_xyz[:, ::-1].copy(),
        "diameter_mm": np.array([a.diameter_mm for a in annotations], dtype=np.float32),
        "annotation": np.array([a.line for a in annotations], dtype=np.int64),
        "voxels": voxels,
        "bbox": bbox,
    }
    return nodule_px, table, lost
