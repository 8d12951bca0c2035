"""`lungforge export` through the Typer app: JSON summary, bad usage, errors."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lungforge.cli.main import app
from lungforge.core.errors import SchemaError


def test_export_json_summary(stores, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    result = CliRunner().invoke(
        app,
        [
            "export",
            str(stores["B"]),
            "--format",
            "nnunet",
            "--out",
            str(out),
            "--split",
            "train",
            "--size",
            "32",
            "--nodule-only",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["out"] == str(out / "Dataset501_Lungforge") and (report["height"], report["width"]) == (32, 32)
    assert report["images"] == report["images_by_split"]["train"] == report["nodules"] == 12
    dataset = json.loads((out / "Dataset501_Lungforge" / "dataset.json").read_text())
    assert dataset["lungforge"]["kind"] == "synthetic" and dataset["numTraining"] == 12


def test_export_line_on_stdout_progress_on_stderr(stores, tmp_path: Path) -> None:
    out = tmp_path / "png"
    result = CliRunner().invoke(app, ["export", str(stores["real"]), "--format", "png", "--out", str(out), "--size", "16"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"exported 40 slices (24 train, 16 test) with 20 nodules as png to {out}\n"
    assert "━" in result.stderr and "exported" not in result.stderr


def test_export_bad_usage_and_missing_store(stores, tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["export", str(stores["real"]), "--format", "voc", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "'voc' is not one of" in " ".join(bad.output.replace("│", " ").split())
    missing = CliRunner().invoke(app, ["export", str(tmp_path / "none.zarr"), "--format", "png", "--out", str(tmp_path / "x")])
    assert missing.exit_code == 1 and isinstance(missing.exception, SchemaError)
    assert not (tmp_path / "x").exists()


def test_export_counts_nodules_kept_as_one_pixel(stores, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["export", str(stores["real"]), "--format", "yolo", "--out", str(tmp_path / "y"), "--size", "8", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nodules_kept_as_pixel"] == 8
    assert "note: 8 of 20 nodules have no pixel left at 8×8: each keeps its nearest pixel" in result.stderr
    for label in (tmp_path / "y" / "labels").rglob("*.txt"):
        for line in label.read_text().splitlines():
            assert float(line.split()[3]) >= 1 / 8 and float(line.split()[4]) >= 1 / 8  # at least one pixel wide and high


def test_export_of_a_volume_store_counts_scans(volume_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "det"
    result = CliRunner().invoke(app, ["export", str(volume_store), "--format", "monai-detection", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"exported 3 scans (2 train, 1 test) with 5 nodules as monai-detection to {out}\n"
    sized = CliRunner().invoke(app, ["export", str(volume_store), "--format", "nnunet3d", "--out", str(tmp_path / "raw"), "--size", "32"])
    assert sized.exit_code == 2 and "size applies to slice formats only" in " ".join(sized.output.replace("│", " ").split())
