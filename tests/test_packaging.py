"""The wheel carries every lungforge module and the shipped weights folder as package data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_wheel_ships_every_module_and_the_demo_weights(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("lungforge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lungforge").rglob("*.py")}
    assert modules <= names
    shipped = {f"lungforge/weights/{p.name}" for p in (ROOT / "weights").iterdir() if p.suffix in (".toml", ".safetensors")}
    assert "lungforge/weights/manifest.toml" in shipped and shipped <= names
    assert not any(n.startswith(("weights/", "tests/")) for n in names)
