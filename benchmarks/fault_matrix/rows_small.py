"""Fault rows of issue 27, items 7 and 8: bench on a full disk, undefined metrics, reruns into one --out; coco and
nnU-Net exports and the tests of the tools that read them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from .lab import ROOT, TIMEOUT_S, Call, Lab, Outcome, digest, fault, first_line
from .rows_issue19_inputs import coco_files
from .rows_issue19_small import nothing_made
from .rows_issue19_stores import cli_env

# --- branch smaller (issue 27, items 7 and 8): group round3-small ---
# Run lungforge with a file size limit of LIMIT bytes (what `ulimit -f` does: writes past it fail with EFBIG).
FILE_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = ["lungforge", *sys.argv[2:]]
from lungforge.cli.main import run
run()
"""


def _limited(lab: Lab, limit: int, *args: object) -> Call:
    """Run `lungforge ARGS` unable to write a file past `limit` bytes."""
    proc = subprocess.run(
        [sys.executable, "-c", FILE_LIMIT, str(limit), *map(str, args)],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    return Call(proc.returncode, proc.stdout, proc.stderr)


def _quick_detect(lab: Lab, out: Path, *extra: object) -> list[object]:
    return ["bench", "detect", "--real", lab.real, "--quick", "--size", "64", "--out", out, "--device", "cpu", *extra]


@fault("round3-small", "bench --real-nodules ² (27.7)", "2")
def _(lab: Lab) -> Outcome:
    out = nothing_made(lab, *_quick_detect(lab, lab.path("b"), "--real-nodules", "4,²"))
    clear = "--real-nodules" in out.stderr and "'²'" in out.stderr and "invalid literal" not in out.stderr
    return Outcome(out.code, out.stderr, out.lost, note=out.note, extra_ok=clear)


@fault("round3-small", "bench --real-nodules above the folds' nodules (27.7)", "1")
def _(lab: Lab) -> Outcome:
    out = nothing_made(lab, *_quick_detect(lab, lab.path("b"), "--real-nodules", "1,9999,all"))
    counted = "--real-nodules 9999:" in out.stderr and "real nodules" in out.stderr
    return Outcome(out.code, out.stderr, out.lost, note=out.note, extra_ok=counted)


@fault("round3-small", "bench detect on a full disk names the file, then resumes (27.7)", "1 then 0")
def _(lab: Lab) -> Outcome:
    out = lab.path("bench-full")
    full = _limited(lab, 0, *_quick_detect(lab, out))
    named = f"{out.name}{os.sep}detect{os.sep}" in first_line(full.stderr) and ".json: cannot write" in first_line(full.stderr)
    again = lab.cli(*_quick_detect(lab, out))
    return Outcome(
        f"{full.code} then {again.code}",
        full.stderr + again.stderr,
        False,
        note="" if named else "file not named",
        extra_ok=named and again.code == 0,
    )


@fault("round3-small", "bench fidelity: segmenter cache on a full disk (27.7)", "1")
def _(lab: Lab) -> Outcome:
    real = lab.store_copy(lab.real)  # the cache goes beside --real: keep it off the shared store
    call = _limited(
        lab,
        100_000,
        "bench",
        "fidelity",
        "--real",
        real,
        "--synthetic",
        f"S={lab.synth}",
        "--size",
        "64",
        "--quick",
        "--segmenter-steps",
        "3",
        "--device",
        "cpu",
    )
    named = ".safetensors: cannot write" in first_line(call.stderr)
    stray = sorted(p.name for p in real.with_name(real.stem + ".fidelity").glob("*.tmp"))
    return Outcome(
        str(call.code), call.stderr, False, note=", ".join((["file not named"] if not named else []) + stray), extra_ok=named and not stray
    )


@fault("round3-small", "bench fold files are strict JSON, NaN as null (27.7)", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("bench-json")
    call = lab.cli(*_quick_detect(lab, out))
    bare, nulls = [], 0
    for path in sorted(out.rglob("*-fold*.json")):
        try:
            row = json.loads(path.read_text(), parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
            nulls += sum(v is None for v in row.values())
        except ValueError:
            bare.append(path.name)
    note = f"bare NaN in {', '.join(bare)}" if bare else f"{nulls} undefined metrics written as null"
    return Outcome(str(call.code), call.stderr, bool(bare), note=note)


@fault("round3-small", "bench all --controls rerun with another --real (27.7)", "0 then 1")
def _(lab: Lab) -> Outcome:
    other, out = lab.path("other.zarr"), lab.path("bench-all")
    lab.cli("prepare", lab.luna, "--out", other, "--test-patients", "3")
    args = [
        "--out",
        out,
        "--controls",
        "--quick",
        "--size",
        "64",
        "--patch",
        "16",
        "--features",
        "random",
        "--segmenter-steps",
        "3",
        "--device",
        "cpu",
        "--allow-empty-synthetic",
    ]
    first = lab.cli("bench", "all", "--real", lab.real, *args)
    again = lab.cli("bench", "all", "--real", other, *args)
    line = first_line(again.stderr)
    named = f"made from real store {lab.real}" in again.stderr and f"--real {other}" in again.stderr and "shards" not in line
    return Outcome(
        f"{first.code} then {again.code}", first.stderr + again.stderr, False, note="" if named else "stores not named", extra_ok=named
    )


@fault("round3-small", "export coco --size 8: every box has its mask (27.8)", "0")
def _(lab: Lab) -> Outcome:
    from pycocotools import mask as mask_utils

    out = lab.path("coco8")
    call = lab.cli("export", lab.real, "--format", "coco", "--out", out, "--size", "8", "--json")
    empty = off = total = 0
    for doc in coco_files(out).values():
        for ann in doc["annotations"]:
            total += 1
            mask = mask_utils.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}).astype(bool)
            if not mask.any():
                empty += 1
                continue
            ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            off += ann["bbox"] != [float(xs[0]), float(ys[0]), float(xs[-1] + 1 - xs[0]), float(ys[-1] + 1 - ys[0])]
    kept = json.loads(call.stdout).get("nodules_kept_as_pixel") if call.code == 0 else None
    return Outcome(
        str(call.code),
        call.stderr,
        bool(empty or off),
        note=f"{total} boxes: {empty} with an empty mask, {off} not their mask's box; {kept} kept as one pixel",
    )


@fault("round3-small", "export nnunet: id taken in $nnUNet_preprocessed (27.8)", "0 then 1")
def _(lab: Lab) -> Outcome:
    raw, preprocessed = lab.path("nnUNet_raw"), lab.path("nnUNet_preprocessed")
    (preprocessed / "Dataset501_Other").mkdir(parents=True)
    env = {"nnUNet_raw": str(raw), "nnUNet_preprocessed": str(preprocessed), "nnUNet_results": str(lab.path("nnUNet_results"))}
    picked = cli_env(lab, env, "export", lab.real, "--format", "nnunet", "--out", raw, "--json")
    folder = Path(json.loads(picked.stdout)["out"]).name if picked.code == 0 else "-"
    clash = cli_env(lab, env, "export", lab.real, "--format", "nnunet", "--out", raw, "--dataset-id", "501", "--dataset-name", "Mine")
    named = "Dataset501_Other in" in first_line(clash.stderr)
    return Outcome(
        f"{picked.code} then {clash.code}",
        picked.stderr + clash.stderr,
        folder.startswith("Dataset501_"),
        note=f"picked {folder}" + ("" if named else "; clash not named"),
        extra_ok=named,
    )


@fault("round3-small", "export nnunet twice with the default name (27.8)", "0 then 1")
def _(lab: Lab) -> Outcome:
    raw = lab.path("nnUNet_raw")
    first = lab.cli("export", lab.real, "--format", "nnunet", "--out", raw)
    before = digest(raw / "Dataset501_Lungforge")
    second = lab.cli("export", lab.synth, "--format", "nnunet", "--out", raw)
    line = first_line(second.stderr)
    safe = "--dataset-name" in line and ("--overwrite" not in line or line.index("--dataset-name") < line.index("--overwrite"))
    return Outcome(
        f"{first.code} then {second.code}",
        first.stderr + second.stderr,
        digest(raw / "Dataset501_Lungforge") != before,
        note="" if safe else "refusal does not name --dataset-name first",
        extra_ok=safe,
    )


@fault("round3-small", "export consumer tests run, --size included (27.8)", "0")
def _(lab: Lab) -> Outcome:
    ci = (ROOT / ".ci" / "run").read_text()
    installs = "export-tools" in ci and "torch==" in ci
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(ROOT / "tests" / "export" / "test_consumers.py")],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=ROOT,
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    skipped = "skipped" in tail
    return Outcome(
        str(proc.returncode),
        proc.stderr if proc.returncode else "",
        False,
        note=f"{tail}; .ci/run {'installs' if installs else 'lacks'} export-tools",
        extra_ok=installs and not skipped,
    )
