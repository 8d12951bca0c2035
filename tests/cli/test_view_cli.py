"""`lungforge view` through the Typer app."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from lungforge.cli.main import app


def test_view_random_nodules_json(stores, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    args = ["view", str(stores["B"]), "--out", str(out), "--nodules", "--random", "3", "--seed", "4", "--tile", "32", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["png"] == str(out) and len(payload["rows"]) == 3 and all(r % 2 == 0 for r in payload["rows"])
    assert Image.open(out).size == (3 * (2 * 32 + 2) + 4 * 4, 14 + 32 + 2 * 4)


def test_view_wrote_line_on_stdout(stores, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["view", str(stores["real"]), "--out", str(out), "--limit", "2", "--tile", "16"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote 2 slices to {out}\n" and result.stderr == ""


def test_view_bad_index_is_bad_usage(stores, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["view", str(stores["real"]), "--out", str(tmp_path / "g.png"), "--index", "1,99"])
    message = " ".join(result.output.replace("│", " ").split())  # the usage box wraps long paths
    assert result.exit_code == 2 and "index 99 outside 0..39" in message
    assert not (tmp_path / "g.png").exists()
