"""Fault rows of issue 19: prepare inputs that disagree, one display orientation, exports that real tools read."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .lab import FaultFn, Lab, Outcome, digest, fault, header_fault, prepare_scan_fault, same_store, series_of, set_field, store_arrays
from .rows_processes import together

# --- issue 19: prepare inputs that disagree, one display orientation ---
header_fault("prepare-agree", "ElementType MET_USHORT on int16 data (19.3)", "ElementType", "MET_USHORT")
header_fault("prepare-agree", "BinaryDataByteOrderMSB = True on LE data (19.3)", "BinaryDataByteOrderMSB", "True")


def seg_header_fault(key: str, value: Callable[[str], str]) -> FaultFn:
    """Change one field of the victim's seg-mask header (VALUE maps the old value to the new)."""

    def damage(luna: Path, v: Path) -> None:
        seg = luna / "seg-lungs-LUNA16" / f"{v.stem}.mhd"
        old = next(line.split("=", 1)[1].strip() for line in seg.read_text().splitlines() if line.split("=")[0].strip() == key)
        set_field(seg, key, value(old))

    return lambda lab: prepare_scan_fault(lab, damage)


for _name, _key, _value in [
    ("seg origin 20 mm off its scan's (19.3)", "Offset", lambda old: " ".join(str(float(v) + 20) for v in old.split())),
    ("seg spacing differs from its scan's (19.3)", "ElementSpacing", lambda old: " ".join(str(float(v) * 1.5) for v in old.split())),
    (
        "seg mirrored: direction differs (19.3)",
        "TransformMatrix",
        lambda old: " ".join(str(-float(v) if i == 0 else float(v)) for i, v in enumerate(old.split())),
    ),
]:
    fault("prepare-agree", _name, "3")(seg_header_fault(_key, _value))


@fault("prepare-agree", "two series share one .raw (symlink) (19.3)", "3")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    first, victim = lab.scans(luna)[0], lab.victim(luna)
    victim.write_text(first.read_text().replace(f"{first.stem}.raw", f"{victim.stem}.raw"))
    victim.with_suffix(".raw").unlink()
    victim.with_suffix(".raw").symlink_to(first.with_suffix(".raw"))
    seg = luna / "seg-lungs-LUNA16"
    (seg / f"{victim.stem}.mhd").write_text((seg / f"{first.stem}.mhd").read_text().replace(first.stem, victim.stem))
    shutil.copy(seg / f"{first.stem}.zraw", seg / f"{victim.stem}.zraw")
    csv = luna / "annotations.csv"  # the victim's own nodules lie elsewhere in the copied volume
    csv.write_text("".join(line for line in csv.read_text().splitlines(True) if not line.startswith(victim.stem)))
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    stored = series_of(out) or []
    others = [p.stem for p in lab.scans(luna) if p not in (first, victim)]
    lost = first.stem in stored or victim.stem in stored or any(u not in stored for u in others)
    named = first.stem in call.stderr and victim.stem in call.stderr
    return Outcome(str(call.code), call.stderr, lost if call.code in (0, 3) else False, "" if named else "does not name both series", named)


@fault("prepare-agree", "every annotation row twice (19.3)", "0")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    csv = luna / "annotations.csv"
    header, *rows = csv.read_text().splitlines()
    csv.write_text("\n".join([header, *rows, *rows]) + "\n")
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2", "--json")
    arrays, pristine = store_arrays(out), store_arrays(lab.real)
    same = arrays is not None and pristine is not None and arrays["nodules/slice"].size == pristine["nodules/slice"].size
    said = call.code == 0 and len(json.loads(call.stdout).get("duplicate_annotations", [])) == len(rows)
    note = (
        ""
        if same and said
        else f"{0 if arrays is None else arrays['nodules/slice'].size} nodule rows for {len(rows)} nodules"
        + ("" if said else ", duplicates not reported")
    )
    return Outcome(str(call.code), call.stderr, False, note, same and said)


@fault("prepare-agree", "a scan in subset10/ (19.3)", "3")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    victim = lab.victim(luna)
    (luna / "subset10").mkdir()
    for f in victim.parent.glob(f"{victim.stem}.*"):
        f.rename(luna / "subset10" / f.name)
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    named = "subset10" in call.stderr and victim.stem in call.stderr
    return Outcome(str(call.code), call.stderr, False, "" if named else "subset10 not named", named)


@fault("prepare-agree", "a scan in Subset4/ (19.3)", "0")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    (luna / "subset4").rename(luna / "Subset4")
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    return Outcome(str(call.code), call.stderr, not same_store(out, lab.real))


@fault("prepare-agree", "x/y-flipped scan lands mirrored (19.3)", "0")
def _(lab: Lab) -> Outcome:
    luna = lab.path("ph7")
    made = lab.cli("phantom", luna, "--scans", "7", "--size", "64", "--json")
    flipped = json.loads(made.stdout)["flipped"]
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    arrays = store_arrays(out)
    if arrays is None:
        return Outcome(str(call.code), call.stderr, False, "no store", False)
    cols = np.arange(arrays["label"].shape[2])
    left, right = (
        np.where(arrays["label"] == v, cols, 0).sum(axis=(1, 2)) / np.maximum((arrays["label"] == v).sum(axis=(1, 2)), 1) for v in (1, 2)
    )
    both = ((arrays["label"] == 1).any(axis=(1, 2))) & ((arrays["label"] == 2).any(axis=(1, 2)))
    mirrored = int((left[both] < right[both]).sum())
    note = f"{mirrored} of {int(both.sum())} slices have the left lung on the image's left ({len(flipped)} flipped scans)"
    return Outcome(str(call.code), call.stderr, False, note if mirrored else "", mirrored == 0)


