"""Fault rows of issue 19: stores that change underneath, content fingerprints, box checks, locks, model bounds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .lab import ROOT, TIMEOUT_S, Call, Lab, Outcome, digest, fault, usage
from .rows_processes import fold_metrics


# --- issue 19: stores that change underneath, content fingerprints, box checks, locks, model bounds ---
def cli_env(lab: Lab, env: dict[str, str], *args: object) -> Call:
    """Run `lungforge ARGS` with `env` added to the lab's environment."""
    proc = subprocess.run(
        [sys.executable, "-m", "lungforge", *map(str, args)],
        capture_output=True,
        text=True,
        env={**lab.env, **env},
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    return Call(proc.returncode, proc.stdout, proc.stderr)


def _rewrite(store: Path, name: str, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite array `name` of `store` through zarr: valid checksums, every chunk kept (what a script would do)."""
    import zarr

    array = zarr.open_array(str(store / name), mode="r+").with_config({"write_empty_chunks": True})
    array[...] = edit(array[...])


def _long_augment(lab: Lab, out: Path, data: Path) -> list[object]:
    """An augment that runs long enough (tens of seconds) for another command to start beside it."""
    return [
        "augment",
        "--data",
        data,
        "--weights",
        "demo-sdm-tiny",
        "--out",
        out,
        "--nodules",
        "12",
        "--shape",
        "sphere",
        "--sampler",
        "ddim",
        "--steps",
        "10",
        "--batch-size",
        "4",
        "--shard-size",
        "4",
        "--device",
        "cpu",
    ]


def _wait_for(proc: subprocess.Popen, condition: Callable[[], bool]) -> bool:
    """Wait until `condition()` holds while `proc` runs; False if `proc` ended first."""
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@fault("store", "prepare --overwrite of --data while augment reads it (19.1)", "1")
def _(lab: Lab) -> Outcome:
    data = lab.store_copy(lab.real)
    before = digest(data)
    out = lab.path("s.zarr")
    reader = lab.start(*_long_augment(lab, out, data))
    running = _wait_for(reader, lambda: (out / "parts").is_dir())
    writer = lab.cli("prepare", lab.luna, "--out", data, "--test-patients", "2", "--seed", "5", "--overwrite")
    _, err = reader.communicate()
    mixed = reader.returncode == 0 and digest(data) != before
    note = f"augment exit {reader.returncode}" + ("" if running else "; augment ended before prepare started (inconclusive)")
    return Outcome(str(writer.code), writer.stderr + err, mixed, note=note, extra_ok=running and "is reading this store" in writer.stderr)


@fault("store", "zeroed images of a copied store: info --verify (19.2)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    _rewrite(copy, "image", np.zeros_like)
    return usage(lab, "info", copy, "--verify")


@fault("store", "zeroed real store: bench takes its old synthetic store (19.2)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    _rewrite(copy, "image", np.zeros_like)
    return usage(lab, "bench", "fid", "--real", copy, "--synthetic", lab.synth, "--features", "random", "--device", "cpu")


@fault("store", "bench rerun into one --out after --real changed (19.2)", "0 then 1")
def _(lab: Lab) -> Outcome:
    copy, out = lab.store_copy(lab.real), lab.path("bench")
    args = ["bench", "detect", "--real", copy, "--quick", "--folds", "2", "--out", out, "--device", "cpu"]
    first = lab.cli(*args)
    folds = fold_metrics(out)
    _rewrite(copy, "image", np.zeros_like)
    again = lab.cli(*args)
    cached = again.code == 0 and fold_metrics(out) == folds
    return Outcome(
        f"{first.code} then {again.code}", first.stderr + again.stderr, cached, note="old folds returned for new data" if cached else ""
    )


@fault("store", "image shards from another store of the same size: info --verify (19.4)", "1")
def _(lab: Lab) -> Outcome:
    other = lab.path("other.zarr")  # same scans, another --seed: other nodule-free slices, same count
    lab.cli("prepare", lab.luna, "--out", other, "--test-patients", "2", "--seed", "5")
    copy = lab.store_copy(lab.real)
    shutil.rmtree(copy / "image" / "c")
    shutil.copytree(other / "image" / "c", copy / "image" / "c")
    return usage(lab, "info", copy, "--verify")


@fault("store", "boxes moved off their nodules: info --verify (19.4)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    _rewrite(copy, "nodules/bbox", lambda b: np.where(np.arange(len(b))[:, None] % 3 == 0, b + [12, 12, 12, 12], b).astype(b.dtype))
    return usage(lab, "info", copy, "--verify")


@fault("concurrent", "--out alias.zarr --resume beside a run into race.zarr (19.6)", "1")
def _(lab: Lab) -> Outcome:
    race = lab.path("race.zarr")
    alias = race.with_name(race.name.replace("race", "alias"))
    first = lab.start(*_long_augment(lab, race, lab.real))
    running = _wait_for(first, lambda: (race / "parts").is_dir())
    alias.symlink_to(race)
    second = lab.cli(*_long_augment(lab, alias, lab.real), "--resume")
    _, err = first.communicate()
    refused = "is writing this store" in second.stderr
    note = f"first run exit {first.returncode}" + ("" if running else "; it ended before the alias run started (inconclusive)")
    note += "" if refused or second.code != 1 else "; the alias run was not refused by the lock: it failed racing the first"
    return Outcome(str(second.code), second.stderr + err, first.returncode != 0, note=note, extra_ok=running and refused)


def _peak(lab: Lab, *args: object) -> tuple[Call, float, float]:
    """Run `lungforge ARGS`; (its call, seconds, peak resident memory in MB of that process alone)."""
    started = time.perf_counter()
    proc = lab.start(*args)
    _, status, usage_ = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()
    return Call(proc.returncode, out, err), seconds, usage_.ru_maxrss / 1024


@fault("checkpoint", "SPADE config ngf=256 (memory bomb): weights import (19.7)", "1")
def _(lab: Lab) -> Outcome:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = ROOT / "weights" / "demo-spade-tiny.safetensors"
    bomb = lab.path("bomb.safetensors")
    with safe_open(str(source), "pt") as fh:
        metadata = fh.metadata()
    config = json.loads(metadata["lungforge_config"])
    config["model_config"]["ngf"] = 256
    metadata["lungforge_config"] = json.dumps(config)
    save_file(load_file(source), str(bomb), metadata=metadata)
    call, seconds, peak_mb = _peak(lab, "weights", "import", bomb, "--name", "bomb")
    return Outcome(str(call.code), call.stderr, False, note=f"{seconds:.0f} s, peak {peak_mb:,.0f} MB", extra_ok=peak_mb < 1500)


def misregistered(lab: Lab) -> dict[str, str]:
    """A manifest registering the shipped SPADE demo file under kind `sdm`, and a fresh home."""
    folder = lab.path("manifest")
    folder.mkdir()
    source = ROOT / "weights" / "demo-spade-tiny.safetensors"
    shutil.copy(source, folder / source.name)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    (folder / "manifest.toml").write_text(
        f'[weights.misreg]\nkind = "sdm"\npreset = "tiny"\npath = "{source.name}"\nsha256 = "{sha}"\nsize = {source.stat().st_size}\n'
    )
    return {"LUNGFORGE_MANIFEST": str(folder / "manifest.toml"), "LUNGFORGE_HOME": str(folder / "home")}


@fault("checkpoint", "SPADE file registered as kind sdm: weights verify (19.7)", "1")
def _(lab: Lab) -> Outcome:
    call = cli_env(lab, misregistered(lab), "weights", "verify", "misreg")
    return Outcome(str(call.code), call.stderr + call.stdout, False)


@fault("checkpoint", "SPADE file registered as kind sdm: augment --sampler ddim (19.7)", "1")
def _(lab: Lab) -> Outcome:
    out = lab.path("s.zarr")
    call = cli_env(
        lab,
        misregistered(lab),
        "augment",
        "--data",
        lab.real,
        "--weights",
        "misreg",
        "--out",
        out,
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--sampler",
        "ddim",
        "--device",
        "cpu",
    )
    return Outcome(str(call.code), call.stderr, False, note="the SPADE ran, --sampler ignored" if call.code == 0 else "")
