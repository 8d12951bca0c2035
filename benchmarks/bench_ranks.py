"""`bench detect` in one process against the same run under torchrun: wall time and the JSON's equality.

    python benchmarks/bench_ranks.py                          # 12-scan 96-px phantom, 4 folds, 2 CPU ranks
    python benchmarks/bench_ranks.py --ranks 4 --epochs 20    # more ranks, longer folds
    python benchmarks/bench_ranks.py --device cuda --ranks 2  # one GPU per rank (needs 2 GPUs)

Builds a phantom, its real store and a `paste` store in a temporary folder, runs `lungforge bench
detect` once as a single process and once as `torchrun --nproc-per-node RANKS` (each rank trains
whole (fold, condition) runs; rank 0 reports), with one intra-op thread per process on CPU, and
prints one JSON line: both wall times, their ratio and whether the two JSON results are identical
(per-fold `seconds` aside). Ideal speed-up is RANKS when folds × conditions divides evenly and the
machine has a core (or GPU) per rank; process start-up and data loading are paid once per rank.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lungforge(*args: object, launcher: tuple[str, ...] = (sys.executable,)) -> tuple[str, float]:
    """Run `lungforge ARGS` (stdout, wall seconds); exits with its stderr on failure."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    done = subprocess.run([*launcher, "-m", "lungforge", *map(str, args)], capture_output=True, text=True, env=env)
    if done.returncode:
        sys.exit(f"lungforge {' '.join(map(str, args[:2]))} failed (exit {done.returncode}):\n{done.stderr.strip()[-4000:]}")
    return done.stdout, time.perf_counter() - started


def without_seconds(text: str) -> dict:
    """The JSON of `bench detect` without the per-fold wall times."""
    result = json.loads(text)
    for rows in result["folds"].values():
        for row in rows:
            row.pop("seconds", None)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, default=2, help="torchrun processes (default 2).")
    parser.add_argument("--scans", type=int, default=12, help="Phantom scans (default 12).")
    parser.add_argument("--size", type=int, default=96, help="Phantom and bench size in pixels (default 96).")
    parser.add_argument("--folds", type=int, default=4, help="Cross-validation folds (default 4).")
    parser.add_argument("--epochs", type=int, default=6, help="Detection epochs per fold and condition (default 6).")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="Device of every rank (default cpu).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ranks-") as tmp:
        work = Path(tmp)
        lungforge("phantom", work / "luna16", "--scans", args.scans, "--size", args.size, "--seed", 0)
        lungforge("prepare", work / "luna16", "--out", work / "real.zarr", "--json")
        lungforge(
            "augment",
            "--data",
            work / "real.zarr",
            "--weights",
            "paste",
            "--out",
            work / "paste.zarr",
            "--nodules",
            4 * args.scans,
            "--nodule-free",
            args.scans,
            "--device",
            "cpu",
            "--json",
        )
        bench = (
            "bench",
            "detect",
            "--real",
            work / "real.zarr",
            "--synthetic",
            f"paste={work / 'paste.zarr'}",
            "--folds",
            args.folds,
            "--epochs",
            args.epochs,
            "--batch-size",
            32,
            "--depth",
            8,
            "--size",
            args.size,
            "--patch",
            16,
            "--device",
            args.device,
            "--json",
        )
        single, single_s = lungforge(*bench)
        torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(args.ranks))
        shared, shared_s = lungforge(*bench, launcher=torchrun)
    print(
        json.dumps(
            {
                "ranks": args.ranks,
                "device": args.device,
                "folds": args.folds,
                "runs": args.folds * 2,
                "single_s": round(single_s, 2),
                "ranks_s": round(shared_s, 2),
                "speedup": round(single_s / shared_s, 3),
                "identical": without_seconds(single) == without_seconds(shared),
            }
        )
    )


if __name__ == "__main__":
    main()
