"""`--format coco` read back with pycocotools' COCO API: one file per split, counts, boxes, RLE masks, provenance."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lungforge.core.labels import NODULE
from lungforge.data.resize import resize_slices
from lungforge.export import ExportOptions, export_store


def _load(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_coco_matches_store(stores, reference, tmp_path: Path) -> None:
    report = export_store(stores["real"], tmp_path / "coco", ExportOptions(format="coco"))
    assert sorted(p.name for p in (tmp_path / "coco" / "annotations").iterdir()) == ["instances_test.json", "instances_train.json"]
    assert not (tmp_path / "coco" / "annotations.json").exists()
    annotations = 0
    for split in ("train", "test"):
        coco = _load(tmp_path / "coco" / "annotations" / f"instances_{split}.json")
        rows = reference.rows(split)
        assert sorted(coco.getImgIds()) == rows.tolist() and report.images_by_split[split] == rows.size
        annotations += len(coco.getAnnIds())
        assert sorted(a["id"] for a in coco.dataset["annotations"]) == list(range(1, len(coco.getAnnIds()) + 1))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["nodule"]
        assert coco.dataset["info"]["lungforge"]["fingerprint"] == reference.store.fingerprint()
        for row in rows.tolist():
            info = coco.loadImgs(row)[0]
            assert info["file_name"] == f"{row:06d}.png" and info["split"] == split
            pixels = np.asarray(Image.open(tmp_path / "coco" / "images" / split / info["file_name"]))
            np.testing.assert_array_equal(pixels, reference.image[row])
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
    assert annotations == reference.table["slice"].size == report.nodules


@pytest.mark.parametrize("size", [None, 8])
def test_coco_ground_truth_scores_perfectly_against_itself(stores, tmp_path: Path, size: int | None) -> None:
    """Boxes and masks score AP 1.0 against themselves, also at 8 px where 8 of 20 nodules keep one pixel only."""
    export_store(stores["real"], tmp_path / "coco", ExportOptions(format="coco", nodule_only=True, size=size))
    for split in ("train", "test"):
        coco = _load(tmp_path / "coco" / "annotations" / f"instances_{split}.json")
        detections = [{k: v for k, v in ann.items() if k != "id"} | {"score": 1.0} for ann in coco.loadAnns(coco.getAnnIds())]
        with contextlib.redirect_stdout(io.StringIO()):
            for kind in ("bbox", "segm"):
                evaluator = COCOeval(coco, coco.loadRes(detections), kind)
                evaluator.evaluate()
                evaluator.accumulate()
                evaluator.summarize()
                assert evaluator.stats[1] == pytest.approx(1.0), (split, kind)


def test_coco_resized_split_and_nodule_only(stores, reference, tmp_path: Path) -> None:
    report = export_store(stores["real"], tmp_path / "c32", ExportOptions(format="coco", split="train", size=32, nodule_only=True))
    assert [p.name for p in (tmp_path / "c32" / "annotations").iterdir()] == ["instances_train.json"]
    coco = _load(tmp_path / "c32" / "annotations" / "instances_train.json")
    rows = reference.rows("train", nodule_only=True)
    assert sorted(coco.getImgIds()) == rows.tolist() and report.images_by_split == {"train": rows.size, "test": 0}
    images, labels = resize_slices(reference.image[rows], reference.label[rows], 32)
    for j, row in enumerate(rows.tolist()):
        info = coco.loadImgs(row)[0]
        assert (info["height"], info["width"]) == (32, 32)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c32" / "images" / "train" / info["file_name"])), images[j])
        np.testing.assert_allclose(info["spacing_mm"], reference.spacing[row] * 2, rtol=1e-6)
        for ann, (x0, y0, x1, y1) in zip(coco.loadAnns(coco.getAnnIds(imgIds=row)), reference.resized_boxes(row, 32)):
            np.testing.assert_allclose(ann["bbox"], [x0, y0, x1 - x0, y1 - y0], atol=1e-4)
            mask = coco.annToMask(ann).astype(bool)
            assert mask.shape == (32, 32) and not (mask & (labels[j] != NODULE)).any()


@pytest.mark.parametrize("size", [24, 8])
def test_coco_boxes_are_their_masks_boxes_after_resizing(stores, tmp_path: Path, size: int) -> None:
    """64 px slices exported at 24 and 8 px: every nodule has mask pixels, and its box is the
    tight box of its own RLE mask (IoU 1)."""
    export_store(stores["real"], tmp_path / "c", ExportOptions(format="coco", size=size, nodule_only=True))
    checked = 0
    for split in ("train", "test"):
        coco = _load(tmp_path / "c" / "annotations" / f"instances_{split}.json")
        for ann in coco.loadAnns(coco.getAnnIds()):
            mask = coco.annToMask(ann).astype(bool)
            assert ann["area"] == mask.sum() > 0
            ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            np.testing.assert_array_equal(ann["bbox"], [xs[0], ys[0], xs[-1] + 1 - xs[0], ys[-1] + 1 - ys[0]])
            checked += 1
    assert checked == 20
