"""Fault rows: kill -9 and resume, resumes that must match their inputs (items 2, 3), concurrent writers (item 5)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np

from .lab import ROOT, Call, Lab, Outcome, augment_args, fault, same_store, series_of, set_field


# -- kill -9 and resume -------------------------------------------------------------------------
@fault("kill", "prepare killed mid-write, --resume", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("killed.zarr")
    killed, _ = lab.kill_when(lambda: (out / "image" / "c").exists(), "prepare", lab.luna, "--out", out, "--test-patients", "2")
    again = lab.cli("prepare", lab.luna, "--out", out, "--test-patients", "2", "--resume")
    return Outcome(str(again.code), again.stderr, not same_store(out, lab.real), note="" if killed else "finished before the kill")


@fault("kill", "prepare --workers 2 killed: workers exit (item 12)", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("killed.zarr")
    proc = lab.start("prepare", lab.luna, "--out", out, "--test-patients", "2", "--workers", "2")
    children: set[int] = set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and len(children) < 3:
        children = _descendants(proc.pid)
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 20
    while children & _live_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = children & _live_pids()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    again = lab.cli("prepare", lab.luna, "--out", out, "--test-patients", "2", "--resume")
    note = f"{len(left)} of {len(children)} child processes outlived the parent" if left else f"all {len(children)} child processes exited"
    return Outcome(str(again.code), again.stderr, not same_store(out, lab.real), note=note, extra_ok=not left and len(children) >= 3)


@fault("kill", "augment killed after a block, --resume", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("killed.zarr")
    killed, _ = lab.kill_when(lambda: (out / "parts" / "block-000000.npz").exists(), *augment_args(lab, out))
    again = lab.cli(*augment_args(lab, out), "--resume")
    return Outcome(str(again.code), again.stderr, not same_store(out, lab.synth), note="" if killed else "finished before the kill")


def _train_args(out: Path, real: Path) -> list[object]:
    return [
        "train",
        "spade",
        "--data",
        real,
        "--out",
        out,
        "--preset",
        "tiny",
        "--steps",
        "6",
        "--checkpoint-every",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]


@fault("kill", "train killed after a checkpoint, --resume", "0")
def _(lab: Lab) -> Outcome:
    from safetensors.torch import load_file

    clean, out = lab.path("run-clean"), lab.path("run-killed")
    lab.cli(*_train_args(clean, lab.real))
    killed, _ = lab.kill_when(lambda: (out / "resume.pt").exists(), *_train_args(out, lab.real))
    again = lab.cli(*_train_args(out, lab.real), "--resume")
    try:
        a, b = load_file(clean / "model.safetensors"), load_file(out / "model.safetensors")
        lost = a.keys() != b.keys() or any(not np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    except Exception:  # a missing or unreadable checkpoint is data lost
        lost = True
    return Outcome(str(again.code), again.stderr, lost, note="" if killed else "finished before the kill")


def _bench_args(lab: Lab, out: Path) -> list[object]:
    return [
        "bench",
        "detect",
        "--real",
        lab.real,
        "--synthetic",
        f"S={lab.synth}",
        "--quick",
        "--out",
        out,
        "--device",
        "cpu",
        "--allow-empty-synthetic",
    ]  # the demo SPADE copies nodules a quick fold may not keep: this row is about the kill


def fold_metrics(out: Path) -> dict[str, dict]:
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"} for p in sorted(out.rglob("*-fold*.json"))}


@fault("kill", "bench killed after a fold, rerun", "0")
def _(lab: Lab) -> Outcome:
    clean, out = lab.path("bench-clean"), lab.path("bench-killed")
    lab.cli(*_bench_args(lab, clean))
    killed, _ = lab.kill_when(lambda: any(out.rglob("A-fold0.json")), *_bench_args(lab, out))
    again = lab.cli(*_bench_args(lab, out))
    return Outcome(
        str(again.code),
        again.stderr,
        fold_metrics(clean) != fold_metrics(out) or not fold_metrics(out),
        note="" if killed else "finished before the kill",
    )


# -- resumes must match their inputs (items 2, 3) --------------------------------------------------
def _big_luna(lab: Lab) -> Path:
    """A 16-scan phantom: more than one shard of slices, so a killed prepare has commit records."""
    luna = lab.path("luna16-big")
    lab.cli("phantom", luna, "--scans", "16", "--size", "64")
    return luna


def _killed_prepare(lab: Lab, luna: Path) -> Path:
    """A prepare of `luna` killed right after its first commit record."""
    out = lab.path("killed.zarr")
    lab.kill_when(lambda: any((out / "parts").glob("*.npz")), "prepare", luna, "--out", out, "--test-patients", "2")
    return out


@fault("resume", "prepare --resume after a scan was added (item 2)", "1")
def _(lab: Lab) -> Outcome:
    luna = _big_luna(lab)
    out = _killed_prepare(lab, luna)
    v = lab.scans(luna)[0]
    for f in v.parent.glob(f"{v.stem}.*"):
        shutil.copy(f, v.parent / f.name.replace(v.stem, "1.0.0.first"))
    seg = luna / "seg-lungs-LUNA16"
    for f in seg.glob(f"{v.stem}.*"):
        shutil.copy(f, seg / f.name.replace(v.stem, "1.0.0.first"))
    for mhd in (v.parent / "1.0.0.first.mhd", seg / "1.0.0.first.mhd"):
        set_field(mhd, "ElementDataFile", mhd.with_suffix(".raw" if mhd.parent == v.parent else ".zraw").name)
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2", "--resume")
    uids = series_of(out)
    mixed = call.code == 0 and (uids is None or len(set(uids)) != len(uids) or "1.0.0.first" not in uids)
    return Outcome(str(call.code), call.stderr, mixed)


@fault("resume", "prepare --resume after a scan was removed (item 2)", "1")
def _(lab: Lab) -> Outcome:
    luna = _big_luna(lab)
    out = _killed_prepare(lab, luna)
    v = lab.scans(luna)[-1]
    for f in v.parent.glob(f"{v.stem}.*"):
        f.unlink()
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2", "--resume")
    return Outcome(str(call.code), call.stderr, call.code == 0)


def _killed_augment(lab: Lab) -> Path:
    out = lab.path("killed.zarr")
    lab.kill_when(lambda: (out / "parts" / "block-000000.npz").exists(), *augment_args(lab, out))
    return out


@fault("resume", "augment --resume with other --weights (item 3)", "1")
def _(lab: Lab) -> Outcome:
    out = _killed_augment(lab)
    args = [a if a != "demo-spade-tiny" else ROOT / "weights" / "demo-sdm-tiny.safetensors" for a in augment_args(lab, out)]
    call = lab.cli(*args, "--resume")
    return Outcome(str(call.code), call.stderr, call.code == 0)


@fault("resume", "augment --resume with other --data (item 3)", "1")
def _(lab: Lab) -> Outcome:
    out = _killed_augment(lab)
    other = lab.path("other.zarr")
    lab.cli("prepare", lab.luna, "--out", other, "--test-patients", "2", "--seed", "5")
    args = [a if a != lab.real else other for a in augment_args(lab, out)]
    call = lab.cli(*args, "--resume")
    return Outcome(str(call.code), call.stderr, call.code == 0)


# -- concurrent writers (item 5) -------------------------------------------------------------------
def together(lab: Lab, *argvs: list[object]) -> list[Call]:
    procs = [lab.start(*argv) for argv in argvs]
    streams = [p.communicate() for p in procs]
    return [Call(p.returncode, out, err) for p, (out, err) in zip(procs, streams)]


@fault("concurrent", "two weights import of one name (item 5)", "0/1")
def _(lab: Lab) -> Outcome:
    calls = together(
        lab, *[["weights", "import", ROOT / "weights" / f"demo-{k}-tiny.safetensors", "--name", "race"] for k in ("sdm", "spade")]
    )
    verify = lab.cli("weights", "verify", "race")
    codes = "/".join(str(c) for c in sorted(c.code for c in calls))
    return Outcome(codes, "".join(c.stderr for c in calls), verify.code != 0, note=f"verify exit {verify.code}")


@fault("concurrent", "two augment into one --out (item 5)", "0/1")
def _(lab: Lab) -> Outcome:
    out = lab.path("race.zarr")
    calls = together(lab, augment_args(lab, out), augment_args(lab, out))
    codes = "/".join(str(c) for c in sorted(c.code for c in calls))
    return Outcome(codes, "".join(c.stderr for c in calls), not same_store(out, lab.synth))


@fault("concurrent", "two prepare into one --out (item 5)", "0/1")
def _(lab: Lab) -> Outcome:
    out = lab.path("race.zarr")
    args = ["prepare", lab.luna, "--out", out, "--test-patients", "2"]
    calls = together(lab, args, args)
    codes = "/".join(str(c) for c in sorted(c.code for c in calls))
    return Outcome(codes, "".join(c.stderr for c in calls), not same_store(out, lab.real))


# -- process helpers ------------------------------------------------------------------------------
def _parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state != "Z":
            out[int(entry.name)] = int(ppid)
    return out


def _live_pids() -> set[int]:
    return set(_parents())


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found
