"""`--format yolo`: data.yaml read with PyYAML, label lines back to boxes, empty files for background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from lungforge.export import ExportOptions, export_store
from lungforge.export.yolo import yolo_lines


def _boxes(text: str, size: int) -> np.ndarray:
    values = np.array([line.split() for line in text.splitlines()], dtype=np.float64).reshape(-1, 5)
    assert (values[:, 0] == 0).all()
    cx, cy, w, h = values[:, 1:].T * size
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def test_yolo_matches_store(stores, reference, tmp_path: Path) -> None:
    root = tmp_path / "yolo"
    export_store(stores["real"], root, ExportOptions(format="yolo", size=32))
    data = yaml.safe_load((root / "data.yaml").read_text())
    assert data["names"] == {0: "nodule"}
    assert (data["train"], data["val"], data["test"]) == ("images/train", "images/test", "images/test")
    for split, sid in (("train", 0), ("test", 1)):
        rows = np.flatnonzero(reference.split == sid)
        images = sorted((root / data["train" if split == "train" else "val"]).glob("*.png"))
        assert [int(p.stem) for p in images] == rows.tolist()
        for path, row in zip(images, rows.tolist()):
            assert Image.open(path).size == (32, 32)
            label_file = root / "labels" / split / f"{path.stem}.txt"
            boxes = _boxes(label_file.read_text(), 32)
            np.testing.assert_allclose(boxes, reference.resized_boxes(row, 32), atol=1e-4)
            assert (label_file.stat().st_size == 0) == (not reference.has_nodule[row])


@pytest.mark.parametrize(("split", "missing"), [("train", "val"), ("test", "train")])
def test_yolo_one_split_still_has_train_and_val(stores, tmp_path: Path, split: str, missing: str) -> None:
    report = export_store(stores["real"], tmp_path / "y", ExportOptions(format="yolo", split=split))
    text = (tmp_path / "y" / "data.yaml").read_text()
    data = yaml.safe_load(text)
    assert data["train"] == data["val"] == f"images/{split}"
    assert ("test" in data) == (split == "test")
    assert len(report.notes) == 1 and f"{missing} points at images/{split}" in report.notes[0] and report.notes[0] in text
    other = {"train": "test", "test": "train"}[split]
    assert not (tmp_path / "y" / "images" / other).exists()


def test_yolo_lines_clip_to_the_image() -> None:
    assert yolo_lines(np.array([[-2.0, 0.0, 10.0, 70.0]]), 64, 64) == ["0 0.078125 0.500000 0.156250 1.000000"]
