"""Fault rows of issue 19's small items: one-line errors, bounds before anything is made, export disk full,
view --out, workers, benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .lab import ROOT, TIMEOUT_S, Lab, Outcome, fault, first_line, usage

# --- issue 19: small items (13: one-line errors, bounds before anything is made; 14: export disk full, view --out, workers, benchmarks) ---
# Run lungforge with every file opened for writing under a `.partial` folder, after the first
# AFTER, failing its writes with ENOSPC and no file name (as PIL's and json's writes report it).
FULL_DISK = """
import builtins, errno, io, os, sys
real_open, after, count = builtins.open, int(sys.argv[1]), [0]
class Full:
    def __init__(self, f): self._f = f
    def write(self, data): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    def __getattr__(self, name): return getattr(self._f, name)
    def __enter__(self): return self
    def __exit__(self, *exc): self._f.close()
def full_open(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    if any(c in mode for c in "wax+") and ".partial" in str(file):
        count[0] += 1
        if count[0] > after:
            return Full(f)
    return f
builtins.open = io.open = full_open
sys.argv = ["lungforge", *sys.argv[2:]]
from lungforge.cli.main import run
run()
"""


def _truncated_json(lab: Lab, store: Path, array: str) -> Path:
    """A copy of `store` whose `array/zarr.json` is cut in half."""
    copy = lab.store_copy(store)
    meta = copy / array / "zarr.json"
    meta.write_bytes(meta.read_bytes()[: meta.stat().st_size // 2])
    return copy


for _name, _args in [
    ("info", lambda lab, s: ["info", s]),
    ("info --verify", lambda lab, s: ["info", s, "--verify"]),
    ("augment --data", lambda lab, s: ["augment", "--data", s, "--weights", "paste", "--out", lab.path("s.zarr"), "--nodules", "2"]),
    ("export", lambda lab, s: ["export", s, "--format", "png", "--out", lab.path("png")]),
    ("view", lambda lab, s: ["view", s, "--out", lab.path("v.png")]),
    ("bench fid", lambda lab, s: ["bench", "fid", "--real", s, "--synthetic", lab.synth, "--features", "random", "--device", "cpu"]),
]:
    fault("store", f"truncated image/zarr.json: {_name} (issue 19.13)", "1")(
        lambda lab, args=_args: usage(lab, *args(lab, _truncated_json(lab, lab.real, "image")))
    )


def nothing_made(lab: Lab, *args: object) -> Outcome:
    """A usage error expected before anything is written: lost = something appeared at an `out` path."""
    outs = [a for a in args if isinstance(a, Path) and not a.exists()]
    call = lab.cli(*args)
    made = [p.name for p in outs if p.exists() or p.with_name(p.name + ".lock").exists()]
    return Outcome(str(call.code), call.stderr, bool(made), note=f"left: {', '.join(made)}" if made else "")


for _name, _fn in [
    (
        "phantom --seed -1 (issue 19.13)",
        lambda lab: nothing_made(lab, "phantom", lab.path("ph"), "--scans", "2", "--size", "32", "--seed", "-1"),
    ),
    ("prepare --seed -1 (issue 19.13)", lambda lab: nothing_made(lab, "prepare", lab.luna, "--out", lab.path("r.zarr"), "--seed", "-1")),
    (
        "augment --seed -1 (issue 19.13)",
        lambda lab: nothing_made(
            lab,
            "augment",
            "--data",
            lab.real,
            "--weights",
            "mislabeled",
            "--shape",
            "sphere",
            "--out",
            lab.path("s.zarr"),
            "--nodules",
            "2",
            "--seed",
            "-1",
        ),
    ),
    (
        "bench detect --seed -1 (issue 19.13)",
        lambda lab: nothing_made(
            lab, "bench", "detect", "--real", lab.real, "--synthetic", f"S={lab.synth}", "--quick", "--out", lab.path("b"), "--seed", "-1"
        ),
    ),
    (
        "bench fid --seed 2**63 (issue 19.13)",
        lambda lab: nothing_made(
            lab, "bench", "fid", "--real", lab.real, "--synthetic", lab.synth, "--features", "random", "--seed", str(2**63)
        ),
    ),
    (
        "train sdm --seed -1 (issue 19.13)",
        lambda lab: nothing_made(lab, "train", "sdm", "--data", lab.real, "--out", lab.path("run"), "--seed", "-1"),
    ),
    (
        "augment --nodules 10**12 (issue 19.13)",
        lambda lab: nothing_made(
            lab,
            "augment",
            "--data",
            lab.real,
            "--weights",
            "demo-spade-tiny",
            "--out",
            lab.path("s.zarr"),
            "--nodules",
            str(10**12),
            "--shape",
            "sphere",
            "--device",
            "cpu",
        ),
    ),
    (
        "augment --size 60000 (issue 19.13)",
        lambda lab: nothing_made(
            lab,
            "augment",
            "--data",
            lab.real,
            "--weights",
            "mislabeled",
            "--shape",
            "sphere",
            "--out",
            lab.path("s.zarr"),
            "--nodules",
            "2",
            "--size",
            "60000",
        ),
    ),
    (
        "export --size 60000 (issue 19.13)",
        lambda lab: nothing_made(lab, "export", lab.real, "--format", "png", "--out", lab.path("png"), "--size", "60000"),
    ),
    ("view --tile 100000 (issue 19.13)", lambda lab: nothing_made(lab, "view", lab.real, "--out", lab.path("v.png"), "--tile", "100000")),
    (
        "view --index 0-99999999999 (issue 19.13)",
        lambda lab: nothing_made(lab, "view", lab.real, "--out", lab.path("v.png"), "--index", "0-99999999999"),
    ),
]:
    fault("options", _name, "2")(_fn)


@fault("writes", "export: disk full names it, removes .partial (issue 19.14)", "1")
def _(lab: Lab) -> Outcome:
    out = lab.path("png")
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "5", "export", lab.real, "--format", "png", "--out", out],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    left = sorted(p.name for p in out.parent.glob(f".{out.name}*"))
    named = out.name in first_line(proc.stderr)
    note = ", ".join(([f"left {', '.join(left)}"] if left else []) + ([] if named else ["path not named"]))
    return Outcome(str(proc.returncode), proc.stderr, out.exists(), note=note, extra_ok=not left and named)


@fault("messages", "view --out DIR names DIR, leaves no temp file (issue 19.14)", "1")
def _(lab: Lab) -> Outcome:
    folder = lab.path("sheets")
    folder.mkdir()
    call = lab.cli("view", lab.real, "--out", folder)
    stray = sorted(p.name for p in folder.parent.glob(f".{folder.name}*"))
    named = f"{folder.name}:" in first_line(call.stderr) and ".tmp" not in first_line(call.stderr)
    note = ", ".join(([f"left {', '.join(stray)}"] if stray else []) + ([] if named else ["DIR not named"]))
    return Outcome(str(call.code), call.stderr, False, note=note, extra_ok=not stray and named)


@fault("messages", "export error: no empty line first (issue 19.14)", "1")
def _(lab: Lab) -> Outcome:
    folder = lab.path("mine")
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    call = lab.cli("export", lab.real, "--format", "png", "--out", folder)
    starts = call.stderr.startswith("error:")
    return Outcome(
        str(call.code),
        call.stderr,
        not (folder / "thesis.txt").is_file(),
        note="" if starts else "stderr starts with an empty line",
        extra_ok=starts,
    )


@fault("options", "prepare --workers 64: capped, with a note (issue 19.14)", "0")
def _(lab: Lab) -> Outcome:
    call = lab.cli("prepare", lab.luna, "--out", lab.path("r.zarr"), "--test-patients", "2", "--workers", "64", "--json")
    cap = min(len(os.sched_getaffinity(0)), len(lab.scans(lab.luna)))
    try:
        used = json.loads(call.stdout).get("workers")
    except ValueError:
        used = None
    noted = "--workers 64" in call.stderr
    return Outcome(
        str(call.code),
        call.stderr,
        False,
        note=f"workers used {used} (cap {cap}), note {'shown' if noted else 'missing'}",
        extra_ok=used is not None and used <= cap and noted,
    )


@fault("benchmarks", "benchmarks/augment.py on today's phantom (issue 19.14)", "0")
def _(lab: Lab) -> Outcome:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "augment.py"),
            "--scans",
            "3",
            "--nodules",
            "2",
            "--nodule-free",
            "1",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    return Outcome(str(proc.returncode), proc.stderr, False)
