"""Options and messages (issue 13, items 11 and 13): non-finite floats, bad choices and malformed
arguments are usage errors (exit 2); error lines keep their text and stay one line."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
import torch
import typer
from typer.testing import CliRunner

from lungforge.bench.scoring.fid import load_fid_inception
from lungforge.cli.main import app
from lungforge.core.errors import CheckpointError
from lungforge.models.catalog import NAME_PATTERN


def _options(predicate) -> list[tuple[tuple[str, ...], str]]:
    """(command path, option flag) of every option of the CLI for which `predicate(option)` holds."""
    found = []

    def walk(command, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, (*path, name))
            return
        found.extend((path, p.opts[0]) for p in command.params if p.param_type_name == "option" and predicate(p))

    walk(typer.main.get_command(app), ())
    return found


def _is_float(option) -> bool:
    annotation = option.type_descriptor.annotation
    return float in (annotation, *get_args(annotation))


FLOAT_OPTIONS = _options(_is_float)
DEVICE_OPTIONS = _options(lambda p: p.opts[0] == "--device")


def test_every_float_option_is_found() -> None:
    flags = {flag for _, flag in FLOAT_OPTIONS}
    assert {"--guidance", "--min-contrast", "--keep-nodule-free", "--lr", "--lr-d", "--ema-decay", "--nodule-free-ratio"} <= flags


@pytest.mark.parametrize("value", ["nan", "inf"])
@pytest.mark.parametrize(("command", "flag"), FLOAT_OPTIONS, ids=[" ".join((*c, f)) for c, f in FLOAT_OPTIONS])
def test_non_finite_float_is_a_usage_error(command: tuple[str, ...], flag: str, value: str) -> None:
    result = CliRunner().invoke(app, [*command, flag, value])
    # the error is about this option (a range check may catch it first), not a missing argument
    assert result.exit_code == 2 and f"Invalid value for '{flag}'" in result.output, result.output


@pytest.mark.parametrize(("command", "flag"), [(("augment",), "--min-contrast"), (("train", "sdm"), "--ema-decay")])
def test_unbounded_float_option_names_the_problem(command: tuple[str, ...], flag: str) -> None:
    result = CliRunner().invoke(app, [*command, flag, "inf"])
    assert result.exit_code == 2 and "must be a finite number, got inf" in result.output


def test_non_finite_test_patients_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["prepare", str(tmp_path), "--out", str(tmp_path / "o.zarr"), "--test-patients", "nan"])
    assert result.exit_code == 2 and "--test-patients" in result.output


@pytest.mark.parametrize(("command", "flag"), DEVICE_OPTIONS, ids=[" ".join((*c, f)) for c, f in DEVICE_OPTIONS])
def test_unknown_device_is_a_usage_error(command: tuple[str, ...], flag: str) -> None:
    result = CliRunner().invoke(app, [*command, flag, "tpu"])
    assert result.exit_code == 2 and "must be one of auto, cpu, cuda, got 'tpu'" in result.output


@pytest.mark.parametrize("command", ["detect", "localize", "all", "fid"])
def test_malformed_synthetic_is_a_usage_error(stores, tmp_path: Path, command: str) -> None:
    args = ["bench", command, "--real", str(stores["real"]), "--synthetic", "=x", "--device", "cpu"]
    result = CliRunner().invoke(app, args + (["--out", str(tmp_path / "r")] if command == "all" else []))
    assert result.exit_code == 2 and "must look like NAME=STORE" in result.output


def test_error_markup_is_printed_as_is(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUNGFORGE_HOME", str(tmp_path / "home"))
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    result = cli("weights", "import", weights, "--name", "BAD")
    assert result.code == 1
    assert result.error_lines == [f"error: weights name must match {NAME_PATTERN.pattern}, got 'BAD'"]


class _Payload:
    """A class a pickle can name: torch's safe loader must refuse to build it."""


def test_pickled_inception_file_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "pt_inception.pth"
    torch.save({"a": _Payload()}, path)
    with pytest.raises(CheckpointError) as caught:
        load_fid_inception(path)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message
    assert message.startswith(f"{path}: not a loadable FID Inception state dict (it holds pickled Python objects")
    assert "_Payload" in message
