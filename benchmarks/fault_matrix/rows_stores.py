"""Fault rows: damaged stores and checkpoints, and chunk writes that fail (item 10)."""

from __future__ import annotations

import errno
import json
from collections.abc import Callable
from pathlib import Path

from .lab import ROOT, Lab, Outcome, augment_args, digest, fault, same_store, unchanged, usage


# -- stores -------------------------------------------------------------------------------------
@fault("store", "info on a missing store", "1")
def _(lab: Lab) -> Outcome:
    return usage(lab, "info", lab.path("none.zarr"))


@fault("store", "info on a folder that is not a store", "1")
def _(lab: Lab) -> Outcome:
    folder = lab.path("folder")
    folder.mkdir()
    return usage(lab, "info", folder)


@fault("store", "corrupt zarr.json", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    (copy / "zarr.json").write_text("{not json")
    return usage(lab, "info", copy)


@fault("store", "deleted shard: info --verify (item 4)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    next((copy / "image").rglob("c/*/*/*")).unlink()
    return usage(lab, "info", copy, "--verify")


@fault("store", "4 bytes overwritten: info --verify (item 4)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    shard = next((copy / "image").rglob("c/*/*/*"))
    data = bytearray(shard.read_bytes())
    data[100:104] = b"\xde\xad\xbe\xef"
    shard.write_bytes(bytes(data))
    return usage(lab, "info", copy, "--verify")


@fault("store", "deleted shard read by bench (item 4)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    next((copy / "image").rglob("c/*/*/*")).unlink()
    return usage(lab, "bench", "fid", "--real", copy, "--synthetic", lab.synth, "--features", "random", "--device", "cpu")


@fault("store", "augment --data a synthetic store", "1")
def _(lab: Lab) -> Outcome:
    return unchanged(
        lab,
        lab.synth,
        "augment",
        "--data",
        "STORE",
        "--weights",
        "demo-spade-tiny",
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
    )


@fault("store", "augment --out = --data --overwrite (item 1)", "1/2")
def _(lab: Lab) -> Outcome:
    return unchanged(
        lab,
        lab.real,
        "augment",
        "--data",
        "STORE",
        "--weights",
        "demo-spade-tiny",
        "--out",
        "STORE",
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--overwrite",
        "--device",
        "cpu",
    )


@fault("store", "augment --out inside --data (item 1)", "1/2")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    before = digest(copy)
    call = lab.cli(
        "augment",
        "--data",
        copy,
        "--weights",
        "demo-spade-tiny",
        "--out",
        copy / "inner.zarr",
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
    )
    stray = sorted(p.name for p in copy.rglob("*.lock"))
    return Outcome(
        str(call.code), call.stderr, digest(copy) != before, note=f"lock file left inside --data: {', '.join(stray)}" if stray else ""
    )


@fault("store", "prepare --out an unrelated folder", "1")
def _(lab: Lab) -> Outcome:
    folder = lab.path("mine")
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    call = lab.cli("prepare", lab.luna, "--out", folder, "--overwrite")
    return Outcome(str(call.code), call.stderr, not (folder / "thesis.txt").is_file())


@fault("store", "prepare --out an existing store, no flag", "1")
def _(lab: Lab) -> Outcome:
    return unchanged(lab, lab.real, "prepare", lab.luna, "--out", "STORE", "--test-patients", "2")


@fault("store", "prepare --resume with other options", "1")
def _(lab: Lab) -> Outcome:
    return unchanged(lab, lab.real, "prepare", lab.luna, "--out", "STORE", "--test-patients", "2", "--seed", "1", "--resume")


# -- checkpoints ----------------------------------------------------------------------------------
def _checkpoint_fault(lab: Lab, edit: Callable[[dict], None] | None = None, raw: Callable[[Path], None] | None = None) -> Outcome:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = ROOT / "weights" / "demo-spade-tiny.safetensors"
    bad = lab.path("bad.safetensors")
    with safe_open(str(source), "pt") as fh:
        metadata = fh.metadata()
    if edit is not None:
        config = json.loads(metadata["lungforge_config"])
        edit(config)
        metadata["lungforge_config"] = json.dumps(config)
    save_file(load_file(source), str(bad), metadata=metadata)
    if raw is not None:
        raw(bad)
    out = lab.path("s.zarr")
    call = lab.cli("augment", "--data", lab.real, "--weights", bad, "--out", out, "--nodules", "2", "--shape", "sphere", "--device", "cpu")
    return Outcome(str(call.code), call.stderr, False)


@fault("checkpoint", "negative channel count (item 10)", "1")
def _(lab: Lab) -> Outcome:
    return _checkpoint_fault(lab, edit=lambda c: c["model_config"].update(ngf=-8))


@fault("checkpoint", "other label set", "1")
def _(lab: Lab) -> Outcome:
    return _checkpoint_fault(lab, edit=lambda c: c.update(labels={"0": "background"}))


@fault("checkpoint", "unknown config key", "1")
def _(lab: Lab) -> Outcome:
    return _checkpoint_fault(lab, edit=lambda c: c["model_config"].update(wings=2))


@fault("checkpoint", "truncated .safetensors", "1")
def _(lab: Lab) -> Outcome:
    return _checkpoint_fault(lab, raw=lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]))


@fault("checkpoint", "weights path missing", "1")
def _(lab: Lab) -> Outcome:
    return usage(
        lab,
        "augment",
        "--data",
        lab.real,
        "--weights",
        lab.path("none.safetensors"),
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
    )


@fault("checkpoint", "unknown registry name", "1")
def _(lab: Lab) -> Outcome:
    return usage(
        lab,
        "augment",
        "--data",
        lab.real,
        "--weights",
        "no-such-weights",
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
    )


# -- failed writes (item 10) ----------------------------------------------------------------------
@fault("writes", "prepare: read-only --out", "1")
def _(lab: Lab) -> Outcome:
    call = lab.cli("prepare", lab.luna, "--out", lab.path("ro.zarr"), "--test-patients", "2", inject=(errno.EROFS, 0))
    return Outcome(str(call.code), call.stderr, False)


@fault("writes", "prepare: disk full, then --resume", "1 then 0")
def _(lab: Lab) -> Outcome:
    out = lab.path("full.zarr")
    call = lab.cli("prepare", lab.luna, "--out", out, "--test-patients", "2", inject=(errno.ENOSPC, 4))
    again = lab.cli("prepare", lab.luna, "--out", out, "--test-patients", "2", "--resume")
    return Outcome(f"{call.code} then {again.code}", call.stderr + again.stderr, not same_store(out, lab.real))


@fault("writes", "augment: read-only --out", "1")
def _(lab: Lab) -> Outcome:
    call = lab.cli(
        "augment",
        "--data",
        lab.real,
        "--weights",
        "demo-spade-tiny",
        "--out",
        lab.path("ro.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
        inject=(errno.EROFS, 0),
    )
    return Outcome(str(call.code), call.stderr, False)


@fault("writes", "augment: disk full, then --resume", "1 then 0")
def _(lab: Lab) -> Outcome:
    out = lab.path("full.zarr")
    call = lab.cli(*augment_args(lab, out), inject=(errno.ENOSPC, 0, out / "parts" / "block-000001.npz"))
    again = lab.cli(*augment_args(lab, out), "--resume")
    return Outcome(f"{call.code} then {again.code}", call.stderr + again.stderr, not same_store(out, lab.synth))
