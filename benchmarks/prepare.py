"""Prepare throughput vs merely reading the same scans with SimpleITK, side by side in one run.

    python benchmarks/prepare.py --scans 6 --size 512 --workers 2 --json

Prints {"scans", "seconds", "read_seconds", "ratio", "peak_rss_mb", ...}; the target is
ratio ≤ 3 with --workers 2 (preparation should cost at most three times reading the scans).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import SimpleITK as sitk

from lungforge.luna16.scans import discover_scans
from lungforge.phantom.scans import make_phantom
from lungforge.preparation.pipeline import PrepareOptions, prepare


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=6, help="phantom scans to generate")
    parser.add_argument("--size", type=int, default=512, help="in-plane size in pixels")
    parser.add_argument("--workers", type=int, default=2, help="prepare worker processes")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "luna16"
        make_phantom(root, scans=args.scans, size=args.size, seed=0)
        refs = discover_scans(root)

        started = time.perf_counter()
        voxels = 0
        for ref in refs:
            voxels += sitk.GetArrayFromImage(sitk.ReadImage(str(ref.mhd))).size
        read_seconds = time.perf_counter() - started

        options = PrepareOptions(test_patients=0.2, workers=args.workers)
        started = time.perf_counter()
        report = prepare(root, Path(tmp) / "real.zarr", options)
        seconds = time.perf_counter() - started

    peak_kb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    result = {
        "scans": len(refs),
        "size": args.size,
        "voxels": voxels,
        "workers": args.workers,
        "slices_written": report.slices,
        "seconds": round(seconds, 3),
        "read_seconds": round(read_seconds, 3),
        "ratio": round(seconds / read_seconds, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>16}: {value}")
    sys.exit(0)


if __name__ == "__main__":
    main()
