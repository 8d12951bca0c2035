"""`--format monai-detection`: a MONAI detection data list (boxes in world mm) and the NIfTI scans it names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lungforge.export.context import ExportContext
from lungforge.export.nifti import write_volume_nifti
from lungforge.export.volumes import ExportVolume

BOX_MODE = "cccwhd"
"""MONAI's box mode of the data list: centre x, y, z and size w, h, d."""
DATA_LIST = "dataset.json"
NODULE_CLASS = 0
"""Box class of a nodule (MONAI's LUNA16 recipe has one foreground class, 0)."""


class MonaiDetectionWriter:
    """`images/<case>.nii.gz` (int16 HU, placed in the world) and `dataset.json`, the data list of
    MONAI's LUNA16 detection recipe (MONAI tutorials `detection/`, MONAI 1.x):

        {"training": [{"image": "images/<case>.nii.gz", "box": [[cx, cy, cz, w, h, d], ...],
                       "label": [0, ...], ...}], "validation": [...]}

    Train-split scans are "training", test-split scans "validation". `box` is in world mm, LPS
    (as LUNA16's annotations.csv; mode :data:`BOX_MODE`), one per annotated nodule
    (:meth:`ExportVolume.world_boxes`), so the recipe's transforms read it with
    `gt_box_mode="cccwhd"` and `AffineBoxToImageCoordinated(..., affine_lps_to_ras=True)`.
    `image` is relative to the export folder: pass the folder as `base_dir` to
    `monai.data.load_decathlon_datalist`. Each item also has `seriesuid`, `fold`, `spacing_mm` and
    `diameter_mm` (per box).
    """

    def __init__(self, root: Path, context: ExportContext):
        self.root = root
        self.context = context
        (root / "images").mkdir()
        self.lists: dict[str, list[dict[str, Any]]] = {"training": [], "validation": []}
        self.notes: list[str] = []

    def add(self, item: ExportVolume) -> None:
        image = f"images/{item.case}.nii.gz"
        write_volume_nifti(self.root / image, item.image, item.spacing_mm, item.origin_mm, item.direction)
        boxes = item.world_boxes()
        self.lists["training" if item.split == "train" else "validation"].append(
            {
                "image": image,
                "box": [[round(float(v), 4) for v in box] for box in boxes],
                "label": [NODULE_CLASS] * len(boxes),
                "seriesuid": item.series_uid,
                "fold": item.fold,
                "spacing_mm": item.spacing_mm,
                "diameter_mm": [round(float(d), 4) for d in item.diameters_mm],
            }
        )

    def finish(self) -> list[str]:
        document = {**self.lists, "box_mode": BOX_MODE, "lungforge": self.context.provenance}
        (self.root / DATA_LIST).write_text(json.dumps(document, indent=1))
        return ["images/", DATA_LIST]
