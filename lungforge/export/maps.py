"""Image and label-map files one per slice, plus `slices.csv` and `boxes.csv` (the png and nifti formats)."""

from __future__ import annotations

import csv
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from lungforge.export.context import ExportContext
from lungforge.export.slices import ExportSlice

SLICE_COLUMNS = ("name", "image", "label", "index", "split", "fold", "series_uid", "z", "spacing_row_mm", "spacing_col_mm", "nodules")
BOX_COLUMNS = ("name", "index", "split", "x0", "y0", "x1", "y1", "diameter_mm", "mask_px")


class MapsWriter(ABC):
    """`images/<name><suffix>` (windowed CT, uint8) and `labels/<name><suffix>` (label ids 0..5).

    Subclasses give the file `suffix` and `write(path, array, spacing_mm)`. Boxes are x0, y0, x1,
    y1 in pixels of the exported size (x = column; x1, y1 exclusive edges).
    """

    suffix = ""

    def __init__(self, root: Path, context: ExportContext):
        self.root = root
        self.context = context
        for folder in ("images", "labels"):
            (root / folder).mkdir()
        self.slice_rows: list[tuple] = []
        self.box_rows: list[tuple] = []
        self.notes: list[str] = []

    @abstractmethod
    def write(self, path: Path, array: np.ndarray, spacing_mm: tuple[float, float]) -> None:
        """Write one (H, W) uint8 array to `path`."""

    def add(self, item: ExportSlice) -> None:
        image, label = f"images/{item.name}{self.suffix}", f"labels/{item.name}{self.suffix}"
        self.write(self.root / image, item.image, item.spacing_mm)
        self.write(self.root / label, item.label, item.spacing_mm)
        self.slice_rows.append(
            (
                item.name,
                image,
                label,
                item.index,
                item.split,
                item.fold,
                item.series_uid,
                item.z,
                f"{item.spacing_mm[0]:.6g}",
                f"{item.spacing_mm[1]:.6g}",
                len(item.boxes),
            )
        )
        for box, diameter, pixels in zip(item.boxes, item.diameters_mm, item.nodule_pixels()):
            self.box_rows.append((item.name, item.index, item.split, *(f"{v:.3f}" for v in box), f"{diameter:.3f}", int(pixels)))

    def finish(self) -> list[str]:
        for name, columns, rows in (("slices.csv", SLICE_COLUMNS, self.slice_rows), ("boxes.csv", BOX_COLUMNS, self.box_rows)):
            with open(self.root / name, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(columns)
                writer.writerows(rows)
        return ["images/", "labels/", "slices.csv", "boxes.csv"]
