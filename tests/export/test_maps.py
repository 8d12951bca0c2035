"""`--format nifti` and `--format png`: image and label files plus slices.csv and boxes.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from lungforge.export import ExportOptions, export_store


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("fmt", ["nifti", "png"])
def test_maps_match_store(fmt: str, stores, reference, tmp_path: Path) -> None:
    root = tmp_path / fmt
    export_store(stores["real"], root, ExportOptions(format=fmt, split="test"))
    rows = reference.rows("test")
    slices = _csv(root / "slices.csv")
    assert [int(s["index"]) for s in slices] == rows.tolist()
    for entry in slices:
        row = int(entry["index"])
        if fmt == "nifti":
            image = sitk.ReadImage(str(root / entry["image"]))
            label = sitk.GetArrayFromImage(sitk.ReadImage(str(root / entry["label"])))[0]
            pixels = sitk.GetArrayFromImage(image)[0]
            np.testing.assert_allclose(image.GetSpacing()[:2], reference.spacing[row][::-1], rtol=1e-6)
        else:
            pixels, label = np.asarray(Image.open(root / entry["image"])), np.asarray(Image.open(root / entry["label"]))
        np.testing.assert_array_equal(pixels, reference.image[row])
        np.testing.assert_array_equal(label, reference.label[row])
        assert int(entry["nodules"]) == len(reference.boxes(row))
    boxes = _csv(root / "boxes.csv")
    in_test = np.isin(reference.table["slice"], rows)
    assert [int(b["index"]) for b in boxes] == reference.table["slice"][in_test].tolist()
    got = np.array([[float(b[k]) for k in ("x0", "y0", "x1", "y1")] for b in boxes])
    np.testing.assert_allclose(got, reference.table["bbox"][in_test], atol=1e-3)
    np.testing.assert_allclose([float(b["diameter_mm"]) for b in boxes], reference.table["diameter_mm"][in_test], atol=1e-3)
    assert all(int(b["mask_px"]) > 0 for b in boxes)
