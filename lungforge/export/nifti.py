"""NIfTI writing: `--format nifti` (one-slice volumes with the in-plane spacing in mm), and whole
scans placed in the world for the volume formats (:func:`write_volume_nifti`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungforge.export.maps import MapsWriter

SLICE_THICKNESS_MM = 1.0


def write_nifti(path: Path, array: np.ndarray, spacing_mm: tuple[float, float], thickness_mm: float = SLICE_THICKNESS_MM) -> None:
    """(H, W) uint8 → a (1, H, W) NIfTI volume; spacing (row, col) mm, i.e. NIfTI (x=col, y=row, z)."""
    import SimpleITK as sitk

    volume = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.uint8)[None])
    volume.SetSpacing((float(spacing_mm[1]), float(spacing_mm[0]), float(thickness_mm)))
    sitk.WriteImage(volume, str(path), useCompression=True)


def write_volume_nifti(path: Path, array: np.ndarray, spacing_mm: float, origin_mm: np.ndarray, direction: np.ndarray) -> None:
    """(Z, Y, X) array → a NIfTI volume (.nii.gz, the array's dtype) placed in the world.

    `origin_mm` (3,) world x, y, z of voxel (0, 0, 0) and `direction` (3, 3) (columns: the world
    directions of the x, y, z index axes) are in LPS, the world of ITK, DICOM and MetaImage (and
    of LUNA16's annotations.csv). NIfTI's affine is RAS: SimpleITK's writer negates the x and y
    rows of the LPS affine in both qform and sform, so nibabel's `img.affine` with its first two
    rows negated maps a voxel index (i, j, k) = (x, y, z) back to the LPS world point.
    """
    import SimpleITK as sitk

    volume = sitk.GetImageFromArray(np.ascontiguousarray(array))
    volume.SetSpacing((float(spacing_mm),) * 3)
    volume.SetOrigin(tuple(float(v) for v in origin_mm))
    volume.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=np.float64).reshape(9)))
    sitk.WriteImage(volume, str(path), useCompression=True)


class NiftiWriter(MapsWriter):
    """`images/*.nii.gz`, `labels/*.nii.gz` (ids 0..5), `slices.csv`, `boxes.csv`.

    The store keeps no slice thickness, so z spacing is a nominal 1 mm.
    """

    suffix = ".nii.gz"

    def write(self, path: Path, array: np.ndarray, spacing_mm: tuple[float, float]) -> None:
        write_nifti(path, array, spacing_mm)
