"""`--format png`: 8-bit grey PNGs of the slices and of the label maps (pixel value = label id)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungforge.export.maps import MapsWriter


def write_png(path: Path, array: np.ndarray) -> None:
    """(H, W) uint8 → an 8-bit greyscale PNG."""
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, format="PNG")


class PngWriter(MapsWriter):
    """`images/*.png`, `labels/*.png` (ids 0..5, look black in a viewer), `slices.csv`, `boxes.csv`."""

    suffix = ".png"

    def write(self, path: Path, array: np.ndarray, spacing_mm: tuple[float, float]) -> None:
        write_png(path, array)
