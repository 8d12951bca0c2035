"""Golden JSON of `bench detect` (and its learning curve), `bench fid`, `bench fidelity` and `bench all`.

The same rules as test_json_golden.py, whose helpers these reuse: volatile keys dropped, paths
under the test's folder written as "<tmp>", floats within the relative tolerance of trained values
(`TRAINED_REL_TOL`, 1e-2: one torch thread makes the CPU runs repeat on one machine; other CPUs'
kernels change digits that training amplifies). The input is a 4-scan 64-px phantom (seed 1: both quick folds hold nodule
slices, so every condition trains some steps) and a `paste` store made from it. `bench all` also
compares its report.md with tests/golden/bench_all_report.md. Regenerate after a deliberate
change with `LUNGFORGE_UPDATE_GOLDEN=1 pytest tests/cli/test_bench_json_golden.py` and review the diff.
"""

from __future__ import annotations

import json
import math
import os
import re

import pytest
from test_json_golden import GOLDEN, TRAINED_REL_TOL, _check  # tests/cli is on sys.path (pytest's rootdir-relative import)
from typer.testing import CliRunner

from lungforge.cli.main import app

pytestmark = pytest.mark.usefixtures("one_torch_thread")
QUICK = ["--quick", "--size", "64", "--device", "cpu", "--json"]


def _bench(*args: str) -> str:
    result = CliRunner().invoke(app, ["bench", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_bench_detect_json_matches_golden(paste_stores) -> None:
    stdout = _bench("detect", "--real", str(paste_stores["real"]), "--synthetic", f"paste={paste_stores['paste']}", "--patch", "16", *QUICK)
    _check("bench_detect", stdout, paste_stores["root"], TRAINED_REL_TOL)


def test_bench_detect_learning_curve_json_matches_golden(paste_stores) -> None:
    args = [
        "--real",
        str(paste_stores["real"]),
        "--synthetic",
        f"paste={paste_stores['paste']}",
        "--patch",
        "16",
        "--real-nodules",
        "1,all",
        "--allow-empty-synthetic",
    ]
    _check("bench_detect_curve", _bench("detect", *args, *QUICK), paste_stores["root"], TRAINED_REL_TOL)


def test_bench_fid_json_matches_golden(paste_stores) -> None:
    args = ["--real", str(paste_stores["real"]), "--synthetic", f"paste={paste_stores['paste']}", "--features", "random", "--size", "64"]
    _check("bench_fid", _bench("fid", *args, "--device", "cpu", "--json"), paste_stores["root"], TRAINED_REL_TOL)


def test_bench_fidelity_json_matches_golden(paste_stores) -> None:
    args = ["--real", str(paste_stores["real"]), "--synthetic", f"paste={paste_stores['paste']}", "--segmenter-steps", "4"]
    _check("bench_fidelity", _bench("fidelity", *args, *QUICK), paste_stores["root"], TRAINED_REL_TOL)


def test_bench_all_json_and_report_match_golden(paste_stores, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = paste_stores["root"] / "report"
    args = [
        "--real",
        str(paste_stores["real"]),
        "--synthetic",
        f"B={paste_stores['paste']}",
        "--out",
        str(out),
        "--patch",
        "16",
        "--features",
        "random",
        "--segmenter-steps",
        "5",
        "--controls",
        "--real-nodules",
        "1,all",
        "--allow-empty-synthetic",
    ]
    stdout = _bench("all", *args, *QUICK)
    _check("bench_all", stdout, paste_stores["root"], TRAINED_REL_TOL)
    assert json.loads((out / "report.json").read_text()) == json.loads(stdout)
    md = (out / "report.md").read_text().replace(str(paste_stores["root"]), "<tmp>")
    path = GOLDEN / "bench_all_report.md"
    if os.environ.get("LUNGFORGE_UPDATE_GOLDEN"):
        path.write_text(md)
    difference = _text_difference(md, path.read_text())
    assert difference is None, f"report.md differs from {path}: {difference}"


NUMBER = re.compile(r"[-+]?\d+(?:\.(\d+))?(?:e[-+]?\d+)?")


def _text_difference(got: str, want: str) -> str | None:
    """Where two reports differ: the text between numbers exactly, each printed decimal within
    :data:`TRAINED_REL_TOL` or one unit of its last printed digit (rounding can flip it), integers
    exactly; None if alike."""
    got_numbers, want_numbers = list(NUMBER.finditer(got)), list(NUMBER.finditer(want))
    if NUMBER.sub("#", got) != NUMBER.sub("#", want) or len(got_numbers) != len(want_numbers):
        first = next(
            (i for i, (a, b) in enumerate(zip(got.splitlines(), want.splitlines())) if NUMBER.sub("#", a) != NUMBER.sub("#", b)), None
        )
        return f"text differs (line {None if first is None else first + 1})"
    for g, w in zip(got_numbers, want_numbers):
        a, b = float(g.group()), float(w.group())
        if w.group(1) is None and "e" not in w.group():
            alike = g.group() == w.group()  # counts are exact
        elif "e" in w.group():
            alike = math.isclose(a, b, rel_tol=TRAINED_REL_TOL)
        else:
            alike = abs(a - b) <= max(TRAINED_REL_TOL * abs(b), 10.0 ** -len(w.group(1))) + 1e-12
        if not alike:
            return f"{g.group()} != {w.group()} at offset {w.start()}"
    return None
