"""Phantom nodules: LUNA16's counts and diameters, LIDC outlines and texture classes (ground glass,
part-solid, solid, calcified, :mod:`lungforge.phantom.textures`), partial-volume edges,
about a third juxtapleural and a share of the others on a vessel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungforge.core.nodule_shape import sample_outline
from lungforge.phantom.geometry import SEG_LEFT, SEG_RIGHT, PhantomGeometry, ball
from lungforge.phantom.luna16_statistics import sample_diameters_mm, sample_nodule_count
from lungforge.phantom.textures import Texture, edge_weight, interior_hu, sample_texture

Z_EXTENT_LOG_SD = 0.15
"""A nodule's z semi-axis is its equivalent radius times a log-normal factor (natural-log sd)."""
VESSEL_SHARE = 0.3
"""Share of the nodules not on the pleura that sit on a vessel."""
VESSEL_RADIUS_MM = (0.6, 1.3)
VESSEL_HU = (-120.0, 40.0)


@dataclass(frozen=True)
class PhantomNodule:
    """A rendered nodule: its centre voxel (x, y, z) in the anatomy array, diameter in mm and texture class."""

    index_xyz: np.ndarray
    diameter_mm: float
    texture: Texture = "solid"


def place_nodules(
    rng: np.random.Generator, hu: np.ndarray, seg: np.ndarray, geometry: PhantomGeometry, u: np.ndarray
) -> list[PhantomNodule]:
    """Nodules with LUNA16's count per scan and diameters, LIDC's texture classes, about a third juxtapleural.

    Count and diameters come from :mod:`lungforge.phantom.luna16_statistics` (a third of the scans
    have none); shapes from :func:`nodule_voxels`. Each centre is a voxel inside a lung (seg 3
    or 4), placed largest first. A juxtapleural nodule is centred a little inside the lung wall
    so that 8–45% of its voxels lie outside the lung; the others lie wholly inside. A nodule
    that cannot be placed as drawn falls back to any position inside the lung, or is dropped
    when none is found. Each takes a texture class in LIDC's proportions and its interior
    (:func:`~lungforge.phantom.textures.interior_hu`); its edge voxels are partial-volume
    blends with what they cover (:func:`~lungforge.phantom.textures.edge_weight`); VESSEL_SHARE
    of the nodules inside the lung get a vessel running from them (:func:`attach_vessel`).
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
        texture = sample_texture(rng)
        offsets, rho = nodule_voxels(rng, diameter, spacing_zyx)
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
        if not juxtapleural and rng.random() < VESSEL_SHARE:
            attach_vessel(rng, hu, lung, centre, diameter, spacing_zyx)
        voxels = centre + offsets
        inside = np.all((voxels >= 0) & (voxels < shape), axis=1)
        values = interior_hu(rng, texture, offsets, rho, spacing_zyx)[inside]
        weight = edge_weight(rho, diameter / 2, float(spacing_zyx[1:].min()))[inside]
        index = tuple(voxels[inside].T)
        hu[index] = (weight * values + (1.0 - weight) * hu[index]).astype(np.float32)
        placed.append(PhantomNodule(index_xyz=centre[::-1].copy(), diameter_mm=round(diameter, 4), texture=texture))
    return placed


def attach_vessel(
    rng: np.random.Generator, hu: np.ndarray, lung: np.ndarray, centre: np.ndarray, diameter_mm: float, spacing_zyx: np.ndarray
) -> None:
    """Paint a straight vessel (radius in VESSEL_RADIUS_MM, HU in VESSEL_HU) from the nodule's
    `centre` voxel (z, y, x) out to 1.5–3 nodule diameters, mostly in-plane, into lung voxels of
    `hu` (Z, Y, X) that are still lung parenchyma (< -700 HU), so no nodule or other vessel is overwritten."""
    direction = np.array([rng.normal(0.0, 0.3), *rng.normal(size=2)])
    direction /= np.linalg.norm(direction)
    length_mm = rng.uniform(1.5, 3.0) * diameter_mm
    radius_mm = rng.uniform(*VESSEL_RADIUS_MM)
    offsets, _ = ball(radius_mm, spacing_zyx)
    steps = np.arange(0.0, length_mm, 0.5 * float(spacing_zyx.min()))
    axis = np.unique(np.rint(centre + steps[:, None] * direction / spacing_zyx).astype(np.int64), axis=0)
    voxels = np.unique((axis[:, None, :] + offsets[None]).reshape(-1, 3), axis=0)
    voxels = voxels[np.all((voxels >= 0) & (voxels < np.array(hu.shape)), axis=1)]
    index = tuple(voxels.T)
    paint = lung[index] & (hu[index] < -700)
    hu[tuple(v[paint] for v in index)] = np.float32(rng.uniform(*VESSEL_HU))


def nodule_voxels(rng: np.random.Generator, diameter_mm: float, spacing_zyx_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 3) integer z, y, x offsets of a nodule's voxels around its centre voxel (always in),
    and (K,) their normalised radius (0 at the centre, 1 on the outline).

    Every axial section is the nodule's outline (:func:`lungforge.core.nodule_shape.sample_outline`,
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
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.hypot(x, y) / (radius * outline.radius(np.arctan2(y, x)) * shrink)
    centre = (offsets == 0).all(axis=1)
    rho[centre] = 0.0
    inside = rho <= 1.0
    return offsets[inside], rho[inside]
