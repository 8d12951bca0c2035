"""`lungforge augment` through Typer's CliRunner: a JSON run, the preview grid and bad input exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lungforge.cli.main import app
from lungforge.core.errors import CheckpointError, InputError, LayoutError, SchemaError
from lungforge.store import open_store

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """A 64-px phantom real store and random-init micro SDM / SPADE checkpoints."""
    from lungforge.models.checkpoint import save_checkpoint
    from lungforge.models.presets import SDMConfig, SPADEConfig
    from lungforge.models.sdm_unet import SDMUNet
    from lungforge.models.spade import SPADEGenerator
    from lungforge.phantom.scans import make_phantom
    from lungforge.preparation.pipeline import PrepareOptions, prepare

    root = tmp_path_factory.mktemp("augment_cli")
    make_phantom(root / "luna16", scans=4, size=64, seed=1)
    prepare(root / "luna16", root / "real.zarr", PrepareOptions(test_patients=0.25))
    torch.manual_seed(0)
    sdm = SDMConfig(
        image_size=64,
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_resolutions=(),
        num_head_channels=8,
        norm_groups=4,
        label_embed_channels=8,
    )
    spade = SPADEConfig(image_size=64, ngf=4, ndf=4, num_classes=5)
    save_checkpoint(
        root / "sdm", kind="sdm", preset="tiny", model_config=sdm, state_dict=SDMUNet(sdm).state_dict(), step=0, store_fingerprint=None
    )
    save_checkpoint(
        root / "spade5",
        kind="spade",
        preset="tiny",
        model_config=spade,
        state_dict=SPADEGenerator(spade).state_dict(),
        step=0,
        store_fingerprint=None,
    )
    return {"real": root / "real.zarr", "sdm": root / "sdm", "spade5": root / "spade5"}


def _invoke(inputs: dict[str, Path], out: Path, *extra: str, weights: str = "sdm", data: Path | None = None):
    args = [
        "augment",
        "--data",
        str(data or inputs["real"]),
        "--weights",
        str(inputs[weights]),
        "--out",
        str(out),
        *(("--steps", "2") if weights == "sdm" else ()),
        "--shape",
        "sphere",
        "--shard-size",
        "4",
        "--device",
        "cpu",
        *extra,
    ]
    return CliRunner().invoke(app, args)


def test_json_run_and_preview(inputs, tmp_path):
    out, png = tmp_path / "synth.zarr", tmp_path / "grid.png"
    result = _invoke(inputs, out, "--nodules", "3", "--nodule-free", "2", "--diameter", "15:25", "--json", "--preview", str(png))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # the JSON alone: the preview's path is a log line on stderr
    assert f"wrote {png}" in result.stderr.splitlines()
    assert report["slices"] == 5 and report["nodules"] == 3 and report["written_this_run"] == 5
    for key in (
        "nodules_by_size",
        "diameter_error_pct_mean",
        "diameter_error_pct_max",
        "verified_first_try",
        "verified_final",
        "images_per_s",
        "seconds",
    ):
        assert key in report
    assert report["diameter_error_pct_max"] <= 25.0
    assert len(open_store(out)) == 5
    from PIL import Image

    with Image.open(png) as grid:  # lungforge view's contact sheet: 5 tiles of (64 | 64), 4 columns, 2 rows
        assert grid.size == (4 * (2 * 64 + 2) + 5 * 4, 2 * (14 + 64) + 3 * 4)


def test_report_table_and_preview_path_on_stdout(inputs, tmp_path):
    out, png = tmp_path / "synth.zarr", tmp_path / "grid.png"
    result = _invoke(inputs, out, "--nodule-free", "2", "--preview", str(png))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "augment → " in lines[0] and any(line.startswith("│ slices ") and "2 (0 with nodules, 2 nodule-free)" in line for line in lines)
    assert lines[-1] == f"wrote {png}" and "\x1b[" not in result.stdout and "━" not in result.stdout
    assert "━" in result.stderr and "slices" not in result.stderr and str(png) not in result.stderr


def test_reversed_diameter_range_is_bad_usage(inputs, tmp_path):
    result = _invoke(inputs, tmp_path / "x.zarr", "--nodules", "2", "--diameter", "12:3")
    assert result.exit_code == 2
    assert "12:3" in result.output
    assert not (tmp_path / "x.zarr").exists()


def test_negative_count_is_bad_usage(inputs, tmp_path):
    assert _invoke(inputs, tmp_path / "x.zarr", "--nodules", "-1").exit_code == 2


def test_nothing_to_generate_is_bad_usage(inputs, tmp_path):
    assert _invoke(inputs, tmp_path / "x.zarr").exit_code == 2


@pytest.mark.parametrize(
    "extra, weights, error",
    [
        (("--nodules", "2", "--diameter", "90:100", "--per-slice", "12"), "sdm", LayoutError),
        (("--nodules", "2", "--diameter", "0.001:0.002"), "sdm", LayoutError),
        (("--nodules", "2", "--diameter", "15:20"), "spade5", CheckpointError),
        (("--nodules", "2", "--diameter", "15:20", "--precision", "fp16"), "sdm", InputError),
    ],
)
def test_errors_exit_1_and_write_nothing(inputs, tmp_path, extra, weights, error):
    out = tmp_path / "x.zarr"
    result = _invoke(inputs, out, *extra, weights=weights)
    assert result.exit_code == 1 and isinstance(result.exception, error)
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (("--guidance", "nan"), "'--guidance': must be a finite number, got nan"),
        (("--guidance", "1e308"), "guidance must be in 0.0..20.0, got 1e+308"),
        (("--guidance", "-1"), "guidance must be in 0.0..20.0, got -1.0"),
        (("--diameter", "1e20:1e20"), "MIN:MAX mm with 0 < MIN <= MAX <= 100"),
    ],
)
def test_unbounded_numbers_are_bad_usage_before_work(inputs, tmp_path, extra, expected):
    out = tmp_path / "x.zarr"
    args = ["augment", "--data", str(inputs["real"]), "--weights", str(inputs["sdm"]), "--out", str(out), "--nodules", "2", *extra]
    result = CliRunner(env={"COLUMNS": "400"}).invoke(app, args)
    assert result.exit_code == 2 and expected in result.output, result.output
    assert not out.exists()


def test_synthetic_input_and_existing_output(inputs, tmp_path):
    out = tmp_path / "synth.zarr"
    assert _invoke(inputs, out, "--nodule-free", "2").exit_code == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    again = _invoke(inputs, out, "--nodule-free", "2")
    assert again.exit_code == 1 and isinstance(again.exception, SchemaError)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    from_synthetic = _invoke(inputs, tmp_path / "y.zarr", "--nodule-free", "2", data=out)
    assert from_synthetic.exit_code == 1 and isinstance(from_synthetic.exception, InputError)
    assert not (tmp_path / "y.zarr").exists()


def test_cli_sampler_defaults_are_the_options_defaults():
    """Unset (None) on the command line and in the options, so an explicit value is detectable;
    diffusion weights then take SamplingSettings' defaults (AugmentOptions.as_run)."""
    import inspect

    from lungforge.augment.options import SAMPLING, AugmentOptions
    from lungforge.cli.augment import augment

    params = inspect.signature(augment).parameters
    fields = AugmentOptions.__dataclass_fields__
    for name in SAMPLING:
        assert params[name].default is fields[name].default is None, name


@pytest.mark.parametrize(
    ("weights", "extra", "expected"),
    [
        ("spade5", ("--sampler", "ddim"), "--sampler: sampler is for diffusion (SDM) weights;"),
        ("spade5", ("--guidance", "2"), "--guidance: guidance is for diffusion (SDM) weights;"),
        ("paste", ("--steps", "10"), "--steps: steps is for diffusion (SDM) weights; --weights paste is a model-free control"),
    ],
)
def test_sampler_options_for_weights_without_a_sampler_are_bad_usage(inputs, tmp_path, weights, extra, expected):
    out = tmp_path / "x.zarr"
    weights_arg = str(inputs[weights]) if weights in inputs else weights
    args = [
        "augment",
        "--data",
        str(inputs["real"]),
        "--weights",
        weights_arg,
        "--out",
        str(out),
        "--nodules",
        "2",
        "--device",
        "cpu",
        *extra,
    ]
    result = CliRunner(env={"COLUMNS": "400"}).invoke(app, args)
    assert result.exit_code == 2 and expected in result.output, result.output
    if weights == "spade5":
        assert "is a SPADE checkpoint (a GAN: one forward pass)" in result.output
    assert not out.exists()
