"""Sharded production under torchrun (CPU, gloo) and a hard kill followed by --resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.store import open_store

COMMON = ["--diameter", "15:30", "--shape", "sphere", "--steps", "2", "--shard-size", "4", "--device", "cpu", "--seed", "3"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _reference(real: Path, weights: Path, out: Path, nodules: int, nodule_free: int, **kw) -> Path:
    augment(
        AugmentOptions(
            data=real,
            weights=str(weights),
            out=out,
            nodules=nodules,
            nodule_free=nodule_free,
            diameter_mm=(15.0, 30.0),
            shape="sphere",
            steps=2,
            shard_size=4,
            device="cpu",
            seed=3,
            **kw,
        )
    )
    return out


def _assert_same_store(a: Path, b: Path) -> None:
    sa, sb = open_store(a), open_store(b)
    np.testing.assert_array_equal(sa.image[...], sb.image[...])
    np.testing.assert_array_equal(sa.label[...], sb.label[...])
    for name in ("series", "z", "spacing", "fold", "has_nodule", "source", "seed", "verified", "done"):
        np.testing.assert_array_equal(sa.meta(name), sb.meta(name), err_msg=name)
    for name, values in sa.nodules().items():
        np.testing.assert_array_equal(values, sb.nodules()[name], err_msg=name)


def _cli(real: Path, weights: Path, out: Path, nodules: int, nodule_free: int, *extra: str) -> list[str]:
    return [
        "-m",
        "lungforge",
        "augment",
        "--data",
        str(real),
        "--weights",
        str(weights),
        "--out",
        str(out),
        "--nodules",
        str(nodules),
        "--nodule-free",
        str(nodule_free),
        *COMMON,
        *extra,
    ]


@pytest.mark.slow
def test_two_ranks_write_the_same_store_as_one(prepared_store, micro_weights, tmp_path):
    reference = _reference(prepared_store, micro_weights["sdm"], tmp_path / "one.zarr", 6, 4, batch_size=3)
    out = tmp_path / "two.zarr"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        *_cli(prepared_store, micro_weights["sdm"], out, 6, 4, "--batch-size", "2", "--json"),
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_same_store(reference, out)
    assert '"slices": 10' in done.stdout


@pytest.mark.slow
def test_kill_then_resume_matches_an_uninterrupted_run(prepared_store, micro_weights, tmp_path):
    reference = _reference(prepared_store, micro_weights["sdm"], tmp_path / "clean.zarr", 12, 4, batch_size=2)
    out = tmp_path / "killed.zarr"
    args = _cli(prepared_store, micro_weights["sdm"], out, 12, 4, "--batch-size", "2")
    proc = subprocess.Popen([sys.executable, *args], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first_part = out / "parts" / "block-000000.npz"
    deadline = time.monotonic() + 240
    while not first_part.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; give it more work"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = open_store(out, require_complete=False)
    assert not partial.attrs["complete"] and not partial.meta("done").all()
    resumed = subprocess.run([sys.executable, *args, "--resume"], env=_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_store(reference, out)
