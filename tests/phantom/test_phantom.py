"""The phantom dataset: LUNA16 layout and headers, determinism, anatomy, nodules and seg masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lungforge.core.errors import LungforgeError
from lungforge.luna16.scans import SEG_DIR, discover_scans, read_annotations, read_seg, read_volume, world_to_index
from lungforge.phantom.scans import UID_PREFIX, make_phantom

LUNA16_KEYS = [
    "ObjectType",
    "NDims",
    "BinaryData",
    "BinaryDataByteOrderMSB",
    "CompressedData",
    "TransformMatrix",
    "Offset",
    "CenterOfRotation",
    "AnatomicalOrientation",
    "ElementSpacing",
    "DimSize",
    "ElementType",
    "ElementDataFile",
]


def _header(mhd: Path) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in mhd.read_text().splitlines())


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _scans(root: Path):
    """(ref, volume, seg, annotations) per scan."""
    annotations = read_annotations(root)
    for ref in discover_scans(root):
        yield ref, read_volume(ref.mhd), read_seg(root, ref.uid), annotations.get(ref.uid, [])


def test_layout_and_headers_follow_luna16(phantom_dir: Path) -> None:
    scans = discover_scans(phantom_dir)
    assert len(scans) == 4 and all(s.uid.startswith(UID_PREFIX) and s.uid[len(UID_PREFIX) :].isdigit() for s in scans)
    assert (phantom_dir / "annotations.csv").read_text().splitlines()[0] == "seriesuid,coordX,coordY,coordZ,diameter_mm"
    directions = []
    for ref in scans:
        header = _header(ref.mhd)
        assert list(header) == LUNA16_KEYS
        assert header["ElementType"] == "MET_SHORT" and header["CompressedData"] == "False"
        assert header["BinaryDataByteOrderMSB"] == "False" and header["AnatomicalOrientation"] == "RAI"
        assert header["ElementDataFile"] == f"{ref.uid}.raw"
        nx, ny, nz = map(int, header["DimSize"].split())
        assert nx == ny == 96
        assert ref.mhd.with_suffix(".raw").stat().st_size == nx * ny * nz * 2
        sx, sy, _sz = map(float, header["ElementSpacing"].split())
        assert sx == sy and 300 <= sx * nx <= 420, "field of view stays ~350 mm"
        seg_header = _header(phantom_dir / SEG_DIR / f"{ref.uid}.mhd")
        assert list(seg_header) == LUNA16_KEYS[:5] + ["CompressedDataSize"] + LUNA16_KEYS[5:]
        assert seg_header["ElementType"] == "MET_UCHAR" and seg_header["CompressedData"] == "True"
        assert seg_header["ElementDataFile"] == f"{ref.uid}.zraw"
        assert int(seg_header["CompressedDataSize"]) == (phantom_dir / SEG_DIR / f"{ref.uid}.zraw").stat().st_size
        for key in ("TransformMatrix", "Offset", "ElementSpacing", "DimSize"):
            assert seg_header[key] == header[key]
        directions.append(header["TransformMatrix"])
    assert directions.count("1 0 0 0 1 0 0 0 1") == 3, "mostly identity, as LUNA16"


def test_spacing_and_slices_scale_with_size(tmp_path: Path) -> None:
    result = make_phantom(tmp_path / "big", scans=1, size=256, seed=5)
    volume = read_volume(discover_scans(tmp_path / "big")[0].mhd)
    nz, ny, nx = volume.hu.shape
    assert (ny, nx) == (256, 256) and result["scans"] == 1
    assert 1.2 <= volume.spacing_mm[0] <= 1.6 and 300 <= volume.spacing_mm[0] * nx <= 420
    assert 40 <= nz <= 90 and 150 <= volume.spacing_mm[2] * nz <= 300


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path: Path) -> None:
    first = make_phantom(tmp_path / "a", scans=2, size=48, seed=7)
    second = make_phantom(tmp_path / "b", scans=2, size=48, seed=7)
    make_phantom(tmp_path / "c", scans=2, size=48, seed=8)
    assert first["series"] == second["series"]
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    other = _files(tmp_path / "c")
    assert not set(other) & set(_files(tmp_path / "a")) - {"annotations.csv", "nodule_textures.csv", "phantom.json"}
    assert other["annotations.csv"] != _files(tmp_path / "a")["annotations.csv"]


def test_a_scan_does_not_depend_on_how_many_scans_are_made(tmp_path: Path) -> None:
    make_phantom(tmp_path / "two", scans=2, size=48, seed=1)
    make_phantom(tmp_path / "three", scans=3, size=48, seed=1)
    two, three = _files(tmp_path / "two"), _files(tmp_path / "three")
    assert all(three[name] == data for name, data in two.items() if name.startswith(("subset", SEG_DIR)))


def test_summary_and_subsets(tmp_path: Path) -> None:
    result = make_phantom(tmp_path / "p", scans=12, size=32, seed=0)
    assert result["subsets"] == list(range(10))
    assert [s.subset for s in discover_scans(tmp_path / "p")] == [0, 0, 1, 1] + list(range(2, 10))
    assert result["nodules"] == sum(len(v) for v in read_annotations(tmp_path / "p").values())
    assert len(result["flipped"]) >= 2 and set(result["flipped"]) <= set(result["series"])
    assert json.loads(json.dumps(result)) == result
    assert json.loads((tmp_path / "p" / "phantom.json").read_text()) == {"scans": 12, "size": 32, "seed": 0}


def test_every_dataset_has_a_flipped_scan(tmp_path: Path) -> None:
    result = make_phantom(tmp_path / "one", scans=1, size=32, seed=0)
    volume = read_volume(discover_scans(tmp_path / "one")[0].mhd)
    assert result["flipped"] == result["series"] and not np.allclose(volume.direction, np.eye(3))


def test_nodules_sit_at_the_annotated_world_positions_inside_the_lungs(phantom_dir: Path) -> None:
    scans = list(_scans(phantom_dir))
    assert sum(len(nodules) for *_, nodules in scans) > 0
    for ref, volume, seg, nodules in scans:
        assert len(nodules) <= 12
        if not nodules:
            continue
        centres = world_to_index(np.stack([n.center_mm for n in nodules]), volume.origin_mm, volume.spacing_mm, volume.direction)
        np.testing.assert_allclose(centres, np.rint(centres), atol=1e-4, err_msg="centres fall on voxel centres")
        x, y, z = np.rint(centres).astype(int).T
        assert np.all(volume.hu[z, y, x] > -300), ref.uid
        assert np.all(np.isin(seg[z, y, x], (3, 4))), ref.uid
        assert all(3.25 <= n.diameter_mm <= 32.3 for n in nodules)


def test_seg_values_and_anatomy(phantom_dir: Path) -> None:
    for _ref, volume, seg, _ in _scans(phantom_dir):
        assert set(np.unique(seg)) == {0, 3, 4, 5}
        hu = volume.hu
        lungs = np.isin(seg, (3, 4))
        assert np.median(hu[lungs]) < -700 and np.median(hu[seg == 5]) < -850
        in_field = (seg == 0) & (hu > -1500)
        assert np.mean((hu[in_field] > -150) & (hu[in_field] < 100)) > 0.3, "fat and soft tissue around the lungs"
        assert np.mean((hu > 300).any(axis=(1, 2))) > 0.8, "bone (ribs, spine, sternum) in most slices"
        assert set(np.unique(hu[:, 0, 0])) <= {-2000, -3024}, "out-of-field padding in the corners"
        # Slices in world order (inferior to superior): lungs cover most but not the top slices.
        order = np.argsort(volume.origin_mm[2] + volume.direction[2, 2] * volume.spacing_mm[2] * np.arange(hu.shape[0]))
        with_lung = lungs.any(axis=(1, 2))[order]
        assert 0.6 <= with_lung.mean() < 1.0 and not with_lung[-1]
        assert (seg == 5).any(axis=(1, 2))[order][-1], "trachea reaches the top slice"


def test_left_lung_is_at_larger_world_x(phantom_dir: Path) -> None:
    for ref, volume, seg, _ in _scans(phantom_dir):
        x_index = np.arange(seg.shape[2])
        x_world = volume.origin_mm[0] + volume.direction[0, 0] * volume.spacing_mm[0] * x_index
        left = x_world[np.nonzero(seg == 3)[2]].mean()
        right = x_world[np.nonzero(seg == 4)[2]].mean()
        assert left > right, ref.uid


def test_refuses_non_empty_out_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "p"
    make_phantom(out, scans=1, size=32, seed=0)
    with pytest.raises(LungforgeError, match=str(out)):
        make_phantom(out, scans=1, size=32, seed=1)
    make_phantom(out, scans=2, size=32, seed=1, overwrite=True)
    assert len(discover_scans(out)) == 2
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(LungforgeError, match="not a phantom dataset"):
        make_phantom(other, scans=1, size=32, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(LungforgeError, match="scans must be >= 1, got 0"):
        make_phantom(tmp_path / "a", scans=0)
    with pytest.raises(LungforgeError, match=r"size must be 32\.\.2048 pixels, got 16"):
        make_phantom(tmp_path / "a", size=16)


@pytest.mark.slow
def test_full_size_scan(tmp_path: Path) -> None:
    make_phantom(tmp_path / "p", scans=2, size=512, seed=0)
    for _ref, volume, seg, nodules in _scans(tmp_path / "p"):
        nz, ny, nx = volume.hu.shape
        assert (ny, nx) == (512, 512) and 64 <= nz <= 120
        assert 0.6 <= volume.spacing_mm[0] <= 0.8 and 1.25 <= volume.spacing_mm[2] <= 2.5
        assert set(np.unique(seg)) == {0, 3, 4, 5} and nodules


def test_a_larger_phantom_follows_luna16s_statistics(tmp_path: Path) -> None:
    from collections import Counter

    make_phantom(tmp_path / "p", scans=60, size=32, seed=5)
    annotations = read_annotations(tmp_path / "p")
    refs = discover_scans(tmp_path / "p")
    per_scan = np.array([len(annotations.get(ref.uid, [])) for ref in refs])
    diameters = np.array([a.diameter_mm for rows in annotations.values() for a in rows])
    assert 0.15 <= (per_scan == 0).mean() <= 0.5, "about a third of the scans have no nodule"
    with_any = per_scan[per_scan > 0]
    counts = Counter(with_any.tolist())
    assert 0.25 <= counts[1] / with_any.size <= 0.75 and max(counts) >= 3 and max(counts) <= 12
    assert 5.0 <= np.median(diameters) <= 8.0 and 0.6 <= (diameters < 10).mean() <= 0.9
    z_origins = [read_volume(ref.mhd).origin_mm[2] for ref in refs]
    assert min(z_origins) < 0 < max(z_origins)
