"""Each script in examples/ runs on phantom data."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from lungforge.store import open_store

EXAMPLES = Path(__file__).parents[2] / "examples"


def _run(args, **kw):
    # the scripts call `lungforge` and `python3` from the environment running the tests
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": path}
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, **kw)


def test_train_detector_on_mixed_stores(prepared_store):
    result = _run(
        [
            sys.executable,
            str(EXAMPLES / "train_detector_mixed.py"),
            "--real",
            str(prepared_store),
            "--synthetic",
            str(prepared_store),
            "--size",
            "64",
            "--steps",
            "2",
            "--batch-size",
            "2",
            "--workers",
            "2",
        ]
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    store = open_store(prepared_store)
    train_nodule = int(((store.meta("split") == 0) & store.meta("has_nodule")).sum())
    assert report["real"] == train_nodule
    assert report["slices"] == train_nodule + int(store.meta("has_nodule").sum())
    assert report["steps"] == 2 and np.isfinite(report["last_loss"])


def test_ci_check_reports_skipped_scans(phantom_factory, tmp_path):
    import shutil

    luna = tmp_path / "luna"
    shutil.copytree(phantom_factory(scans=4, size=64, seed=0), luna)
    raw = next(luna.glob("subset1/*.raw"))
    raw.write_bytes(raw.read_bytes()[:100])
    result = _run(["bash", str(EXAMPLES / "ci_check.sh"), str(luna), str(tmp_path / "out")])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "some scans were skipped" in result.stdout
    assert raw.stem in result.stdout
    assert "store ok:" in result.stdout
