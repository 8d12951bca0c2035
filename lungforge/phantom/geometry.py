"""Where a phantom scan sits in the world, and the shapes its anatomy is drawn with."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungforge.phantom.luna16_statistics import sample_z_origin_mm

SEG_LEFT, SEG_RIGHT, SEG_TRACHEA = 3, 4, 5
"""LUNA16 seg-mask values of the left lung, right lung and trachea."""


@dataclass(frozen=True)
class PhantomGeometry:
    """Where a phantom scan sits in the world.

    shape_zyx: voxels; spacing_mm, origin_mm: (3,) x, y, z of the anatomy array (identity
    direction, index 0 = right/anterior/inferior corner); flip: (3,) bool per x, y, z axis of the
    stored file.
    """

    shape_zyx: tuple[int, int, int]
    spacing_mm: np.ndarray
    origin_mm: np.ndarray
    flip: tuple[bool, bool, bool]

    @property
    def direction(self) -> np.ndarray:
        """(3, 3) direction of the stored file (diagonal ±1)."""
        return np.diag(np.where(self.flip, -1.0, 1.0))

    @property
    def stored_origin_mm(self) -> np.ndarray:
        """(3,) world x, y, z of stored voxel 0: the far corner along flipped axes."""
        extent = self.spacing_mm * (np.asarray(self.shape_zyx[::-1]) - 1)
        return np.round(self.origin_mm + np.where(self.flip, extent, 0.0), 6)

    def to_stored(self, array: np.ndarray) -> np.ndarray:
        """Reorder a (Z, Y, X) anatomy array into the stored file's index order."""
        axes = tuple(2 - axis for axis in range(3) if self.flip[axis])
        return np.flip(array, axis=axes) if axes else array

    def stored_index(self, index_xyz: np.ndarray) -> np.ndarray:
        """(N, 3) x, y, z indices of the anatomy array -> indices of the stored file."""
        size = np.asarray(self.shape_zyx[::-1]) - 1
        return np.where(self.flip, size - index_xyz, index_xyz)


def sample_geometry(rng: np.random.Generator, size: int, flip: tuple[bool, bool, bool]) -> PhantomGeometry:
    """LUNA16-like spacing (0.6–0.8 mm in-plane and 1.25–2.5 mm at 512 px) scaled to `size`."""
    spacing_xy = round(rng.uniform(0.6, 0.8) * 512 / size, 6)
    spacing_z512 = float(rng.choice([1.25, 2.0, 2.5], p=[0.2, 0.3, 0.5]))
    slices512 = int(np.clip(round(rng.uniform(200.0, 280.0) / spacing_z512), 64, 120))
    slices = max(8, round(slices512 * np.sqrt(size / 512)))
    spacing_z = round(slices512 * spacing_z512 / slices, 6)
    fov_mm = size * spacing_xy
    centre = np.array([rng.uniform(-15, 15), rng.uniform(-20, 20)])
    origin_xy = np.round(centre - fov_mm / 2, 3)
    origin = np.array([origin_xy[0], origin_xy[1], round(sample_z_origin_mm(rng), 3)])
    return PhantomGeometry(
        shape_zyx=(slices, size, size),
        spacing_mm=np.array([spacing_xy, spacing_xy, spacing_z]),
        origin_mm=origin,
        flip=flip,
    )


def ellipse(dx: np.ndarray, dy: np.ndarray, ax: np.ndarray | float, ay: np.ndarray | float) -> np.ndarray:
    """Boolean inside-ellipse test; semi-axes in mm (0 gives an empty ellipse)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (dx / ax) ** 2 + (dy / ay) ** 2 <= 1.0


def ball(radius_mm: float, spacing_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer (K, 3) z, y, x offsets of voxels within radius_mm, and their (K, 3) offsets in mm."""
    reach = np.floor(radius_mm / spacing_zyx).astype(int)
    grid = np.stack(np.meshgrid(*(np.arange(-r, r + 1) for r in reach), indexing="ij"), axis=-1).reshape(-1, 3)
    mm = grid * spacing_zyx
    keep = (mm**2).sum(axis=1) <= radius_mm**2
    return grid[keep], mm[keep]
