"""One display orientation for every prepared slice, whatever a file's direction matrix.

LUNA16 files store voxels in their own order: the direction matrix says which world axis each
index axis runs along. Stores hold every volume in the orientation ITK calls LPS, the
radiological display of an axial slice: the column index runs towards the patient's left (the
left lung on the image's right), the row index towards posterior (anterior up), the slice index
towards superior. This is what LUNA16 viewers show and what SimpleITK's `DICOMOrient(image,
"LPS")` gives (MONAI's and TorchIO's RAS canonical form has the same axes, x and y reversed).

Only axis order and signs change (a transpose and flips, never a resampling): a direction that is
not close to a signed permutation (an oblique acquisition) keeps its small rotation in the new
direction matrix, so world ↔ index maps stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lungforge.core.errors import ScanError


@dataclass(frozen=True)
class Reorientation:
    """How a (Z, Y, X) array in a file's voxel order becomes a (Z, Y, X) array in display order.

    source_axis: for each display numpy axis (z, y, x), the file's numpy axis it comes from;
    flip: per display numpy axis, whether it is reversed.
    """

    source_axis: tuple[int, int, int]
    flip: tuple[bool, bool, bool]

    @classmethod
    def from_direction(cls, direction: np.ndarray, name: str = "image") -> Reorientation:
        """The reorientation of a file with this (3, 3) direction (columns: world directions of
        the x, y, z index axes). ScanError naming `name` when two index axes run along one world axis."""
        d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
        if abs(np.linalg.det(d)) < 1e-6:
            raise ScanError(f"{name}: direction {d.ravel().tolist()} is singular (no world coordinates)")
        index_axis = np.argmax(np.abs(d), axis=1)  # per world axis x, y, z
        if sorted(index_axis.tolist()) != [0, 1, 2]:
            raise ScanError(
                f"{name}: direction {np.round(d, 4).ravel().tolist()} is not close to any axis order "
                "(two index axes run along one world axis)"
            )
        sign = d[np.arange(3), index_axis] < 0
        # World axis w is display numpy axis 2 - w; index axis k is file numpy axis 2 - k.
        source = tuple(int(2 - index_axis[2 - n]) for n in range(3))
        flip = tuple(bool(sign[2 - n]) for n in range(3))
        return cls(source_axis=source, flip=flip)  # type: ignore[arg-type]

    @property
    def is_identity(self) -> bool:
        """True when the file already is in display order."""
        return self.source_axis == (0, 1, 2) and not any(self.flip)

    def shape(self, shape_zyx: tuple[int, ...]) -> tuple[int, int, int]:
        """Display (Z, Y, X) shape of a file-order shape."""
        return tuple(int(shape_zyx[a]) for a in self.source_axis)  # type: ignore[return-value]

    def apply(self, array: np.ndarray) -> np.ndarray:
        """A file-order (Z, Y, X) array in display order (a view: transpose and flips)."""
        out = np.transpose(array, self.source_axis)
        axes = tuple(n for n in range(3) if self.flip[n])
        return np.flip(out, axis=axes) if axes else out

    def geometry(
        self, shape_zyx: tuple[int, ...], origin_mm: np.ndarray, spacing_mm: np.ndarray, direction: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(origin, spacing, direction) of the display-order array, from the file's (x, y, z order).

        The new voxel 0 is the file's voxel at the far end of every flipped axis; new index axis
        w is the file's index axis feeding it, its direction column negated when flipped.
        """
        d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
        spacing = np.asarray(spacing_mm, dtype=np.float64)
        size_xyz = np.asarray(shape_zyx[::-1], dtype=np.float64)
        corner = np.zeros(3)
        new_spacing, new_direction = np.zeros(3), np.zeros((3, 3))
        for w in range(3):
            k = 2 - self.source_axis[2 - w]  # file index axis of display index axis w
            flipped = self.flip[2 - w]
            if flipped:
                corner[k] = size_xyz[k] - 1
            new_spacing[w] = spacing[k]
            new_direction[:, w] = -d[:, k] if flipped else d[:, k]
        origin = np.asarray(origin_mm, dtype=np.float64) + d @ (spacing * corner)
        return origin, new_spacing, new_direction
