"""The fault matrix (issue 13): hostile inputs, options, stores, kills and races, as a user meets them.

    python benchmarks/faults.py                 # table on stderr-free stdout, totals last
    python benchmarks/faults.py --json          # one JSON object: rows and totals
    python benchmarks/faults.py --only resume   # rows whose group or name contains "resume"
    python benchmarks/faults.py --list          # the rows (group, fault, expected exit code), none run

Builds a 6-scan, 64-px phantom, a real store and a synthetic store (the shipped demo SPADE) in a
temporary folder, each when a row first needs it, and runs every fault as a `lungforge` subprocess (full disks and read-only
folders are simulated by making Zarr chunk writes raise the OSError). Per row: the exit code and
the expected one, the first line of the message, whether a traceback was printed, and whether
data were lost or mixed (a store valid before is no longer byte-identical, a resumed store is not
array-identical to an undisturbed run, a damaged scan was stored, or good scans went missing).
A row passes when the exit code is the expected one, with no traceback and no data lost.

The rows and their runner live in benchmarks/fault_matrix/; tests/faults/test_matrix.py runs the same
rows as slow-marked pytest cases.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from fault_matrix import FAULTS, Lab, Row, code_matches, run_row  # benchmarks/fault_matrix/, beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--only", default="", help="run only rows whose group or fault contains this text")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument(
        "--list", action="store_true", help="list the selected rows (group, fault, expected exit code) without running them"
    )
    args = parser.parse_args()
    selected = [row for row in FAULTS if not args.only or args.only in row[0] or args.only in row[1]]
    if args.list:
        for group, name, expected, _fn in selected:
            print(f"{group:<22} {name}  (want {expected})")
        return
    root = args.keep or Path(tempfile.mkdtemp(prefix="lungforge-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        lab = Lab(root)
        rows = []
        for group, name, expected, fn in selected:
            rows.append(run_row(lab, group, name, expected, fn))
            if not args.json:
                print(_format(rows[-1]), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    totals = {
        "faults": len(rows),
        "passed": sum(r.ok for r in rows),
        "failed": sum(not r.ok for r in rows),
        "tracebacks": sum(r.traceback for r in rows),
        "data_lost": sum(r.lost for r in rows),
        "wrong_exit_code": sum(not code_matches(r.code, r.expected) for r in rows),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows], "totals": totals}, indent=2))
        return
    print("failed: " + ("; ".join(f"{r.group}/{r.fault}" for r in rows if not r.ok) or "none"))
    print("totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))


def _format(row: Row) -> str:
    mark = "ok  " if row.ok else "FAIL"
    return (
        f"{mark} {row.group:<11} {row.fault[:52]:<52} exit {row.code:<8} (want {row.expected:<8}) "
        f"tb {'yes' if row.traceback else 'no ':<3} lost {'yes' if row.lost else 'no ':<3} | {row.message}"
        + (f" [{row.note}]" if row.note else "")
    )


if __name__ == "__main__":
    main()
