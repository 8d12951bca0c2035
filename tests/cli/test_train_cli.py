from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lungforge.cli.main import app


def test_train_sdm_tiny_end_to_end_then_resume_errors(prepared_store, tmp_path):
    store, out = prepared_store, tmp_path / "run"
    runner = CliRunner()
    args = [
        "train",
        "sdm",
        "--data",
        str(store),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--steps",
        "3",
        "--batch-size",
        "1",
        "--checkpoint-every",
        "2",
        "--sample-steps",
        "1",
        "--grid-samples",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "train tiny: up to 3 optimiser steps planned" in result.stderr
    assert summary["steps"] == 3 and summary["kind"] == "sdm" and summary["checkpoint"] == str(out)
    for name in ("model.safetensors", "config.json", "resume.pt", "metrics.jsonl"):
        assert (out / name).is_file()
    assert sorted(p.name for p in (out / "samples").glob("*.png")) == ["step_0000002.png", "step_0000003.png"]
    assert json.loads((out / "config.json").read_text())["step"] == 3

    missing = runner.invoke(app, [*args[:5], str(tmp_path / "empty"), "--resume"], standalone_mode=False)
    assert "no training state" in str(missing.exception)
    wrong = runner.invoke(app, [*args[:5], str(out), "--preset", "paper", "--resume", "--device", "cpu"], standalone_mode=False)
    assert "trained with preset 'tiny', but --preset is 'paper'" in str(wrong.exception)


@pytest.mark.parametrize("kind, batch", [("sdm", "1"), ("spade", "2")])
def test_train_summary_line_on_stdout_progress_on_stderr(prepared_store, tmp_path, kind, batch):
    out = tmp_path / "run"
    args = [
        "train",
        kind,
        "--data",
        str(prepared_store),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--steps",
        "1",
        "--batch-size",
        batch,
        "--grid-samples",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
        *(["--sample-steps", "1"] if kind == "sdm" else []),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"trained {kind} (tiny) to step 1: final loss ") and result.stdout.endswith(f"checkpoint in {out}\n")
    assert "━" in result.stderr and "trained" not in result.stderr


def test_train_help_lists_commands():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert result.exit_code == 0 and "sdm" in result.output and "spade" in result.output


def test_window_without_inpaint_is_bad_usage(tmp_path):
    result = CliRunner().invoke(app, ["train", "sdm", "--data", str(tmp_path / "x.zarr"), "--out", str(tmp_path / "run"), "--window", "32"])
    assert result.exit_code == 2 and "--window needs --inpaint" in result.output
    assert not (tmp_path / "run").exists()


def test_edit_margin_without_inpaint_is_bad_usage(tmp_path):
    result = CliRunner().invoke(
        app, ["train", "sdm", "--data", str(tmp_path / "x.zarr"), "--out", str(tmp_path / "run"), "--edit-margin", "7"]
    )
    assert result.exit_code == 2 and "--edit-margin needs --inpaint" in result.output


def test_malformed_inpaint_window_and_margin_are_bad_usage_before_work(tmp_path):
    base = ["train", "sdm", "--data", str(tmp_path / "x.zarr"), "--out", str(tmp_path / "run"), "--inpaint", "--device", "cpu"]
    window = CliRunner(env={"COLUMNS": "400"}).invoke(app, [*base, "--window", "15"])
    assert window.exit_code == 2 and "--window 15: image_size must be a positive multiple" in window.output
    for margin in ("8", "100"):
        result = CliRunner(env={"COLUMNS": "400"}).invoke(app, [*base, "--window", "16", "--edit-margin", margin])
        assert result.exit_code == 2, result.output
        assert f"edit margin {margin} px leaves no room" in result.output and "largest margin for --window 16 is 6" in result.output
    assert not (tmp_path / "run").exists()


def test_inpaint_window_larger_than_the_store_is_one_line(prepared_store, tmp_path):
    store = prepared_store
    args = [
        "train",
        "sdm",
        "--data",
        str(store),
        "--out",
        str(tmp_path / "run"),
        "--preset",
        "tiny",
        "--inpaint",
        "--window",
        "128",
        "--steps",
        "1",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "window 128 px is larger than its 64×64 px slices" in str(result.exception)
    assert not (tmp_path / "run").exists()


def test_train_choices_are_checked_by_click_and_listed_in_help() -> None:
    from typing import get_args

    from lungforge.core.choices import PresetName
    from lungforge.models.presets import PRESETS

    assert set(get_args(PresetName)) == set(PRESETS)
    runner = CliRunner()
    help_text = runner.invoke(app, ["train", "spade", "--help"], terminal_width=200).output
    assert "tiny|paper" in help_text and "fp32|bf16|fp16" in help_text
    bad = runner.invoke(app, ["train", "spade", "--data", "x.zarr", "--out", "run", "--preset", "huge"])
    assert bad.exit_code == 2 and "huge" in bad.output
