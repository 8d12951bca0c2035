"""`lungforge phantom | prepare | info` through the Typer app: the result on stdout, progress and
problems on stderr."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lungforge.cli.main import app

ANSI = "\x1b["
BAR = "━"


@pytest.fixture(scope="module")
def prepared(phantom_factory, tmp_path_factory) -> Path:
    """The 4-scan 48-px phantom (seed 3) prepared with one test patient."""
    from lungforge.preparation.pipeline import PrepareOptions, prepare

    out = tmp_path_factory.mktemp("data_cli") / "real.zarr"
    prepare(phantom_factory(scans=4, size=48, seed=3), out, PrepareOptions(test_patients=1))
    return out


def test_phantom_wrote_line_on_stdout(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["phantom", str(tmp_path / "ph"), "--scans", "2", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("wrote 2 phantom scans with ") and result.stdout.rstrip().endswith(str(tmp_path / "ph"))
    assert result.stderr == ""


def test_prepare_summary_on_stdout_skipped_scans_and_progress_on_stderr(phantom_factory, tmp_path: Path) -> None:
    luna = Path(shutil.copytree(phantom_factory(scans=4, size=48, seed=3), tmp_path / "luna16"))
    raw = sorted(luna.glob("subset*/*.raw"))[1]
    raw.write_bytes(raw.read_bytes()[:100])
    out = tmp_path / "real.zarr"
    result = CliRunner().invoke(app, ["prepare", str(luna), "--out", str(out), "--test-patients", "1"])
    assert result.exit_code == 3, result.output
    assert result.stdout.count("\n") == 1 and f"from 3 scans written to {out}; 1 scans skipped" in result.stdout
    assert "skipped" in result.stderr and raw.stem in result.stderr and BAR in result.stderr
    assert raw.stem not in result.stdout and BAR not in result.stdout and "written to" not in result.stderr


def test_info_report_on_stdout_plain_when_not_a_terminal(prepared) -> None:
    result = CliRunner().invoke(app, ["info", str(prepared)])
    assert result.exit_code == 0, result.output
    from lungforge.store import count_store, open_store

    summary = count_store(open_store(prepared))
    lines = result.stdout.splitlines()
    assert lines[0] == f"{prepared}  kind=real  {summary.slices} slices of 48×48  4 series" and "│ train │" in result.stdout
    assert lines[-2].startswith("folds: ") and lines[-1].startswith("nodule diameters: ")
    assert max(map(len, lines[2:-2])) <= 80 and ANSI not in result.stdout
    assert result.stderr == ""


def test_info_verify_line_on_stdout(prepared) -> None:
    from lungforge.store import count_store, open_store

    result = CliRunner().invoke(app, ["info", str(prepared), "--verify"])
    assert result.exit_code == 0, result.output
    assert (
        result.stdout.startswith("verified: ")
        and f"{count_store(open_store(prepared)).nodules} boxes are the tight boxes of their nodules\n" in result.stdout
    )
    assert "kind=real" in result.stdout and result.stderr == ""
