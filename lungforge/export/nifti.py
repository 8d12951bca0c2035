"""`--format nifti`: one-slice NIfTI volumes (.nii.gz) with the in-plane spacing in mm."""

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


class NiftiWriter(MapsWriter):
    """`images/*.nii.gz`, `labels/*.nii.gz` (ids 0..5), `slices.csv`, `boxes.csv`.

    The store keeps no slice thickness, so z spacing is a nominal 1 mm.
    """

    suffix = ".nii.gz"

    def write(self, path: Path, array: np.ndarray, spacing_mm: tuple[float, float]) -> None:
        write_nifti(path, array, spacing_mm)
