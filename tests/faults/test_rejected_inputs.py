"""Inputs `prepare` must reject, not store (issue 13, items 6-9): one line each, nothing mixed in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungforge.core.errors import InputError, ScanError
from lungforge.core.labels import SegValues
from lungforge.luna16 import scans as luna16
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import open_store


def _set_field(mhd: Path, key: str, value: str) -> None:
    """Rewrite one `key = value` line of a MetaImage header."""
    lines = [f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in mhd.read_text().splitlines()]
    mhd.write_text("\n".join(lines) + "\n")


def _scans(root: Path) -> list[luna16.ScanRef]:
    return luna16.discover_scans(root)


# -- item 6: ElementDataFile outside the scan's folder ---------------------------------------------
@pytest.mark.parametrize("where", ["parent", "absolute", "other_scan"])
def test_data_file_must_be_the_scans_own_file_beside_its_header(luna: Path, where: str) -> None:
    victim, other = _scans(luna)[:2]
    raw = victim.mhd.with_suffix(".raw")
    if where == "parent":
        shutil.copy(raw, luna.parent / "x.bin")
        name = "../../x.bin"
    elif where == "absolute":
        name = str(shutil.copy(raw, luna.parent / "elsewhere.raw"))
    else:
        name = shutil.copy(other.mhd.with_suffix(".raw"), victim.mhd.parent / f"{other.uid}.raw").name
    _set_field(victim.mhd, "ElementDataFile", name)
    with pytest.raises(ScanError, match="ElementDataFile .* must name this scan's own file"):
        luna16.read_volume(victim.mhd)


def test_foreign_data_file_skips_that_scan_alone(luna: Path, cli) -> None:
    victim, other = _scans(luna)[:2]
    _set_field(victim.mhd, "ElementDataFile", f"../subset{other.subset}/{other.uid}.raw")
    result = cli("prepare", luna, "--out", luna.parent / "real.zarr", "--test-patients", "1", "--json")
    assert result.code == 3, result.stderr
    skipped = json.loads(result.stdout)["skipped"]
    assert [s["file"] for s in skipped] == [str(victim.mhd)] and "ElementDataFile" in skipped[0]["reason"]
    assert open_store(luna.parent / "real.zarr").series_uids.count(other.uid) == 1


# -- item 7: data file larger than the header implies ---------------------------------------------
def test_data_file_larger_than_its_header_is_rejected(luna: Path) -> None:
    victim = _scans(luna)[0]
    _set_field(victim.mhd, "ElementType", "MET_UCHAR")  # the data are int16: twice the bytes
    with pytest.raises(ScanError, match="larger than its header implies"):
        luna16.read_volume(victim.mhd)


@pytest.mark.parametrize("declared", [True, False])
def test_compressed_data_with_stray_bytes_is_rejected(luna: Path, declared: bool) -> None:
    uid = _scans(luna)[0].uid
    mhd = luna / luna16.SEG_DIR / f"{uid}.mhd"
    if not declared:
        mhd.write_text("".join(line + "\n" for line in mhd.read_text().splitlines() if not line.startswith("CompressedDataSize")))
    with open(mhd.with_suffix(".zraw"), "ab") as fh:
        fh.write(b"\0" * 16)
    with pytest.raises(ScanError, match="larger than the header says|stray bytes"):
        luna16.read_seg(luna, uid)


# -- item 8: the store's slice size is the majority's ---------------------------------------------
def test_one_odd_header_skips_that_scan_alone(luna: Path, tmp_path: Path) -> None:
    refs = _scans(luna)
    x, y, z = refs[0].mhd.read_text().split("DimSize = ")[1].splitlines()[0].split()
    _set_field(refs[0].mhd, "DimSize", f"{int(x) // 2} {int(y) * 2} {z}")  # same bytes, other in-plane size
    report = prepare(luna, tmp_path / "real.zarr", PrepareOptions(test_patients=1))
    assert [s["file"] for s in report.skipped] == [str(refs[0].mhd)]
    assert "differs from the store's 48×48" in report.skipped[0]["reason"]
    assert report.scans_done == len(refs) - 1
    assert open_store(tmp_path / "real.zarr").shape_hw == (48, 48)


# -- item 9: duplicate seg values, a series in two subsets, NaN voxels, absurd annotations ---------
def test_duplicate_seg_values_are_a_usage_error(luna: Path, cli) -> None:
    with pytest.raises(ValueError, match="distinct, got left=3 and right=3"):
        SegValues.parse("left=3,right=3")
    result = cli("prepare", luna, "--out", luna.parent / "real.zarr", "--seg-values", "left=3,right=3")
    assert result.code == 2 and "distinct" in result.stderr
    assert not (luna.parent / "real.zarr").exists()


def test_series_in_two_subsets_is_refused(luna: Path, cli) -> None:
    ref = _scans(luna)[0]
    (luna / "subset7").mkdir()
    for file in ref.mhd.parent.glob(f"{ref.uid}.*"):
        shutil.copy(file, luna / "subset7")
    with pytest.raises(InputError, match=f"series {ref.uid} is in both subset{ref.subset} and subset7"):
        luna16.discover_scans(luna)
    result = cli("prepare", luna, "--out", luna.parent / "real.zarr")
    assert result.code == 1 and len(result.error_lines) == 1 and "subset7" in result.stderr
    assert not (luna.parent / "real.zarr").exists()


def test_nan_voxels_skip_the_scan(luna: Path, tmp_path: Path) -> None:
    victim = _scans(luna)[1]
    image = sitk.Cast(sitk.ReadImage(str(victim.mhd)), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(image)
    array[3, 10, 10] = np.nan
    nan_image = sitk.GetImageFromArray(array)
    nan_image.CopyInformation(image)
    sitk.WriteImage(nan_image, str(victim.mhd))
    with pytest.raises(ScanError, match="1 of .* voxels are NaN or infinite"):
        luna16.read_volume(victim.mhd)
    report = prepare(luna, tmp_path / "real.zarr", PrepareOptions(test_patients=1))
    assert [s["file"] for s in report.skipped] == [str(victim.mhd)]


def test_absurd_annotation_diameter_is_refused(luna: Path, cli) -> None:
    uid = _scans(luna)[0].uid
    with open(luna / "annotations.csv", "a") as fh:
        fh.write(f"{uid},0.0,0.0,0.0,5000.0\n")
    with pytest.raises(InputError, match="diameter_mm 5000, expected at most 100 mm"):
        luna16.read_annotations(luna)
    result = cli("prepare", luna, "--out", luna.parent / "real.zarr")
    assert result.code == 1 and len(result.error_lines) == 1 and "annotations.csv" in result.stderr
