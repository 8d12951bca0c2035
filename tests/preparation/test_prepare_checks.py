"""`prepare` refuses inputs that disagree and says so; every slice lands in one display orientation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from lungforge.cli.main import app
from lungforge.core.labels import LEFT_LUNG, RIGHT_LUNG
from lungforge.luna16 import scans as luna16
from lungforge.preparation.masks import window_to_uint8
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import open_store

OPTIONS = PrepareOptions(test_patients=2, seed=0)


@pytest.fixture(scope="module")
def luna(phantom_factory) -> Path:
    """7 scans at 64 px: scan 1 is stored z-flipped, scan 6 x/y-flipped (see lungforge/phantom/scans.py),
    each with nodules at seed 2."""
    return phantom_factory(scans=7, size=64, seed=2)


@pytest.fixture(scope="module")
def store(luna, tmp_path_factory):
    out = tmp_path_factory.mktemp("checks") / "real.zarr"
    prepare(luna, out, OPTIONS)
    return open_store(out)


def _copy(luna: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(luna, tmp_path / "luna16"))


def _prepare_json(root: Path, tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / "real.zarr"
    result = CliRunner().invoke(app, ["prepare", str(root), "--out", str(out), "--test-patients", "2", "--json", *extra])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.stdout), result.stderr


def _set_field(mhd: Path, key: str, value: str) -> None:
    lines = mhd.read_text().splitlines()
    assert any(line.split("=")[0].strip() == key for line in lines)
    mhd.write_text("\n".join(f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in lines) + "\n")


def _field(mhd: Path, key: str) -> list[float]:
    line = next(line for line in mhd.read_text().splitlines() if line.split("=")[0].strip() == key)
    return [float(v) for v in line.split("=", 1)[1].split()]


def _only_skipped(report: dict, uid: str) -> dict:
    (skipped,) = report["skipped"]
    assert uid in skipped["file"]
    assert uid not in open_store(report["store"]).series_uids
    return skipped


# -- orientation -----------------------------------------------------------------------------------
def test_left_lung_is_on_the_image_right_in_every_slice(store, luna):
    flipped = [
        ref.uid for ref in luna16.discover_scans(luna) if not np.array_equal(sitk.ReadImage(str(ref.mhd)).GetDirection(), np.eye(3).ravel())
    ]
    assert len(flipped) == 2 and set(flipped) <= set(store.series_uids)
    labels = store.label[...]
    cols = np.arange(labels.shape[2])
    left, right = labels == LEFT_LUNG, labels == RIGHT_LUNG
    both = left.any(axis=(1, 2)) & right.any(axis=(1, 2))
    assert both.sum() > 0.8 * len(store)
    left_col = (left * cols).sum(axis=(1, 2))[both] / left.sum(axis=(1, 2))[both]
    right_col = (right * cols).sum(axis=(1, 2))[both] / right.sum(axis=(1, 2))[both]
    assert np.all(left_col > right_col)
    assert store.attrs["reoriented"] == 2
    assert store.attrs["orientation"].startswith("LPS")


def test_slices_equal_itks_lps_reorientation_of_each_file(store, luna):
    refs = {ref.uid: ref for ref in luna16.discover_scans(luna)}
    series, z = store.meta("series"), store.meta("z")
    for s, uid in enumerate(store.series_uids):
        reference = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(refs[uid].mhd)), "LPS"))
        rows = np.flatnonzero(series == s)
        np.testing.assert_array_equal(store.image[int(rows[0]) : int(rows[-1]) + 1], window_to_uint8(reference[z[rows]]), err_msg=uid)


def test_nodule_boxes_follow_the_flip(store, luna):
    refs = {ref.uid: ref for ref in luna16.discover_scans(luna)}
    annotations = luna16.read_annotations(luna)
    table, series, z = store.nodules(), store.meta("series"), store.meta("z")
    checked = 0
    for s, uid in enumerate(store.series_uids):
        if np.array_equal(sitk.ReadImage(str(refs[uid].mhd)).GetDirection(), np.eye(3).ravel()):
            continue  # only the flipped scans
        image = sitk.DICOMOrient(sitk.ReadImage(str(refs[uid].mhd)), "LPS")
        for ann in annotations.get(uid, []):
            x, y, k = image.TransformPhysicalPointToContinuousIndex(ann.center_mm.tolist())
            rows = np.flatnonzero((series[table["slice"]] == s) & (z[table["slice"]] == round(k)))
            assert any(x0 <= x + 0.5 <= x1 and y0 <= y + 0.5 <= y1 for x0, y0, x1, y1 in table["bbox"][rows]), (uid, x, y)
            checked += 1
    assert checked >= 3


# -- values that are not HU ------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [("ElementType", "MET_USHORT"), ("BinaryDataByteOrderMSB", "True")])
def test_values_that_are_not_hu_skip_the_scan(luna, tmp_path, key, value):
    root = _copy(luna, tmp_path)
    victim = luna16.discover_scans(root)[2]
    _set_field(victim.mhd, key, value)
    code, report, _ = _prepare_json(root, tmp_path)
    assert code == 3
    assert "not HU" in _only_skipped(report, victim.uid)["reason"]


# -- seg masks laid out otherwise ------------------------------------------------------------------
@pytest.mark.parametrize(
    "key, change, reason",
    [
        ("Offset", lambda v: [v[0] + 20, v[1], v[2]], "origin"),
        ("ElementSpacing", lambda v: [1.5 * x for x in v], "spacing"),
        ("TransformMatrix", lambda v: [-v[0], *v[1:]], "direction"),
    ],
)
def test_seg_mask_with_other_geometry_skips_the_scan(luna, tmp_path, key, change, reason):
    root = _copy(luna, tmp_path)
    victim = luna16.discover_scans(root)[2]
    seg = root / luna16.SEG_DIR / f"{victim.uid}.mhd"
    _set_field(seg, key, " ".join(f"{v:g}" for v in change(_field(seg, key))))
    code, report, _ = _prepare_json(root, tmp_path)
    assert code == 3
    skipped = _only_skipped(report, victim.uid)
    assert luna16.SEG_DIR in skipped["file"] and f"seg {reason}" in skipped["reason"]


def test_seg_header_rounding_is_tolerated(luna, tmp_path):
    root = _copy(luna, tmp_path)
    victim = luna16.discover_scans(root)[2]
    seg = root / luna16.SEG_DIR / f"{victim.uid}.mhd"
    _set_field(seg, "Offset", " ".join(f"{v + 1e-4:.6f}" for v in _field(seg, "Offset")))
    code, report, _ = _prepare_json(root, tmp_path)
    assert code == 0 and report["skipped"] == []


# -- one data file for two series ------------------------------------------------------------------
@pytest.mark.parametrize("how", ["symlink", "copy"])
def test_two_series_with_one_data_file_are_refused_and_named(luna, tmp_path, how):
    root = _copy(luna, tmp_path)
    refs = luna16.discover_scans(root)
    first, victim = refs[0], refs[3]
    victim.mhd.write_text(first.mhd.read_text().replace(f"{first.uid}.raw", f"{victim.uid}.raw"))
    raw = victim.mhd.with_suffix(".raw")
    raw.unlink()
    if how == "symlink":
        raw.symlink_to(first.mhd.with_suffix(".raw"))
    else:
        shutil.copy(first.mhd.with_suffix(".raw"), raw)
    seg = root / luna16.SEG_DIR
    (seg / f"{victim.uid}.mhd").write_text((seg / f"{first.uid}.mhd").read_text().replace(first.uid, victim.uid))
    shutil.copy(seg / f"{first.uid}.zraw", seg / f"{victim.uid}.zraw")
    code, report, _ = _prepare_json(root, tmp_path)
    assert code == 3
    reasons = {entry["file"]: entry["reason"] for entry in report["skipped"]}
    assert set(reasons) == {str(first.mhd), str(victim.mhd)}
    assert victim.uid in reasons[str(first.mhd)] and first.uid in reasons[str(victim.mhd)]
    assert "same voxel data" in reasons[str(first.mhd)]
    stored = open_store(report["store"]).series_uids
    assert first.uid not in stored and victim.uid not in stored and len(stored) == len(refs) - 2


# -- annotations.csv -------------------------------------------------------------------------------
def test_every_annotation_row_twice_is_dropped_and_reported(luna, store, tmp_path):
    root = _copy(luna, tmp_path)
    csv = root / luna16.ANNOTATIONS_FILE
    header, *rows = csv.read_text().splitlines()
    csv.write_text("\n".join([header, *rows, *rows]) + "\n")
    code, report, stderr = _prepare_json(root, tmp_path)
    assert code == 0
    assert report["nodules"] == store.nodules()["slice"].size
    duplicates = report["duplicate_annotations"]
    assert [d["line"] for d in duplicates] == list(range(len(rows) + 2, 2 * len(rows) + 2))
    assert [d["same_as"] for d in duplicates] == list(range(2, len(rows) + 2))
    assert f"{len(rows)} exact duplicate rows of annotations.csv dropped" in stderr
    assert open_store(report["store"]).attrs["duplicate_annotations"] == duplicates


# -- subset folders --------------------------------------------------------------------------------
def test_scan_in_a_folder_that_is_no_subset_is_named(luna, tmp_path):
    root = _copy(luna, tmp_path)
    victim = luna16.discover_scans(root)[2]
    (root / "subset10").mkdir()
    for file in victim.mhd.parent.glob(f"{victim.uid}.*"):
        file.rename(root / "subset10" / file.name)
    code, report, stderr = _prepare_json(root, tmp_path)
    assert code == 3
    assert "subset10/, which is not a LUNA16 subset folder" in _only_skipped(report, victim.uid)["reason"]
    assert report["absent_series"]["series"] == 0  # its annotations are not "not downloaded"
    assert "subset10" in stderr


def test_subset_folder_names_are_case_insensitive(luna, store, tmp_path):
    root = _copy(luna, tmp_path)
    (root / "subset4").rename(root / "Subset4")
    code, report, _ = _prepare_json(root, tmp_path)
    assert code == 0 and report["skipped"] == [] and report["absent_series"]["series"] == 0
    other = open_store(report["store"])
    assert other.series_uids == store.series_uids
    np.testing.assert_array_equal(other.meta("fold"), store.meta("fold"))
