"""`--format coco` read back with pycocotools' COCO API: counts, boxes, RLE masks, provenance."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lungforge.data.resize import resize_slices
from lungforge.export import ExportOptions, export_store
from lungforge.labels import NODULE


def _load(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_coco_matches_store(stores, reference, tmp_path: Path) -> None:
    report = export_store(stores["real"], tmp_path / "coco", ExportOptions(format="coco"))
    coco = _load(tmp_path / "coco" / "annotations.json")
    rows = reference.rows()
    assert sorted(coco.getImgIds()) == rows.tolist() and report.images == rows.size
    assert len(coco.getAnnIds()) == reference.table["slice"].size == report.nodules
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["nodule"]
    assert coco.dataset["info"]["lungforge"]["fingerprint"] == reference.store.fingerprint()
    for row in rows.tolist():
        info = coco.loadImgs(row)[0]
        pixels = np.asarray(Image.open(tmp_path / "coco" / "images" / info["file_name"]))
        np.testing.assert_array_equal(pixels, reference.image[row])
        assert info["split"] == ("train", "test")[reference.split[row]]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=row))
        expected = reference.boxes(row)
        assert len(anns) == len(expected)
        for ann, (x0, y0, x1, y1) in zip(anns, expected):
            np.testing.assert_allclose(ann["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-4)
            mask = coco.annToMask(ann).astype(bool)
            window = np.zeros_like(mask)
            window[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
            np.testing.assert_array_equal(mask, window & (reference.label[row] == NODULE))
            assert ann["area"] == mask.sum() > 0


def test_coco_ground_truth_scores_perfectly_against_itself(stores, tmp_path: Path) -> None:
    export_store(stores["real"], tmp_path / "coco", ExportOptions(format="coco", split="test", nodule_only=True))
    coco = _load(tmp_path / "coco" / "annotations.json")
    detections = [{**ann, "score": 1.0} for ann in coco.loadAnns(coco.getAnnIds())]
    with contextlib.redirect_stdout(io.StringIO()):
        for kind in ("bbox", "segm"):
            evaluator = COCOeval(coco, coco.loadRes([{k: v for k, v in d.items() if k != "id"} for d in detections]), kind)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
            assert evaluator.stats[1] == pytest.approx(1.0)


def test_coco_resized_split_and_nodule_only(stores, reference, tmp_path: Path) -> None:
    report = export_store(stores["real"], tmp_path / "c32", ExportOptions(format="coco", split="train", size=32, nodule_only=True))
    coco = _load(tmp_path / "c32" / "annotations.json")
    rows = reference.rows("train", nodule_only=True)
    assert sorted(coco.getImgIds()) == rows.tolist() and report.images_by_split == {"train": rows.size, "test": 0}
    images, labels = resize_slices(reference.image[rows], reference.label[rows], 32)
    for j, row in enumerate(rows.tolist()):
        info = coco.loadImgs(row)[0]
        assert (info["height"], info["width"]) == (32, 32)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c32" / "images" / info["file_name"])), images[j])
        np.testing.assert_allclose(info["spacing_mm"], reference.spacing[row] * 2, rtol=1e-6)
        for ann, (x0, y0, x1, y1) in zip(coco.loadAnns(coco.getAnnIds(imgIds=row)), reference.boxes(row) / 2):
            np.testing.assert_allclose(ann["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-4)
            mask = coco.annToMask(ann).astype(bool)
            assert mask.shape == (32, 32) and not (mask & (labels[j] != NODULE)).any()
