"""Fault rows of issue 27, items 3-6: option bounds refused before anything is made, a full disk while train saves,
weights that make NaN images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .lab import ROOT, TIMEOUT_S, Lab, Outcome, fault, first_line, store_complete
from .rows_issue19_small import nothing_made

# --- branch bounds: issue 27 items 3-6 (group "round3-bounds") ---------------------------------------
TRAIN_FULL_DISK = """
import errno, os, sys
import torch
after, save, count = int(sys.argv[1]), torch.save, [0]
def full_save(obj, f, *args, **kwargs):
    count[0] += 1
    if count[0] > after:
        with open(f, "wb") as fh:
            fh.write(b"\\0" * 64)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save(obj, f, *args, **kwargs)
torch.save = full_save
sys.argv = ["lungforge", *sys.argv[2:]]
from lungforge.cli.main import run
run()
"""


def _says(outcome: Outcome, *texts: str) -> Outcome:
    """`outcome`, failing unless its stderr (whitespace folded) holds every one of `texts`."""
    folded = " ".join(outcome.stderr.replace("│", " ").split())
    missing = [t for t in texts if t not in folded]
    return Outcome(
        outcome.code,
        outcome.stderr,
        outcome.lost,
        note=f"message lacks {missing[0]!r}" if missing else outcome.note,
        extra_ok=outcome.extra_ok and not missing,
    )


def _inpaint_args(lab: Lab, *opts: str) -> list[object]:
    return ["train", "sdm", "--data", lab.real, "--out", lab.path("run"), "--preset", "tiny", "--steps", "2", "--device", "cpu", *opts]


def _augment_bounds(lab: Lab, *opts: str) -> list[object]:
    return [
        "augment",
        "--data",
        lab.real,
        "--weights",
        "demo-sdm-tiny",
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--steps",
        "2",
        "--device",
        "cpu",
        *opts,
    ]


def _no_store(lab: Lab, *opts: str) -> Outcome:
    """An augment refused after its inputs were read: lost = a store appeared at `--out` (its
    lock file, left by design, aside)."""
    args = _augment_bounds(lab, *opts)
    call = lab.cli(*args)
    out = args[args.index("--out") + 1]
    return Outcome(str(call.code), call.stderr, Path(out).exists())


for _name, _expected, _fn in [
    (
        "train --inpaint --window 16 --edit-margin 8: no room for a nodule",
        "2",
        lambda lab: _says(
            nothing_made(lab, *_inpaint_args(lab, "--inpaint", "--window", "16", "--edit-margin", "8")),
            "largest margin for --window 16 is 6",
        ),
    ),
    (
        "train --inpaint --window 16 --edit-margin 100",
        "2",
        lambda lab: _says(
            nothing_made(lab, *_inpaint_args(lab, "--inpaint", "--window", "16", "--edit-margin", "100")),
            "edit margin 100 px leaves no room",
        ),
    ),
    (
        "train --inpaint --window 15: exit 2 before work",
        "2",
        lambda lab: _says(nothing_made(lab, *_inpaint_args(lab, "--inpaint", "--window", "15")), "--window 15"),
    ),
    (
        "train --edit-margin 7 without --inpaint",
        "2",
        lambda lab: _says(nothing_made(lab, *_inpaint_args(lab, "--edit-margin", "7")), "--edit-margin needs --inpaint"),
    ),
    (
        "train --steps 10**20",
        "2",
        lambda lab: _says(nothing_made(lab, *_inpaint_args(lab, "--steps", str(10**20))), "steps must be in 1..10000000"),
    ),
    (
        "augment --guidance 1e308",
        "2",
        lambda lab: _says(nothing_made(lab, *_augment_bounds(lab, "--guidance", "1e308")), "guidance must be in 0.0..20.0"),
    ),
    (
        "augment --guidance nan says 'finite'",
        "2",
        lambda lab: _says(nothing_made(lab, *_augment_bounds(lab, "--guidance", "nan")), "must be a finite number, got nan"),
    ),
    (
        "augment --diameter 1e20:1e20",
        "2",
        lambda lab: _says(nothing_made(lab, *_augment_bounds(lab, "--diameter", "1e20:1e20")), "MAX <= 100"),
    ),
    (
        "augment --diameter 0.001:0.002 (below one pixel)",
        "1",
        lambda lab: _says(_no_store(lab, "--diameter", "0.001:0.002"), "MIN is below one pixel"),
    ),
    (
        "bench detect --epochs 10**20",
        "2",
        lambda lab: _says(
            nothing_made(lab, "bench", "detect", "--real", lab.real, "--out", lab.path("b"), "--epochs", "99999999999999999999"),
            "Invalid value for '--epochs'",  # Typer applies the config's bound (MAX_EPOCHS)
        ),
    ),
    (
        "export --format coco --dataset-id 7",
        "2",
        lambda lab: _says(
            nothing_made(lab, "export", lab.real, "--format", "coco", "--out", lab.path("coco"), "--dataset-id", "7"),
            "applies to formats 'nnunet' and 'nnunet3d' only",
        ),
    ),
]:
    fault("round3-bounds", _name, _expected)(_fn)


@fault("round3-bounds", "train spade: disk full at the 2nd save, then --resume", "1 then 0")
def _(lab: Lab) -> Outcome:
    out = lab.path("run")
    args = [
        "train",
        "spade",
        "--data",
        lab.real,
        "--out",
        out,
        "--preset",
        "tiny",
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
        "--batch-size",
        "1",
        "--grid-samples",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    full = subprocess.run(
        [sys.executable, "-c", TRAIN_FULL_DISK, "1", *map(str, args)],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    stray = sorted(p.name for p in out.glob(".*.tmp")) if out.is_dir() else []
    again = lab.cli(*args, "--resume", "--json")
    try:
        start = json.loads(again.stdout).get("start_step")
    except ValueError:
        start = None
    named = "resume.pt: No space left on device" in first_line(full.stderr)
    note = f"resumed from step {start}" + (f", left {', '.join(stray)}" if stray else "") + ("" if named else ", file not named")
    return Outcome(f"{full.returncode} then {again.code}", full.stderr + again.stderr, start != 2, note=note, extra_ok=named and not stray)


@fault("round3-bounds", "augment with weights that make NaN images", "1")
def _(lab: Lab) -> Outcome:
    import torch

    from lungforge.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(ROOT / "weights" / "demo-spade-tiny.safetensors")
    broken = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}
    weights = save_checkpoint(
        lab.path("nan-spade"),
        kind="spade",
        preset=ckpt.preset,
        model_config=ckpt.config,
        state_dict=broken,
        step=ckpt.step,
        store_fingerprint=None,
    )
    out = lab.path("s.zarr")
    call = lab.cli(
        "augment", "--data", lab.real, "--weights", weights, "--out", out, "--nodules", "2", "--shape", "sphere", "--device", "cpu"
    )
    return _says(Outcome(str(call.code), call.stderr, store_complete(out)), "NaN or infinite pixels")
