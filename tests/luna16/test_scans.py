"""LUNA16 reading: discovery, headers, volumes, seg masks, annotations and world/index geometry."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungforge.core.errors import InputError, ScanError
from lungforge.luna16 import scans as luna16
from lungforge.luna16.metaimage import read_header
from lungforge.luna16.scans import (
    discover_scans,
    index_to_world,
    read_annotations,
    read_seg,
    read_volume,
    world_to_index,
)


@pytest.fixture()
def dataset(phantom_factory, tmp_path: Path) -> Path:
    """A private copy of a 2-scan phantom that a test may corrupt."""
    return Path(shutil.copytree(phantom_factory(scans=2, size=48, seed=3), tmp_path / "luna"))


def _write_image(path: Path, array: np.ndarray, *, compress: bool = False, direction: np.ndarray | None = None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.8, 2.5))
    image.SetOrigin((-170.0, -200.0, -350.0))
    if direction is not None:
        image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(image, str(path), useCompression=compress)
    return image


def _rotation(angle: float) -> np.ndarray:
    """A rotation about z followed by a flip of the x axis: non-identity, det -1."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ np.diag([-1.0, 1.0, 1.0])


def test_discover_scans_sorted_by_subset_then_uid(phantom_dir: Path) -> None:
    scans = discover_scans(phantom_dir)
    assert [s.subset for s in scans] == [0, 1, 2, 3]
    assert all(s.mhd == phantom_dir / f"subset{s.subset}" / f"{s.uid}.mhd" for s in scans)
    assert scans == sorted(scans, key=lambda s: (s.subset, s.uid))


def test_discover_scans_ignores_other_folders_and_rejects_empty_roots(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        discover_scans(tmp_path / "missing")
    (tmp_path / "seg-lungs-LUNA16").mkdir()
    (tmp_path / "seg-lungs-LUNA16" / "x.mhd").write_text("")
    (tmp_path / "subset0").mkdir()
    with pytest.raises(InputError, match="no scans"):
        discover_scans(tmp_path)


def test_read_volume_matches_simpleitk(phantom_dir: Path) -> None:
    for ref in discover_scans(phantom_dir):
        volume = read_volume(ref.mhd)
        image = sitk.ReadImage(str(ref.mhd))
        assert volume.hu.dtype == np.int16 and volume.hu.flags.c_contiguous
        np.testing.assert_array_equal(volume.hu, sitk.GetArrayFromImage(image))
        np.testing.assert_allclose(volume.origin_mm, image.GetOrigin())
        np.testing.assert_allclose(volume.spacing_mm, image.GetSpacing())
        np.testing.assert_allclose(volume.direction, np.reshape(image.GetDirection(), (3, 3)))
        shape, spacing = read_header(ref.mhd)
        assert shape == volume.hu.shape
        np.testing.assert_array_equal(spacing, volume.spacing_mm)


@pytest.mark.parametrize("layout", ["msb", "header_size", "header_size_end", "local"])
def test_raw_layouts_read_as_simpleitk_reads_them(tmp_path: Path, layout: str) -> None:
    array = np.random.default_rng(0).integers(-1024, 3000, size=(3, 5, 4)).astype(np.int16)
    _write_image(tmp_path / "scan.mhd", array)
    header = (tmp_path / "scan.mhd").read_text()
    raw = (tmp_path / "scan.raw").read_bytes()
    if layout == "msb":
        header = header.replace("ByteOrderMSB = False", "ByteOrderMSB = True")
        raw = array.astype(">i2").tobytes()
    elif layout == "header_size":
        header = header.replace("ElementDataFile", "HeaderSize = 16\nElementDataFile")
        raw = bytes(range(16)) + raw
    elif layout == "header_size_end":
        header = header.replace("ElementDataFile", "HeaderSize = -1\nElementDataFile")
        raw = b"some preamble" + raw
    (tmp_path / "scan.raw").write_bytes(raw)
    if layout == "local":
        text = header.replace("ElementDataFile = scan.raw", "ElementDataFile = LOCAL")
        (tmp_path / "scan.mhd").write_bytes(text.encode() + raw)
    else:
        (tmp_path / "scan.mhd").write_text(header)
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "scan.mhd")))
    np.testing.assert_array_equal(expected, array)
    np.testing.assert_array_equal(read_volume(tmp_path / "scan.mhd").hu, expected)


def test_read_header_needs_no_data_file(dataset: Path) -> None:
    ref = discover_scans(dataset)[0]
    shape = read_volume(ref.mhd).hu.shape
    ref.mhd.with_suffix(".raw").unlink()
    assert read_header(ref.mhd)[0] == shape


def test_truncated_raw_is_a_scan_error_naming_the_file(dataset: Path) -> None:
    ref = discover_scans(dataset)[0]
    raw = ref.mhd.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:-2])
    with pytest.raises(ScanError, match="truncated") as caught:
        read_volume(ref.mhd)
    assert str(ref.mhd) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_raw_is_a_scan_error(dataset: Path) -> None:
    ref = discover_scans(dataset)[1]
    ref.mhd.with_suffix(".raw").unlink()
    with pytest.raises(ScanError, match=f"{ref.uid}.raw is missing"):
        read_volume(ref.mhd)


@pytest.mark.parametrize(
    "content",
    [
        bytes(range(256)) * 4,
        b"hello world\nno header here\n",
        b"NDims = 3\nDimSize = 4 4\nElementType = MET_SHORT\nElementDataFile = x.raw\n",
    ],
    ids=["binary", "text", "two-dims"],
)
def test_garbage_header_is_a_scan_error(tmp_path: Path, content: bytes) -> None:
    mhd = tmp_path / "bad.mhd"
    mhd.write_bytes(content)
    (tmp_path / "x.raw").write_bytes(b"\0" * 64)
    with pytest.raises(ScanError, match="bad.mhd"):
        read_volume(mhd)
    with pytest.raises(ScanError, match="bad.mhd"):
        read_header(mhd)


