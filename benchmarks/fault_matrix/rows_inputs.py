"""Fault rows: damaged MetaImage headers and data files, bad annotations, bad options and their messages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .lab import ROOT, FaultFn, Lab, Outcome, fault, header_fault, prepare_scan_fault, series_of, set_field, usage

# -- bad headers (prepare skips the scan, keeps the others, exits 3) -----------------------------
header_fault("header", "NDims missing", "NDims", None)
header_fault("header", "NDims = 2", "NDims", "2")
header_fault("header", "DimSize not integer", "DimSize", "64 64 x")
header_fault("header", "DimSize zero", "DimSize", "0 64 32")
header_fault("header", "ElementType missing", "ElementType", None)
header_fault("header", "ElementType unknown", "ElementType", "MET_FOO")
header_fault("header", "ElementType MET_UCHAR on int16 data (item 7)", "ElementType", "MET_UCHAR")
header_fault("header", "ElementNumberOfChannels = 3", "ElementNumberOfChannels", "3")
header_fault("header", "ElementDataFile missing", "ElementDataFile", None)
header_fault("header", "ElementDataFile = LIST", "ElementDataFile", "LIST")
header_fault("header", "HeaderSize beyond the file", "HeaderSize", "100000000")
header_fault("header", "CompressedData on raw data", "CompressedData", "True")
header_fault("header", "ElementSpacing zero", "ElementSpacing", "0 0 0")
header_fault("header", "TransformMatrix singular", "TransformMatrix", "0 0 0 0 0 0 0 0 0")


@fault("header", "not a MetaImage header (text)", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: v.write_text("this is not a header\n"))


@fault("header", "binary junk header", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: v.write_bytes(os.urandom(256)))


@fault("header", "ElementDataFile ../../x.bin (item 6)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        shutil.copy(v.with_suffix(".raw"), luna.parent / "x.bin")
        set_field(v, "ElementDataFile", "../../x.bin")

    return prepare_scan_fault(lab, damage)


@fault("header", "ElementDataFile absolute path (item 6)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        elsewhere = shutil.copy(v.with_suffix(".raw"), lab.path("elsewhere.raw"))
        set_field(v, "ElementDataFile", str(elsewhere))

    return prepare_scan_fault(lab, damage)


@fault("header", "ElementDataFile = another scan's .raw (item 6)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        other = lab.scans(luna)[0]
        shutil.copy(other.with_suffix(".raw"), v.parent / f"{other.stem}.raw")
        set_field(v, "ElementDataFile", f"{other.stem}.raw")

    return prepare_scan_fault(lab, damage)


@fault("header", "odd in-plane size in subset0 (item 8)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:  # same bytes, 32 x 128 instead of 64 x 64
        v.write_text(v.read_text().replace("DimSize = 64 64 ", "DimSize = 32 128 "))

    return prepare_scan_fault(lab, damage, victim_index=0)


# -- data files ---------------------------------------------------------------------------------
@fault("data", ".raw truncated", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: v.with_suffix(".raw").write_bytes(v.with_suffix(".raw").read_bytes()[:1000]))


@fault("data", ".raw missing", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: v.with_suffix(".raw").unlink())


@fault("data", ".raw with extra bytes (item 7)", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: open(v.with_suffix(".raw"), "ab").write(b"\0" * 4096))


@fault("data", "seg .zraw truncated", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        z = luna / "seg-lungs-LUNA16" / f"{v.stem}.zraw"
        z.write_bytes(z.read_bytes()[:200])

    return prepare_scan_fault(lab, damage)


@fault("data", "seg .zraw with stray bytes (item 7)", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: open(luna / "seg-lungs-LUNA16" / f"{v.stem}.zraw", "ab").write(b"\0" * 64))


@fault("data", "seg mask missing (--lungs seg)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        for f in (luna / "seg-lungs-LUNA16").glob(f"{v.stem}.*"):
            f.unlink()

    return prepare_scan_fault(lab, damage)


@fault("data", "NaN voxels (item 9)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        import SimpleITK as sitk

        image = sitk.Cast(sitk.ReadImage(str(v)), sitk.sitkFloat32)
        array = sitk.GetArrayFromImage(image)
        array[array.shape[0] // 2, 5, 5] = np.nan
        bad = sitk.GetImageFromArray(array)
        bad.CopyInformation(image)
        sitk.WriteImage(bad, str(v))

    return prepare_scan_fault(lab, damage)


@fault("data", "series uid in two subsets (item 9)", "1")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    v = lab.victim(luna)
    (luna / "subset9").mkdir(exist_ok=True)
    for f in v.parent.glob(f"{v.stem}.*"):
        shutil.copy(f, luna / "subset9")
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out)
    return Outcome(str(call.code), call.stderr, (series_of(out) or []).count(v.stem) > 1)


@fault("data", "LUNA16 folder missing", "1")
def _(lab: Lab) -> Outcome:
    return usage(lab, "prepare", lab.path("nowhere"), "--out", lab.path("real.zarr"))


@fault("data", "no scans in the folder", "1")
def _(lab: Lab) -> Outcome:
    empty = lab.path("empty")
    (empty / "subset0").mkdir(parents=True)
    return usage(lab, "prepare", empty, "--out", lab.path("real.zarr"))


@fault("data", "wrong --seg-values (no lung anywhere)", "1/3")
def _(lab: Lab) -> Outcome:
    call = lab.cli("prepare", lab.luna, "--out", lab.path("real.zarr"), "--seg-values", "left=7,right=8,trachea=9")
    return Outcome(str(call.code), call.stderr, False)


# -- annotations --------------------------------------------------------------------------------
def annotation_fault(lab: Lab, edit: Callable[[Path, str], None]) -> Outcome:
    luna = lab.luna_copy()
    edit(luna / "annotations.csv", lab.victim(luna).stem)
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    return Outcome(str(call.code), call.stderr, False)


def append_row(row: str) -> Callable[[Path, str], None]:
    return lambda csv, uid: open(csv, "a").write(row.replace("UID", uid) + "\n")


for _name, _row in [
    ("diameter 5000 mm (item 9)", "UID,0,0,0,5000"),
    ("negative diameter", "UID,0,0,0,-4"),
    ("NaN coordinate", "UID,nan,0,0,6"),
    ("non-numeric coordinate", "UID,abc,0,0,6"),
    ("row with 3 fields", "UID,0,0"),
]:
    fault("annotations", _name, "1")(lambda lab, row=_row: annotation_fault(lab, append_row(row)))


@fault("annotations", "nodule outside the volume", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: append_row("UID,5000,5000,5000,8")(luna / "annotations.csv", v.stem))


@fault("annotations", "annotations of absent series", "0")
def _(lab: Lab) -> Outcome:
    return annotation_fault(lab, append_row("1.2.3.absent,0,0,0,8"))


@fault("annotations", "annotations.csv missing", "1")
def _(lab: Lab) -> Outcome:
    return annotation_fault(lab, lambda csv, uid: csv.unlink())


@fault("annotations", "wrong header columns", "1")
def _(lab: Lab) -> Outcome:
    return annotation_fault(lab, lambda csv, uid: csv.write_text("uid,x,y,z,d\n" + "".join(csv.read_text().splitlines(True)[1:])))


@fault("annotations", "not UTF-8", "1")
def _(lab: Lab) -> Outcome:
    return annotation_fault(lab, lambda csv, uid: csv.write_bytes(b"\xff\xfe\x00garbage"))


# -- options (usage errors, exit 2, before anything is written) -----------------------------------
def _prepare_usage(*opts: str) -> FaultFn:
    return lambda lab: usage(lab, "prepare", lab.luna, "--out", lab.path("real.zarr"), *opts)


def _augment_usage(*opts: str) -> FaultFn:
    return lambda lab: usage(
        lab,
        "augment",
        "--data",
        lab.real,
        "--weights",
        "demo-spade-tiny",
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        *opts,
    )


for _name, _fn in [
    ("--seg-values left=3,right=3 (item 9)", _prepare_usage("--seg-values", "left=3,right=3")),
    ("--seg-values garbage", _prepare_usage("--seg-values", "lung")),
    ("--lungs xyz", _prepare_usage("--lungs", "xyz")),
    ("--nodule-slices xyz", _prepare_usage("--nodule-slices", "xyz")),
    ("--keep-nodule-free 1.5", _prepare_usage("--keep-nodule-free", "1.5")),
    ("--keep-nodule-free nan (item 11)", _prepare_usage("--keep-nodule-free", "nan")),
    ("--test-patients nan (item 11)", _prepare_usage("--test-patients", "nan")),
    ("--resume with --overwrite", _prepare_usage("--resume", "--overwrite")),
    ("augment --guidance inf (item 11)", _augment_usage("--guidance", "inf")),
    ("augment --min-contrast nan (item 11)", _augment_usage("--min-contrast", "nan")),
    ("augment --device tpu (item 13)", _augment_usage("--device", "tpu")),
    ("augment --diameter 30:3", _augment_usage("--diameter", "30:3")),
    ("augment --placement nowhere", _augment_usage("--placement", "nowhere")),
    ("augment --sampler euler", _augment_usage("--sampler", "euler")),
    ("augment SPADE --steps 10: refused, not ignored", _augment_usage("--steps", "10")),
    (
        "augment --weights paste --sampler ddim: refused, not ignored",
        lambda lab: usage(
            lab, "augment", "--data", lab.real, "--weights", "paste", "--out", lab.path("s.zarr"), "--nodules", "2", "--sampler", "ddim"
        ),
    ),
    (
        "augment nothing to generate",
        lambda lab: usage(lab, "augment", "--data", lab.real, "--weights", "demo-spade-tiny", "--out", lab.path("s.zarr")),
    ),
    ("train sdm --lr nan (item 11)", lambda lab: usage(lab, "train", "sdm", "--data", lab.real, "--out", lab.path("run"), "--lr", "nan")),
    (
        "train spade --device tpu (item 13)",
        lambda lab: usage(lab, "train", "spade", "--data", lab.real, "--out", lab.path("run"), "--device", "tpu"),
    ),
    ("bench detect --synthetic =x (item 13)", lambda lab: usage(lab, "bench", "detect", "--real", lab.real, "--synthetic", "=x")),
    (
        "bench localize --nodule-free-ratio inf (item 11)",
        lambda lab: usage(lab, "bench", "localize", "--real", lab.real, "--nodule-free-ratio", "inf"),
    ),
    (
        "bench fid --device tpu (item 13)",
        lambda lab: usage(lab, "bench", "fid", "--real", lab.real, "--synthetic", lab.synth, "--device", "tpu"),
    ),
]:
    fault("options", _name, "2")(_fn)


@fault("options", "--test-patients = all scans", "1")
def _(lab: Lab) -> Outcome:
    return usage(lab, "prepare", lab.luna, "--out", lab.path("real.zarr"), "--test-patients", "6")


@fault("options", "train --preset huge", "1/2")
def _(lab: Lab) -> Outcome:
    return usage(lab, "train", "sdm", "--data", lab.real, "--out", lab.path("run"), "--preset", "huge", "--device", "cpu")


@fault("messages", "weights name regex shown intact (item 13)", "1")
def _(lab: Lab) -> Outcome:
    from lungforge.models.catalog import NAME_PATTERN

    call = lab.cli("weights", "import", ROOT / "weights" / "demo-spade-tiny.safetensors", "--name", "BAD")
    return Outcome(
        str(call.code),
        call.stderr,
        False,
        extra_ok=NAME_PATTERN.pattern in call.stderr,
        note="regex intact" if NAME_PATTERN.pattern in call.stderr else "regex mangled",
    )


@fault("messages", "pickled Inception weights: one line (item 13)", "1")
def _(lab: Lab) -> Outcome:
    evil = lab.path("pt_inception.pth")
    subprocess.run(
        [sys.executable, "-c", f"import torch, collections\nclass X: pass\ntorch.save({{'a': X()}}, {str(evil)!r})"],
        check=True,
        env=lab.env,
    )
    call = lab.cli("bench", "fid", "--real", lab.real, "--synthetic", lab.synth, "--inception-weights", evil, "--device", "cpu")
    lines = [line for line in call.stderr.splitlines() if line.strip()]
    return Outcome(str(call.code), call.stderr, False, extra_ok=len(lines) == 1, note=f"{len(lines)} stderr lines")
