"""Input checks of `prepare`: HU plausibility, seg geometry, shared data files, duplicate rows."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from lungforge.luna16 import metaimage
from lungforge.luna16 import scans as luna16
from lungforge.preparation.input_checks import geometry_difference, hu_problem, shared_data


def test_not_hu_is_named(phantom_factory):
    hu = luna16.read_volume(luna16.discover_scans(phantom_factory(scans=2, size=64, seed=0))[0].mhd).hu
    as_unsigned = np.clip(hu.view(np.uint16), 0, 32767).astype(np.int16)  # MET_USHORT, clipped to int16
    assert "above 4000 HU" in hu_problem(as_unsigned)
    assert "above 4000 HU" in hu_problem(hu.byteswap())  # BinaryDataByteOrderMSB flipped


def test_real_luna16_value_conventions_pass_the_hu_check(phantom_factory):
    hu = luna16.read_volume(luna16.discover_scans(phantom_factory(scans=2, size=64, seed=0))[0].mhd).hu.copy()
    assert hu_problem(hu) is None
    padded = hu.copy()
    padded[:, :12] = -3024  # a wide band outside the field of view
    padded[:, -4:, :4] = 3071  # metal at the top of the 12-bit range
    assert hu_problem(padded) is None
    assert hu_problem(np.clip(hu.astype(np.int32) - 24, -32768, 32767).astype(np.int16)) is None  # air at -1024
    unshifted = np.where(hu >= -1500, hu + 1024, hu).astype(np.int16)  # rescale intercept not applied
    assert "no air" in hu_problem(unshifted)
    assert "no air" in hu_problem(np.zeros_like(hu))


def test_geometry_tolerances():
    scan = metaimage.Geometry((4, 8, 8), np.array([-100.0, -120.0, -300.0]), np.array([0.7, 0.7, 2.5]), np.eye(3))

    def seg(**change) -> metaimage.Geometry:
        return metaimage.Geometry(**{**scan.__dict__, **change})

    assert geometry_difference(scan, seg(origin_mm=scan.origin_mm + 0.05)) is None  # < 0.1 voxel
    assert geometry_difference(scan, seg(spacing_mm=scan.spacing_mm * (1 + 5e-4))) is None
    assert "seg origin" in geometry_difference(scan, seg(origin_mm=scan.origin_mm + 0.2))
    assert "seg spacing" in geometry_difference(scan, seg(spacing_mm=scan.spacing_mm * 1.01))
    assert "mirrored" in geometry_difference(scan, seg(direction=np.diag([-1.0, 1.0, 1.0])))
    assert "seg shape" in geometry_difference(scan, seg(shape_zyx=(5, 8, 8)))


def test_shared_data_finds_links_and_copies_not_look_alikes(tmp_path: Path):
    rng = np.random.default_rng(0)
    data = {name: rng.integers(0, 255, 300_000, dtype=np.uint8).tobytes() for name in "abc"}
    for name, payload in data.items():
        (tmp_path / f"{name}.raw").write_bytes(payload)
    near = bytearray(data["a"])
    near[-1] ^= 1  # same size, same probes, one byte different at the end
    (tmp_path / "near.raw").write_bytes(bytes(near))
    os.symlink(tmp_path / "a.raw", tmp_path / "link.raw")
    os.link(tmp_path / "b.raw", tmp_path / "hard.raw")
    shutil.copy(tmp_path / "c.raw", tmp_path / "copy.raw")
    files = {name: tmp_path / f"{name}.raw" for name in ("a", "b", "c", "near", "link", "hard", "copy")}
    files["gone"] = tmp_path / "gone.raw"
    assert shared_data(files) == {
        "a": ["link"],
        "link": ["a"],
        "b": ["hard"],
        "hard": ["b"],
        "c": ["copy"],
        "copy": ["c"],
    }


def test_two_readings_of_one_nodule_are_not_duplicates(tmp_path):
    uid = "1.2.3"
    (tmp_path / luna16.ANNOTATIONS_FILE).write_text(
        f"seriesuid,coordX,coordY,coordZ,diameter_mm\n{uid},1,2,3,6\n{uid},1,2,3,6.5\n{uid},1,2,3,6.0\n"
    )
    found, duplicates = luna16.load_annotations(tmp_path)
    assert [a.diameter_mm for a in found[uid]] == [6.0, 6.5]
    assert duplicates == [{"line": 4, "same_as": 2, "series": uid}]
