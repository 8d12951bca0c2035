"""Smoke test of benchmarks/paste_example.py with tiny options: it runs, writes both figures and
reports gradients in the measured order (seam below real borders)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_paste_example_script_runs_and_measures(tmp_path):
    out = tmp_path / "example"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable,
        str(ROOT / "benchmarks" / "paste_example.py"),
        "--out",
        str(out),
        "--scans",
        "4",
        "--size",
        "64",
        "--nodules",
        "4",
        "--examples",
        "2",
    ]
    result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for name in ("paste_example.png", "nodule_gallery.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0 < summary["seam_gradient_hu"] < summary["real_border_gradient_hu"]
    assert summary["diameter_error_pct_mean"] >= 0 and 0 <= summary["visible_first_draw"] <= 1
