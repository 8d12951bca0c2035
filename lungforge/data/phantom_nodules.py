"""Phantom nodules: LUNA16's counts and diameters, LIDC outlines, about a third juxtapleural."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungforge.data.luna16_statistics import sample_diameters_mm, sample_nodule_count
from lungforge.data.phantom_geometry import SEG_LEFT, SEG_RIGHT, PhantomGeometry, ball
from lungforge.nodule_shape import sample_outline

Z_EXTENT_LOG_SD = 0.15
"""A nodule's z semi-axis is its equivalent radius times a log-normal factor (natural-log sd)."""


@dataclass(frozen=True)
class PhantomNodule:
    """A rendered nodule: its centre voxel (x, y, z) in the anatomy array and diameter in mm."""

    index_xyz: np.ndarray
    diameter_mm: float


def place_nodules(rng: np.random.Generator, hu: np.ndarray, seg: np.ndarray, geometry: PhantomGeometry, u: np.ndarray) -> list[PhantomNodule]:
    """Solid nodules with LUNA16's count per scan and diameters, about a third juxtapleural.

    Count and diameters come from :mod:`lungforge.data.luna16_statistics` (a third of the scans
    have none); shapes from :func:`nodule_voxels`. Each centre is a voxel inside a lung (seg 3
    or 4), placed largest first. A juxtapleural nodule is centred a little inside the lung wall
    so that 8–45% of its voxels lie outside the lung; the others lie wholly inside. A nodule
    that cannot be placed as drawn falls back to any position inside the lung, or is dropped
    when none is found.
    """
    count = sample_nodule_count(rng)
    if count == 0:
        return []
    diameters = np.sort(sample_diameters_mm(rng, count))[::-1]
    spacing_zyx = geometry.spacing_mm[::-1]
    lung = (seg == SEG_LEFT) | (seg == SEG_RIGHT)
    rows = np.flatnonzero((u >= 0.2) & (u <= 0.85))
    if rows.size == 0 or not lung[rows].any():
        rows = np.flatnonzero(lung.any(axis=(1, 2)))
    if rows.size == 0:
        return []
    block = lung[rows]
    edge = block & ~(np.roll(block, 1, 1) & np.roll(block, -1, 1) & np.roll(block, 1, 2) & np.roll(block, -1, 2))
    interior, wall = np.flatnonzero(block.ravel()), np.flatnonzero(edge.ravel())
    shape = np.array(hu.shape)
    placed: list[PhantomNodule] = []
    for diameter in (float(d) for d in diameters):
        juxtapleural = rng.random() < 0.35
        offsets = nodule_voxels(rng, diameter, spacing_zyx)
        fallback = None
        for _ in range(300):
            k, j, i = np.unravel_index(rng.choice(wall if juxtapleural else interior), block.shape)
            centre = np.array([rows[k], j, i])
            if juxtapleural:
                angle = rng.uniform(0, 2 * np.pi)
                step = 0.35 * diameter * np.array([0.0, np.sin(angle), np.cos(angle)]) / spacing_zyx
                centre = centre + np.rint(step).astype(np.int64)
            voxels = centre + offsets
            if not np.all((voxels >= 0) & (voxels < shape)) or not lung[tuple(centre)]:
                continue
            if any(np.linalg.norm((centre - p.index_xyz[::-1]) * spacing_zyx) < (diameter + p.diameter_mm) / 2 + 2 for p in placed):
                continue
            fraction = lung[tuple(voxels.T)].mean()
            if (0.55 <= fraction <= 0.92) if juxtapleural else fraction == 1.0:
                break
            if fallback is None:
                fallback = centre
        else:
            if fallback is None:
                continue
            centre = fallback
        voxels = centre + offsets
        voxels = voxels[np.all((voxels >= 0) & (voxels < shape), axis=1)]
        texture = rng.normal(0.0, 8.0, size=len(voxels))
        hu[tuple(voxels.T)] = (rng.uniform(0, 50) + texture).astype(np.float32)
        placed.append(PhantomNodule(index_xyz=centre[::-1].copy(), diameter_mm=round(diameter, 4)))
    return placed


def nodule_voxels(rng: np.random.Generator, diameter_mm: float, spacing_zyx_mm: np.ndarray) -> np.ndarray:
    """(K, 3) integer z, y, x offsets of a nodule's voxels around its centre voxel (always in).

    Every axial section is the nodule's outline (:func:`lungforge.nodule_shape.sample_outline`,
    equivalent diameter `diameter_mm` at the centre), shrinking as an ellipsoid does towards
    the z semi-axis: the equivalent radius times a log-normal factor (Z_EXTENT_LOG_SD). So the
    central axial section is the largest and follows the LIDC contour statistics.
    """
    outline = sample_outline(rng, diameter_mm)
    radius = diameter_mm / 2
    z_radius = radius * float(np.exp(rng.normal(0.0, Z_EXTENT_LOG_SD)))
    offsets, mm = ball(radius * max(outline.reach(), z_radius / radius), spacing_zyx_mm)
    z, y, x = mm.T
    shrink = np.sqrt(np.clip(1.0 - (z / z_radius) ** 2, 0.0, None))
    inside = np.hypot(x, y) <= radius * outline.radius(np.arctan2(y, x)) * shrink
    inside[(offsets == 0).all(axis=1)] = True
    return offsets[inside]
