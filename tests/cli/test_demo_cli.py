"""`lungforge demo`'s streams, with the pipeline replaced by two canned steps (tests/test_demo.py runs
the real one)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from lungforge.cli.main import app
from lungforge.demo import DemoOptions, DemoStep

REPORT = "# lungforge demo\n\n| condition | AP50 (%) |\n|---|---|\n| A | 12.50 ± 1.00 |\n"


def _canned_demo(options: DemoOptions, on_step: Any = None, progress: Any = None) -> list[DemoStep]:
    """Two steps and a report.md in `options.out`, as run_demo leaves them."""
    report = Path(options.out) / "report" / "report.md"
    report.parent.mkdir(parents=True)
    report.write_text(REPORT)
    steps = [DemoStep("phantom", 1.25, str(Path(options.out) / "luna16")), DemoStep("bench all", 2.0, str(report.parent))]
    for step in steps:
        on_step(step)
    return steps


def test_demo_table_and_report_on_stdout_steps_on_stderr(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("lungforge.demo.run_demo", _canned_demo)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("│ phantom ") and "│ 1.2 " in line for line in lines)
    report = next(line for line in lines if line.startswith("total 3.2 s; report: ")).split("report: ")[1]
    assert Path(report).parts[-2:] == ("report", "report.md") and Path(report).is_relative_to(tmp_path)
    assert result.stdout.endswith(REPORT) and "\x1b[" not in result.stdout
    assert result.stderr.count("✓ ") == 2 and "✓ phantom (1.2 s) → " in result.stderr and "✓" not in result.stdout
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone


def test_sampler_options_go_to_the_sdm_generators_and_are_refused_without_one(tmp_path: Path) -> None:
    """SPADE draws in one forward pass: the demo passes --sampler/--steps to its SDM generators only."""
    options = DemoOptions(out=tmp_path, generators=("SPADE", "SDM"), steps=3)
    assert options.sampling("SPADE") == {}
    assert options.sampling("SDM") == {"sampler": "ddpm", "steps": 3}
    assert DemoOptions(out=tmp_path).sampling("SDM-inpaint") == {"sampler": "ddpm", "steps": 10}
    result = CliRunner(env={"COLUMNS": "400"}).invoke(
        app, ["demo", "--out", str(tmp_path / "d"), "--generators", "SPADE", "--sampler", "ddim"]
    )
    assert result.exit_code == 2 and "sampler is for the SDM generators; generators SPADE have no sampler" in result.output, result.output
    assert not (tmp_path / "d").exists()
