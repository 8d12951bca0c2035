from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lungforge.core.process_group import DistInfo, dist_info_from_env


def test_env_without_torchrun_is_single_process(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert dist_info_from_env() == DistInfo(0, 1, 0)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    info = dist_info_from_env()
    assert info.enabled and not info.is_main and info.local_rank == 1


@pytest.mark.slow
def test_torchrun_two_cpu_ranks_train_and_checkpoint_once(prepared_store, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29531",
        "-m",
        "lungforge",
        "train",
        "sdm",
        "--data",
        str(prepared_store),
        "--out",
        str(out),
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--batch-size",
        "1",
        "--checkpoint-every",
        "2",
        "--sample-steps",
        "1",
        "--grid-samples",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["world_size"] == 2 and summary["steps"] == 2
    assert (out / "model.safetensors").is_file() and (out / "resume.pt").is_file()
    assert [p.name for p in (out / "samples").iterdir()] == ["step_0000002.png"]
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]