# --- issue 19: exports that real tools read (items 5, 8-11) ---
def coco_files(root: Path) -> dict[str, dict]:
    """Every COCO annotation file of an export (`annotations.json` or `annotations/*.json`), by path."""
    return {
        str(p.relative_to(root)): json.loads(p.read_text())
        for p in [root / "annotations.json", *sorted((root / "annotations").glob("*.json"))]
        if p.is_file()
    }


def _coco_images_missing(root: Path) -> int:
    """Images a COCO export lists that are not on disk (file names relative to images/ or images/<split>/)."""
    missing = 0
    for doc in coco_files(root).values():
        for image in doc["images"]:
            names = [root / "images" / image["file_name"], root / "images" / image.get("split", "") / image["file_name"]]
            missing += not any(p.is_file() for p in names)
    return missing


@fault("export", "two exports into one --out (19.5)", "0/1")
def _(lab: Lab) -> Outcome:
    out = lab.path("coco")
    # Upsampled to 512 px so that each export runs for seconds and the two overlap.
    calls = together(lab, *[["export", lab.real, "--format", "coco", "--out", out, "--size", "512"]] * 2)
    codes = "/".join(str(c) for c in sorted(c.code for c in calls))
    missing = _coco_images_missing(out) if out.is_dir() else 0
    return Outcome(codes, "".join(c.stderr for c in calls), missing > 0 or not out.is_dir(), note=f"{missing} listed images missing")


@fault("export", "export --out inside its input store (19.5)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    before = digest(copy)
    call = lab.cli("export", copy, "--format", "png", "--out", copy / "image" / "c" / "9")
    return Outcome(str(call.code), call.stderr, digest(copy) != before)


@fault("export", "yolo export of an augment store: train and val (19.8)", "0")
def _(lab: Lab) -> Outcome:
    import yaml

    out = lab.path("yolo")
    call = lab.cli("export", lab.synth, "--format", "yolo", "--out", out)
    data = yaml.safe_load((out / "data.yaml").read_text()) if (out / "data.yaml").is_file() else {}
    usable = all(isinstance(data.get(k), str) and (out / data[k]).is_dir() for k in ("train", "val"))
    return Outcome(str(call.code), call.stderr, call.code == 0 and not usable, note=f"data.yaml keys {sorted(data)}")


def _nnunet_ids(raw: Path) -> list[str]:
    return sorted(p.name[7:10] for p in raw.glob("Dataset*_*") if p.is_dir())


@fault("export", "two nnunet exports into one nnUNet_raw (19.9)", "0 then 0")
def _(lab: Lab) -> Outcome:
    raw = lab.path("nnUNet_raw")
    a = lab.cli("export", lab.real, "--format", "nnunet", "--out", raw, "--dataset-name", "Real")
    b = lab.cli("export", lab.synth, "--format", "nnunet", "--out", raw, "--dataset-name", "Synth")
    ids = _nnunet_ids(raw)
    return Outcome(f"{a.code} then {b.code}", a.stderr + b.stderr, len(ids) != len(set(ids)), note=f"ids {ids}")


@fault("export", "nnunet --dataset-id of another dataset (19.9)", "0 then 1")
def _(lab: Lab) -> Outcome:
    raw = lab.path("nnUNet_raw")
    a = lab.cli("export", lab.real, "--format", "nnunet", "--out", raw, "--dataset-id", "7", "--dataset-name", "Real")
    b = lab.cli("export", lab.synth, "--format", "nnunet", "--out", raw, "--dataset-id", "7", "--dataset-name", "Synth")
    ids = _nnunet_ids(raw)
    return Outcome(f"{a.code} then {b.code}", a.stderr + b.stderr, len(ids) != len(set(ids)), note=f"ids {ids}")


@fault("export", "coco --size 48: boxes fit their masks (19.10)", "0")
def _(lab: Lab) -> Outcome:
    from pycocotools import mask as mask_utils

    out = lab.path("coco48")
    call = lab.cli("export", lab.real, "--format", "coco", "--out", out, "--size", "48")
    ious = []
    for doc in coco_files(out).values():
        for ann in doc["annotations"]:
            rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
            if ann["area"]:
                ious.append(float(mask_utils.iou([ann["bbox"]], [list(mask_utils.toBbox(rle))], [0])[0][0]))
    low = sum(v < 0.999 for v in ious)
    return Outcome(
        str(call.code), call.stderr, call.code == 0 and (low > 0 or not ious), note=f"{low} of {len(ious)} boxes with IoU < 1 to their mask"
    )


@fault("export", "coco: one annotation file per split (19.11)", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("coco")
    call = lab.cli("export", lab.real, "--format", "coco", "--out", out)
    mixed = [name for name, doc in coco_files(out).items() if len({image["split"] for image in doc["images"]}) > 1]
    return Outcome(str(call.code), call.stderr, call.code == 0 and bool(mixed), note=f"files {sorted(coco_files(out))}")
