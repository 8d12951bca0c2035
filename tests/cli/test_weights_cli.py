"""Tests of `lungforge weights list | pull | import | verify` through the Typer app."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lungforge.cli.main import app
from lungforge.core.errors import RegistryError
from lungforge.models.checkpoint import save_checkpoint
from lungforge.models.presets import SPADEConfig
from lungforge.models.spade import SPADEGenerator

CFG = SPADEConfig(image_size=32, ngf=2, ndf=2)
runner = CliRunner()


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, bytes]:
    """A home in tmp_path and a manifest whose one entry is a file:// URL to a tiny checkpoint."""
    run = save_checkpoint(
        tmp_path / "run",
        kind="spade",
        preset="custom",
        model_config=CFG,
        state_dict=SPADEGenerator(CFG).state_dict(),
        step=2,
        store_fingerprint=None,
    )
    data = (run / "model.safetensors").read_bytes()
    mirror = tmp_path / "mirror.safetensors"
    mirror.write_bytes(data)
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(
        "[weights.remote]\n"
        'kind = "spade"\npreset = "custom"\n'
        f'url = "{mirror.as_uri()}"\nsha256 = "{hashlib.sha256(data).hexdigest()}"\nsize = {len(data)}\n'
        'description = "a mirror"\n'
    )
    monkeypatch.setenv("LUNGFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("LUNGFORGE_MANIFEST", str(manifest))
    return tmp_path, data


def test_list_json(env: tuple[Path, bytes]) -> None:
    result = runner.invoke(app, ["weights", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["name"], r["kind"], r["cached"], r["source"]) for r in rows] == [("remote", "spade", False, "manifest")]


def test_list_table_on_stdout_one_line_per_entry(env: tuple[Path, bytes]) -> None:
    """`weights list | grep NAME` finds the entry's one line (its description cut to the width)."""
    result = runner.invoke(app, ["weights", "list"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "remote" in line]
    assert len(rows) == 1 and "spade" in rows[0] and "manifest" in rows[0] and "a mirror" in rows[0]
    assert result.stderr == "" and "\x1b[" not in result.stdout


def test_pull_then_verify_then_tamper(env: tuple[Path, bytes]) -> None:
    tmp_path, data = env
    result = runner.invoke(app, ["weights", "pull", "remote", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    cached = Path(payload["path"])
    assert cached == tmp_path / "home" / "weights" / "remote.safetensors" and cached.read_bytes() == data

    result = runner.invoke(app, ["weights", "verify", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["status"] == "ok"
    assert json.loads(runner.invoke(app, ["weights", "list", "--json"]).stdout)[0]["cached"] is True
    result = runner.invoke(app, ["weights", "verify"])
    assert result.exit_code == 0 and result.stdout == f"ok       remote  {cached}\n" and result.stderr == ""

    cached.write_bytes(b"x" + data[1:])
    result = runner.invoke(app, ["weights", "verify", "remote"])
    assert result.exit_code == 1
    assert result.stdout.startswith(f"mismatch remote  {cached} (expected sha256 ") and result.stdout.count("\n") == 1
    assert result.stderr == "error: 1 of 1 weights failed verification: remote\n"


def test_pull_prints_the_verified_path_on_stdout(env: tuple[Path, bytes]) -> None:
    tmp_path, _ = env
    result = runner.invoke(app, ["weights", "pull", "remote"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"remote: verified {tmp_path / 'home' / 'weights' / 'remote.safetensors'}\n"
    assert "remote" not in result.stderr  # the transient download bar leaves nothing behind


def test_import_run_dir(env: tuple[Path, bytes]) -> None:
    tmp_path, _ = env
    result = runner.invoke(app, ["weights", "import", str(tmp_path / "run"), "--name", "my-spade", "--json"])
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)
    assert entry["name"] == "my-spade" and entry["source"] == "user" and entry["preset"] == "custom"
    names = [r["name"] for r in json.loads(runner.invoke(app, ["weights", "list", "--json"]).stdout)]
    assert names == ["my-spade", "remote"]
    result = runner.invoke(app, ["weights", "verify", "my-spade", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["status"] == "ok"


def test_import_line_on_stdout(env: tuple[Path, bytes]) -> None:
    tmp_path, _ = env
    result = runner.invoke(app, ["weights", "import", str(tmp_path / "run"), "--name", "mine"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "home" / "weights" / "mine.safetensors"
    assert result.stdout.startswith(f"imported spade (custom) weights as 'mine': {path} sha256 ") and result.stdout.count("\n") == 1
    assert result.stderr == ""


def test_unknown_name_is_an_error(env: tuple[Path, bytes]) -> None:
    result = runner.invoke(app, ["weights", "pull", "nope"])
    assert result.exit_code == 1
    assert isinstance(result.exception, RegistryError) and "unknown weights 'nope'" in str(result.exception)


def test_import_requires_name(env: tuple[Path, bytes]) -> None:
    tmp_path, _ = env
    result = runner.invoke(app, ["weights", "import", str(tmp_path / "run")])
    assert result.exit_code == 2
