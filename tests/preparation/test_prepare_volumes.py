"""`prepare --volumes`: resume after an interrupted scan, bad scans skipped and named (exit 3),
options that do not apply refused, the default spacing recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lungforge.cli.main import app
from lungforge.luna16 import scans as luna16
from lungforge.preparation.volume_pipeline import VolumeOptions, prepare_volumes
from lungforge.store import VolumeWriter, open_volume_store
from lungforge.store.volume_verify import verify_volume_store

OPTIONS = VolumeOptions(spacing_mm=3.0, test_patients=1)


@pytest.fixture(scope="module")
def luna(phantom_factory) -> Path:
    return phantom_factory(scans=3, size=64, seed=0)


@pytest.fixture(scope="module")
def whole(luna, tmp_path_factory) -> Path:
    """The store of an uninterrupted run."""
    out = tmp_path_factory.mktemp("whole") / "volumes.zarr"
    prepare_volumes(luna, out, OPTIONS)
    return out


def test_resume_after_an_interrupted_scan_equals_an_uninterrupted_run(luna, whole, tmp_path, monkeypatch):
    out = tmp_path / "volumes.zarr"
    save = VolumeWriter.save_record
    saved: list[str] = []

    def killed_before_the_second_record(self: VolumeWriter, name: str, record: dict) -> None:
        if saved:
            raise KeyboardInterrupt  # scan 1's volumes are written, its record is not
        saved.append(name)
        save(self, name, record)

    monkeypatch.setattr(VolumeWriter, "save_record", killed_before_the_second_record)
    with pytest.raises(KeyboardInterrupt):
        prepare_volumes(luna, out, OPTIONS)
    monkeypatch.undo()
    assert (out / "volumes" / "1" / "image").is_dir() and sorted(p.name for p in (out / "parts").iterdir()) == ["scan-000000.npz"]
    with pytest.raises(Exception, match="incomplete"):
        open_volume_store(out)
    report = prepare_volumes(luna, out, OPTIONS, resume=True)
    assert report.scans_done == 3 and not (out / "parts").exists()
    resumed, uninterrupted = open_volume_store(out), open_volume_store(whole)
    assert resumed.content_digests() == uninterrupted.content_digests()
    assert resumed.fingerprint() == uninterrupted.fingerprint()
    assert verify_volume_store(out).ok


def test_resume_refuses_other_options(luna, whole, tmp_path):
    out = Path(shutil.copytree(whole, tmp_path / "volumes.zarr"))
    with pytest.raises(Exception, match="was prepared with other options"):
        prepare_volumes(luna, out, VolumeOptions(spacing_mm=2.0, test_patients=1), resume=True)


def test_bad_scans_are_skipped_named_and_exit_3(phantom_factory, tmp_path):
    root = Path(shutil.copytree(phantom_factory(scans=4, size=64, seed=0), tmp_path / "luna16"))
    refs = luna16.discover_scans(root)
    truncated, no_seg, outside = refs[0], refs[1], refs[3]
    raw = truncated.mhd.with_suffix(".raw")
    raw.write_bytes(raw.read_bytes()[:1000])
    for file in (root / luna16.SEG_DIR).glob(no_seg.uid + ".*"):
        file.unlink()
    with open(root / "annotations.csv", "a") as fh:
        fh.write(f"{outside.uid},5000.0,5000.0,5000.0,10.0\n")
    out = tmp_path / "volumes.zarr"
    args = ["prepare", str(root), "--out", str(out), "--volumes", "--spacing-mm", "3", "--test-patients", "1", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    reasons = {Path(s["file"]).stem: s["reason"] for s in report["skipped"]}
    assert "truncated" in reasons[truncated.uid]
    assert "no seg mask" in reasons[no_seg.uid]
    assert "outside the volume" in reasons["annotations"] and outside.uid in reasons["annotations"]
    store = open_volume_store(out)
    assert store.uids == [refs[2].uid] and report["scans_done"] == 1
    assert len(store.attrs["skipped"]) == 3


def test_options_that_do_not_apply_are_usage_errors(luna, tmp_path):
    out = str(tmp_path / "x.zarr")
    result = CliRunner().invoke(app, ["prepare", str(luna), "--out", out, "--spacing-mm", "2"])
    assert result.exit_code == 2 and "--volumes only" in result.output
    result = CliRunner().invoke(app, ["prepare", str(luna), "--out", out, "--volumes", "--nodule-slices", "all"])
    assert result.exit_code == 2 and "does not apply to --volumes" in result.output
    result = CliRunner().invoke(app, ["prepare", str(luna), "--out", out, "--volumes", "--spacing-mm", "0.1"])
    assert result.exit_code == 2
    assert not Path(out).exists()


def test_default_spacing_is_one_mm_and_info_reads_the_store(luna, tmp_path):
    out = tmp_path / "volumes.zarr"
    result = CliRunner().invoke(app, ["prepare", str(luna), "--out", str(out), "--volumes", "--limit", "1", "--test-patients", "0"])
    assert result.exit_code == 0, result.output
    store = open_volume_store(out)
    assert store.spacing_mm == 1.0 and store.attrs["params"]["spacing_mm"] == 1.0
    steps = store.index_to_world(0, np.eye(3)) - store.index_to_world(0, np.zeros((1, 3)))
    np.testing.assert_allclose(np.linalg.norm(steps, axis=1), 1.0)
    info = CliRunner().invoke(app, ["info", str(out), "--json"])
    assert info.exit_code == 0, info.output
    summary = json.loads(info.stdout)
    assert summary["schema"] == "lungforge.volumes/1" and summary["scans"] == 1 and summary["spacing_mm"] == 1.0
    assert summary["splits"]["train"]["scans"] == 1
    verified = CliRunner().invoke(app, ["info", str(out), "--verify"])
    assert verified.exit_code == 0 and "verified:" in verified.stdout and "1 scans at 1 mm" in verified.stdout


def test_the_store_is_the_same_for_two_workers(luna, whole, tmp_path):
    out = tmp_path / "volumes.zarr"
    report = prepare_volumes(luna, out, VolumeOptions(spacing_mm=3.0, test_patients=1, workers=2))
    assert report.workers == 2
    assert open_volume_store(out).content_digests() == open_volume_store(whole).content_digests()
