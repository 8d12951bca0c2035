"""The fault matrix of benchmarks/faults.py as pytest cases: one slow-marked case per row, run by the same
runner (benchmarks/fault_matrix/) on one lab per session, asserting what the script's JSON reports per row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fault_matrix import FAULTS, FaultFn, Lab, code_matches, run_row  # benchmarks/ is on sys.path (tests/faults/conftest.py)

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
ROW_IDS = [f"{group}/{name}" for group, name, _expected, _fn in FAULTS]


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Lab:
    """One lab for the session: its phantom and stores are made when a row first needs them, as in the script."""
    return Lab(tmp_path_factory.mktemp("fault_lab"))


@pytest.mark.slow
@pytest.mark.parametrize(("group", "name", "expected", "fn"), FAULTS, ids=ROW_IDS)
def test_fault_row(lab: Lab, group: str, name: str, expected: str, fn: FaultFn) -> None:
    row = run_row(lab, group, name, expected, fn)
    report = f"exit {row.code} (want {expected}): {row.message} [{row.note}]"
    assert code_matches(row.code, expected), report
    assert not row.traceback, report
    assert not row.lost, report
    assert row.ok, report  # a row's own check (a named file, a message, ...) holds too


def test_rows_are_unique_and_the_script_lists_them() -> None:
    assert len(set(ROW_IDS)) == len(ROW_IDS) > 100
    listed = subprocess.run(
        [sys.executable, str(BENCHMARKS / "faults.py"), "--list", "--only", "header"], capture_output=True, text=True, timeout=120
    )
    assert listed.returncode == 0, listed.stderr
    headers = [name for group, name, _expected, _fn in FAULTS if "header" in group or "header" in name]
    assert len(listed.stdout.splitlines()) == len(headers) > 10
    assert all(name in listed.stdout for name in headers)
