"""Benchmarks shared among torchrun ranks: each rank owns whole (fold, condition) runs, the job's
JSON is the single process's, and a failure on one rank reaches every rank instead of a hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

from lungforge.bench.protocol.ranks import RankFailed, owned, rank_and_world, run_shared
from lungforge.core.errors import InputError

RUNS = [(fold, condition) for fold in range(3) for condition in ("A", "paste")]


def test_each_run_has_exactly_one_owner() -> None:
    shares = [owned(RUNS, rank, 4) for rank in range(4)]
    assert sorted(run for share in shares for run in share) == sorted(RUNS)
    assert [len(share) for share in shares] == [2, 2, 1, 1]


def test_a_single_process_runs_everything_in_order() -> None:
    seen: list[tuple[int, str]] = []
    rows = run_shared(RUNS, lambda fold, condition: seen.append((fold, condition)) or {"fold": fold})
    assert seen == RUNS and rank_and_world() == (0, 1)
    assert rows == {run: {"fold": run[0]} for run in RUNS}


def _rank_main(rank: int, init_file: str, out: str, fail_rank: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:

        def run(fold: int, condition: str) -> dict:
            if rank == fail_rank:
                raise InputError(f"no training patches in fold {fold}")
            return {"fold": fold, "condition": condition, "rank": rank}

        try:
            result = {"rows": sorted(map(list, run_shared(RUNS, run)))}
        except Exception as exc:
            result = {"error": type(exc).__name__, "message": str(exc)}
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("fail_rank", [-1, 1])
def test_two_ranks_share_runs_and_share_failures(tmp_path: Path, fail_rank: int) -> None:
    mp.spawn(_rank_main, args=(str(tmp_path / "init"), str(tmp_path), fail_rank), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    if fail_rank < 0:
        assert results[0] == results[1] == {"rows": sorted(map(list, RUNS))}
    else:
        assert results[1] == {"error": "InputError", "message": "no training patches in fold 0"}
        assert results[0]["error"] == RankFailed.__name__
        assert results[0]["message"] == "bench rank 1 of 2 failed: no training patches in fold 0"


def _bench(launcher: list[str], paste_stores: dict[str, Path], out: Path) -> dict:
    cmd = [
        *launcher,
        "-m",
        "lungforge",
        "bench",
        "detect",
        "--real",
        str(paste_stores["real"]),
        "--synthetic",
        f"paste={paste_stores['paste']}",
        "--patch",
        "16",
        "--quick",
        "--size",
        "64",
        "--device",
        "cpu",
        "--real-nodules",
        "1,all",
        "--out",
        str(out),
        "--json",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    for point in result["results"].values():
        for rows in point["folds"].values():
            for row in rows:
                assert row.pop("seconds") >= 0
    return result


@pytest.mark.slow  # ~25 s; the default suite checks the sharing in-process (test_two_ranks_share_runs_and_share_failures)
def test_torchrun_two_ranks_give_the_single_process_json(paste_stores: dict[str, Path], tmp_path: Path) -> None:
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    two = _bench(torchrun, paste_stores, tmp_path / "two")
    assert two == _bench([sys.executable], paste_stores, tmp_path / "one")
    files = sorted(p.name for p in (tmp_path / "two" / "detect-k1").iterdir())
    assert files == ["A-fold0.json", "A-fold1.json", "paste-fold0.json", "paste-fold1.json", "run.json"]
    assert _bench(torchrun, paste_stores, tmp_path / "two") == two  # resumed from the fold log, nothing retrained


def test_bench_all_refuses_torchrun(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from lungforge.cli.main import app

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    result = CliRunner().invoke(app, ["bench", "all", "--real", str(tmp_path / "real.zarr"), "--controls", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "bench all runs in one process" in result.output
    assert not (tmp_path / "r").exists()