def test_float_values_are_rounded_and_clipped_to_int16(tmp_path: Path) -> None:
    array = np.array([-1024.4, 0.6, 40000.0, -40000.0], dtype=np.float32).reshape(1, 2, 2)
    _write_image(tmp_path / "f.mhd", array)
    hu = read_volume(tmp_path / "f.mhd").hu
    assert hu.dtype == np.int16
    np.testing.assert_array_equal(hu.ravel(), [-1024, 1, 32767, -32768])


def test_read_seg_reads_compressed_masks_and_returns_none_when_absent(dataset: Path) -> None:
    ref = discover_scans(dataset)[0]
    seg = read_seg(dataset, ref.uid)
    assert seg is not None and seg.dtype == np.uint8
    assert seg.shape == read_volume(ref.mhd).hu.shape
    np.testing.assert_array_equal(seg, sitk.GetArrayFromImage(sitk.ReadImage(str(dataset / luna16.SEG_DIR / f"{ref.uid}.mhd"))))
    assert read_seg(dataset, "1.2.3") is None


@pytest.mark.parametrize("keep_size_field", [True, False])
def test_truncated_zraw_is_a_scan_error(dataset: Path, keep_size_field: bool) -> None:
    uid = discover_scans(dataset)[0].uid
    mhd = dataset / luna16.SEG_DIR / f"{uid}.mhd"
    zraw = mhd.with_suffix(".zraw")
    zraw.write_bytes(zraw.read_bytes()[: zraw.stat().st_size // 2])
    if not keep_size_field:
        # SimpleITK alone would return zeros for this file instead of failing.
        mhd.write_text("".join(line for line in mhd.read_text().splitlines(True) if not line.startswith("CompressedDataSize")))
    with pytest.raises(ScanError, match=uid):
        read_seg(dataset, uid)


def test_compressed_images_written_by_simpleitk_round_trip(tmp_path: Path) -> None:
    array = (np.arange(3 * 4 * 5) % 7).astype(np.uint8).reshape(3, 4, 5)
    (tmp_path / luna16.SEG_DIR).mkdir()
    _write_image(tmp_path / luna16.SEG_DIR / "u.mhd", array, compress=True)
    np.testing.assert_array_equal(read_seg(tmp_path, "u"), array)


def test_read_annotations(tmp_path: Path) -> None:
    (tmp_path / "annotations.csv").write_text(
        "seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,-10.5,20,-300.25,5.5\n1.2.3,1,2,3,30\n4.5,0,0,0,3\n\n"
    )
    found = read_annotations(tmp_path)
    assert sorted(found) == ["1.2.3", "4.5"]
    first = found["1.2.3"][0]
    np.testing.assert_array_equal(first.center_mm, [-10.5, 20.0, -300.25])
    assert first.diameter_mm == 5.5 and len(found["1.2.3"]) == 2


def test_read_annotations_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="annotations.csv: annotations file not found"):
        read_annotations(tmp_path)
    path = tmp_path / "annotations.csv"
    path.write_text("uid,x,y,z,d\n")
    with pytest.raises(InputError, match="header must be"):
        read_annotations(tmp_path)
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2,0,0,0,4\n1.2,0,zero,0,4\n")
    with pytest.raises(InputError, match="line 3"):
        read_annotations(tmp_path)
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2,0,0,0\n")
    with pytest.raises(InputError, match="line 2 has 4 fields"):
        read_annotations(tmp_path)
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2,0,0,0,-4\n")
    with pytest.raises(InputError, match="line 2"):
        read_annotations(tmp_path)
    path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n")
    assert read_annotations(tmp_path) == {}


def test_world_index_round_trip_matches_simpleitk(tmp_path: Path) -> None:
    direction = _rotation(0.4)
    image = _write_image(tmp_path / "r.mhd", np.zeros((4, 5, 6), dtype=np.int16), direction=direction)
    origin, spacing = np.array(image.GetOrigin()), np.array(image.GetSpacing())
    rng = np.random.default_rng(0)
    index = rng.uniform(-2, 8, size=(20, 3))
    world = index_to_world(index, origin, spacing, direction)
    expected = np.array([image.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in index])
    np.testing.assert_allclose(world, expected, atol=1e-9)
    np.testing.assert_allclose(world_to_index(world, origin, spacing, direction), index, atol=1e-9)
    # The geometry SimpleITK reads back from the file is the same one.
    volume = read_volume(tmp_path / "r.mhd")
    np.testing.assert_allclose(volume.direction, direction, atol=1e-12)
    np.testing.assert_allclose(index_to_world(index, volume.origin_mm, volume.spacing_mm, volume.direction), expected, atol=1e-9)
    back = np.array([image.TransformPhysicalPointToContinuousIndex(p.tolist()) for p in world])
    np.testing.assert_allclose(back, index, atol=1e-9)


def test_world_to_index_accepts_a_single_point() -> None:
    direction = np.diag([1.0, -1.0, -1.0])
    point = index_to_world(np.array([1.0, 2.0, 3.0]), np.zeros(3), np.array([0.5, 0.5, 2.0]), direction)
    np.testing.assert_allclose(point, [0.5, -1.0, -6.0])
    np.testing.assert_allclose(world_to_index(point, np.zeros(3), np.array([0.5, 0.5, 2.0]), direction), [1.0, 2.0, 3.0])
