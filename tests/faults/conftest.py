"""Fixtures of the fault tests (issue 13): a private phantom copy to damage and a CLI runner that
goes through the console entry point, so one-line errors and exit codes are those users see.
benchmarks/ goes on sys.path, for the fault matrix's rows and runner (benchmarks/fault_matrix/)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from lungforge.cli.main import run

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))  # last: the scripts beside fault_matrix/ shadow no module


@dataclass(frozen=True)
class CliResult:
    """Exit code and captured streams of one `lungforge` call."""

    code: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """The non-empty stderr lines that are not progress bars."""
        return [line for line in self.stderr.splitlines() if line.strip() and "━" not in line]


Cli = Callable[..., CliResult]


@pytest.fixture()
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`cli("prepare", ...)`: run `lungforge` in-process via its entry point (`run`)."""

    def invoke(*args: str | Path) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["lungforge", *map(str, args)])
        capsys.readouterr()
        code = 0
        try:
            run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return invoke


@pytest.fixture()
def luna(phantom_factory, tmp_path: Path) -> Path:
    """A private 4-scan, 48-px phantom (subset0..3) that a test may damage."""
    return Path(shutil.copytree(phantom_factory(scans=4, size=48, seed=3), tmp_path / "luna16"))
