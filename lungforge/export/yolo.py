"""`--format yolo`: Ultralytics layout, `images/<split>/*.png`, `labels/<split>/*.txt`, `data.yaml`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lungforge.export.context import ExportContext
from lungforge.export.png import write_png
from lungforge.export.slices import ExportSlice

CLASS_ID = 0


def yolo_lines(boxes: np.ndarray, height: int, width: int) -> list[str]:
    """Boxes (K, 4) x0, y0, x1, y1 px → `class cx cy w h` lines, normalised to [0, 1]."""
    scale = np.array([width, height, width, height], dtype=np.float64)
    b = np.clip(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / scale, 0.0, 1.0)
    centre, extent = (b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]
    return [f"{CLASS_ID} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" for (cx, cy), (w, h) in zip(centre, extent)]


class YoloWriter:
    """One PNG and one label file per slice (empty for nodule-free slices: background images).

    `data.yaml` maps the store's train split to `train` and its test split to `val` and `test`;
    class 0 is "nodule". Ultralytics requires both `train` and `val`: an export with one split
    only (`--split train|test`, or any augment store, which has no test slices) points the missing
    key at the split it has, says so in a comment in `data.yaml` and in :attr:`notes`.
    """

    def __init__(self, root: Path, context: ExportContext):
        self.root = root
        self.context = context
        self.splits: set[str] = set()
        self.notes: list[str] = []

    def add(self, item: ExportSlice) -> None:
        if item.split not in self.splits:
            for folder in ("images", "labels"):
                (self.root / folder / item.split).mkdir(parents=True)
            self.splits.add(item.split)
        write_png(self.root / "images" / item.split / f"{item.name}.png", item.image)
        lines = yolo_lines(item.boxes, *item.shape_hw)
        (self.root / "labels" / item.split / f"{item.name}.txt").write_text("".join(line + "\n" for line in lines))

    def finish(self) -> list[str]:
        # No `path:` key: Ultralytics then resolves images/ beside data.yaml, so the folder can move.
        keys = {"train": "images/train" if "train" in self.splits else None, "val": None, "test": None}
        if "test" in self.splits:
            keys["val"] = keys["test"] = "images/test"
        if keys["val"] is None:
            keys["val"] = "images/train"
            self.notes.append(
                "data.yaml: no test slices exported, so val points at images/train (validation scores are "
                "training scores); point val at a held-out export to validate"
            )
        if keys["train"] is None:
            keys["train"] = "images/test"
            self.notes.append(
                "data.yaml: no train slices exported, so train points at images/test (for `yolo val`); do not train on this file"
            )
        lines = [f"# lungforge: {note}" for note in self.notes]
        lines += [f"{key}: {value}" for key, value in keys.items() if value is not None]
        lines += ["names:", f"  {CLASS_ID}: nodule"]
        (self.root / "data.yaml").write_text("\n".join(lines) + "\n")
        return ["images/", "labels/", "data.yaml"]
