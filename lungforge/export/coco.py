"""`--format coco`: PNG images and one COCO file per split, `annotations/instances_<split>.json`
(boxes and RLE nodule masks, category "nodule"), laid out as COCO's own train2017/val2017."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.export.context import ExportContext
from lungforge.export.png import write_png
from lungforge.export.slices import ExportSlice

CATEGORY = {"id": 1, "name": "nodule", "supercategory": "lesion"}


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool → COCO compressed RLE {"size": [H, W], "counts": str} (pycocotools)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


class CocoWriter:
    """`images/<split>/<name>.png` and `annotations/instances_<split>.json` for each exported split.

    `file_name` is relative to the split's image folder (`images/train/`), as in COCO, so
    `torchvision.datasets.CocoDetection("images/train", "annotations/instances_train.json")`
    reads it. Image ids are store row indices; annotation ids count from 1 in each file
    (COCOeval reads id 0 as "unmatched"). bbox is [x, y, w, h] in pixels of the exported size;
    `segmentation` is the nodule's mask as RLE, `area` its pixel count. Each image also carries
    its split, fold, series uid, slice z and pixel spacing; `info` holds the store's provenance.
    """

    def __init__(self, root: Path, context: ExportContext):
        self.root = root
        self.context = context
        self.images: dict[str, list[dict[str, Any]]] = {}
        self.annotations: dict[str, list[dict[str, Any]]] = {}
        self.notes: list[str] = []

    def add(self, item: ExportSlice) -> None:
        folder = self.root / "images" / item.split
        if item.split not in self.images:
            folder.mkdir(parents=True)
            self.images[item.split], self.annotations[item.split] = [], []
        write_png(folder / f"{item.name}.png", item.image)
        h, w = item.shape_hw
        self.images[item.split].append(
            {
                "id": item.index,
                "file_name": f"{item.name}.png",
                "height": h,
                "width": w,
                "split": item.split,
                "fold": item.fold,
                "series_uid": item.series_uid,
                "z": item.z,
                "spacing_mm": list(item.spacing_mm),
            }
        )
        annotations = self.annotations[item.split]
        for k, (box, diameter) in enumerate(zip(item.boxes, item.diameters_mm)):
            mask = item.nodule_mask(k)
            x0, y0, x1, y1 = (float(v) for v in box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": item.index,
                    "category_id": CATEGORY["id"],
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": int(mask.sum()),
                    "segmentation": encode_mask(mask),
                    "iscrowd": 0,
                    "diameter_mm": float(diameter),
                }
            )

    def finish(self) -> list[str]:
        now = datetime.now(timezone.utc)
        folder = self.root / "annotations"
        folder.mkdir()
        for split, images in self.images.items():
            document = {
                "info": {
                    "description": f"lungforge export of {self.context.provenance['store']}, {split} split",
                    "version": self.context.provenance["exported_by"],
                    "year": now.year,
                    "contributor": "lungforge",
                    "date_created": now.isoformat(timespec="seconds"),
                    "lungforge": self.context.provenance,
                },
                "licenses": [],
                "images": images,
                "annotations": self.annotations[split],
                "categories": [CATEGORY],
            }
            (folder / f"instances_{split}.json").write_text(json.dumps(document))
        return ["images/", "annotations/"]
