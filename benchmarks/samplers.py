"""SDM samplers chosen by data: the same label maps through the 1000-step guided ancestral
reference and through ddim / dpmpp (and short ddpm) at several step counts and guidance scales,
scored by the label-fidelity segmenter (lungforge.bench.scoring.fidelity).

    python benchmarks/samplers.py --work bench-samplers                     # demo SDM, 2 maps × 6 nodules, CPU, 1 thread
    python benchmarks/samplers.py --work W --phase sample --part reference --shard 0/2 &   # split the reference
    python benchmarks/samplers.py --work W --phase sample --part reference --shard 1/2 &   # over two processes
    python benchmarks/samplers.py --work W --phase score --json

Phase `sample` builds the demo's phantom store (20 scans, 128 px, seed 0; prepare with 20 %
test patients), plans `--images` label maps with `--per-slice` nodules each with augment's own
planner (the demo's request: spheres of 4–20 mm), and samples every setting with the same
per-sample seeds, one batch per setting, writing `WORK/samples/<setting>.npz` (images, CPU and
wall seconds) as it goes; a rerun skips finished settings. Phase `score` trains (or reuses,
cached beside the store) the fidelity segmenter at the SDM's size and prints, per setting: model
passes and CPU seconds per image, mIoU, nodule IoU and hit rate, the segmenter-feature Fréchet
distance to the real test slices (not comparable with published FID), the drift of the tissue
grey levels from real CT, whether it lies within 2 % (relative) mIoU and 2 points of hit rate
of the reference, and the fastest such setting (by model passes, the cost that does not depend
on how busy the machine is). CPU seconds are process time, so a shared machine slows the wall
clock but not them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REFERENCE = ("ddpm", 1000, 1.5)
FAST_STEPS = (10, 15, 25, 50)
GUIDANCES = (1.0, 1.5, 3.0)
SHORT_DDPM_STEPS = (10, 25, 50)
MIOU_TOLERANCE = 0.02
HIT_TOLERANCE_POINTS = 2.0
SEGMENTER = {"width": 8, "steps": 600, "batch_size": 8, "lr": 4e-3}
"""Fidelity segmenter options at the SDM's size: a CPU-sized version of the default."""


def settings() -> list[tuple[str, int, float]]:
    """Every (sampler, steps, guidance) measured: the fast grid, short ddpm at s=1.5, then the reference."""
    grid = [(sampler, steps, g) for sampler in ("ddim", "dpmpp") for g in GUIDANCES for steps in FAST_STEPS]
    return grid + [("ddpm", steps, 1.5) for steps in SHORT_DDPM_STEPS] + [REFERENCE]


def setting_name(sampler: str, steps: int, guidance: float) -> str:
    return f"{sampler}-{steps}-s{guidance:g}"


def real_store_path(work: Path, scans: int = 20, size: int = 128) -> Path:
    """The demo's phantom store (20 scans, 128 px, seed 0, 20 % test patients), built once."""
    from lungforge.phantom.scans import make_phantom
    from lungforge.preparation.pipeline import PrepareOptions, prepare

    real = work / "real.zarr"
    if not real.exists():
        make_phantom(work / "luna16-phantom", scans=scans, size=size, seed=0)
        prepare(work / "luna16-phantom", real, PrepareOptions(test_patients=0.2, seed=0, workers=1))
    return real


def plan_label_maps(work: Path, real: Path, n: int, per_slice: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """`n` label maps (n, size, size) uint8 with `per_slice` nodules each, from augment's planner; saved as WORK/labels.npz."""
    from lungforge.augment.layout import LayoutRequest
    from lungforge.augment.plan import SamplePlanner, SourceMaps
    from lungforge.store import open_store

    path = work / "labels.npz"
    if path.exists():
        return dict(np.load(path))
    store = open_store(real)
    request = LayoutRequest(per_slice=per_slice, diameter_mm=(4.0, 20.0), shape="sphere")
    planner = SamplePlanner(SourceMaps(store, size), request, n_nodule=n, seed=seed)
    planned = [planner.plan(i) for i in range(n)]
    maps = {
        "label": np.stack([p.label for p in planned]),
        "seed": np.array([p.seed for p in planned], np.int64),
        "spacing_mm": np.array([p.spacing_mm for p in planned], np.float32),
    }
    np.savez(path, **maps)
    return maps


def shard_paths(out: Path, name: str, shards: int) -> list[Path]:
    """Files of one setting: `<name>.npz`, or `<name>.shard<i>of<n>.npz` when sampled by n processes."""
    return [out / f"{name}.npz"] if shards == 1 else [out / f"{name}.shard{i}of{shards}.npz" for i in range(shards)]


def sample_phase(args: argparse.Namespace) -> None:
    from lungforge.augment.synthesizer import SamplingSettings, Synthesizer
    from lungforge.models.catalog import resolve_weights
    from lungforge.models.checkpoint import load_checkpoint

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ckpt = load_checkpoint(resolve_weights(args.weights), expect_kind="sdm")
    size = int(ckpt.config.image_size)
    maps = plan_label_maps(args.work, real_store_path(args.work, args.scans, args.size), args.images, args.per_slice, size, args.seed)
    out = args.work / "samples"
    out.mkdir(parents=True, exist_ok=True)
    index, shards = args.shard
    mine = np.arange(index, len(maps["label"]), shards)  # sample i depends on its own seed only, not on the batch
    chosen = {"all": settings(), "grid": settings()[:-1], "reference": [REFERENCE]}[args.part]
    chosen = [s for s in chosen if not args.settings or setting_name(*s) in args.settings]
    chosen = chosen[::-1] if args.reverse else chosen
    for sampler, steps, guidance in chosen:
        name = setting_name(sampler, steps, guidance)
        path = shard_paths(out, name, shards)[index]
        if path.exists():
            continue
        synth = Synthesizer(ckpt, device, settings=SamplingSettings(sampler, steps, guidance))  # type: ignore[arg-type]
        started, started_cpu = time.perf_counter(), time.process_time()
        images = synth(maps["label"][mine], [int(s) for s in maps["seed"][mine]])
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - started_cpu
        partial = out / f".{path.stem}.partial.npz"
        np.savez(partial, index=mine, image=images, seconds=seconds, cpu_seconds=cpu_seconds, threads=args.threads)
        os.replace(partial, path)
        print(f"{path.stem}: {cpu_seconds / len(images):.2f} CPU s/image ({seconds / len(images):.2f} s wall)", file=sys.stderr, flush=True)


def load_samples(out: Path, name: str, n: int) -> dict[str, np.ndarray] | None:
    """Images (n, S, S) of one setting stitched from its file or shards, with summed CPU/wall seconds; None if incomplete."""
    for shards in range(1, n + 1):
        paths = shard_paths(out, name, shards)
        if all(p.exists() for p in paths):
            parts = [np.load(p) for p in paths]
            order = np.argsort(np.concatenate([p["index"] for p in parts]))
            return {
                "image": np.concatenate([p["image"] for p in parts])[order],
                "cpu_seconds": sum(float(p["cpu_seconds"]) for p in parts),
                "seconds": sum(float(p["seconds"]) for p in parts),
            }
    return None


def intensity_drift_hu(images: np.ndarray, labels: np.ndarray, real_images: np.ndarray, real_labels: np.ndarray) -> float:
    """Mean over label classes present in both of |mean grey level of the class in `images` − in the
    real slices|, in HU (uint8 × 1400/255): how far a sampler's tissue intensities drift from real CT."""
    width_hu = 1400.0 / 255.0
    drifts = []
    for c in np.intersect1d(np.unique(labels), np.unique(real_labels)):
        drifts.append(abs(float(images[labels == c].mean()) - float(real_images[real_labels == c].mean())) * width_hu)
    return float(np.mean(drifts))


def qualifies(row: dict, reference: dict) -> bool:
    """Within 2 % (relative) of the reference's mIoU and 2 points of its nodule hit rate."""
    return (
        row["miou"] >= reference["miou"] * (1 - MIOU_TOLERANCE)
        and 100 * row["hit_rate"] >= 100 * reference["hit_rate"] - HIT_TOLERANCE_POINTS
    )


def score_phase(args: argparse.Namespace) -> None:
    from lungforge.bench.protocol.slices import read_resized
    from lungforge.bench.scoring.fidelity import FidelityScore, score_store
    from lungforge.bench.scoring.segmenter import SegmenterConfig, load_or_train
    from lungforge.store import SPLIT_IDS, open_store

    torch.set_num_threads(args.threads)
    real = open_store(real_store_path(args.work, args.scans, args.size))
    maps = dict(np.load(args.work / "labels.npz"))
    labels = maps["label"]
    size = labels.shape[-1]
    segmenter_options = {**SEGMENTER, "steps": args.segmenter_steps}
    segmenter = load_or_train(real, SegmenterConfig(size=size, **segmenter_options), torch.device("cpu"))
    test_rows = np.flatnonzero(real.meta("split") == SPLIT_IDS["test"])
    ceiling = score_store(segmenter, real, test_rows)
    real_images, real_labels = read_resized(real, test_rows, size)
    pixel_area = maps["spacing_mm"].astype(np.float64).prod(axis=1)
    rows = []
    for sampler, steps, guidance in settings():
        sample = load_samples(args.work / "samples", setting_name(sampler, steps, guidance), len(labels))
        if sample is None:
            continue
        score = FidelityScore.empty(segmenter.model.feature_dims)
        score.add(segmenter, sample["image"], labels, pixel_area, np.ones(len(labels), bool))
        s = score.summary(ceiling)
        rows.append(
            {
                "setting": setting_name(sampler, steps, guidance),
                "sampler": sampler,
                "steps": steps,
                "guidance": guidance,
                "passes_per_image": steps * (1 if guidance == 1.0 else 2),
                "cpu_s_per_image": sample["cpu_seconds"] / len(labels),
                "wall_s_per_image": sample["seconds"] / len(labels),
                "miou": s.miou,
                "nodule_iou": s.iou["nodule"],
                "hit_rate": s.nodule_hits.rate,
                "hits": s.nodule_hits.hit,
                "nodules": s.nodule_hits.nodules,
                "feature_distance": None if s.feature_distance is None else s.feature_distance["all"].fd,
                "intensity_drift_hu": intensity_drift_hu(sample["image"], labels, real_images, real_labels),
            }
        )
    ceiling_summary = ceiling.summary(None)
    result = {
        "weights": args.weights,
        "images": len(labels),
        "nodules": rows[0]["nodules"] if rows else 0,
        "size": int(size),
        "threads": args.threads,
        "segmenter": {"path": str(segmenter.path), **segmenter_options},
        "real_ceiling": {"miou": ceiling_summary.miou, "hit_rate": ceiling_summary.nodule_hits.rate},
        "reference": setting_name(*REFERENCE),
        "rows": rows,
    }
    reference = next((r for r in rows if r["setting"] == result["reference"]), None)
    if reference is not None:
        for row in rows:
            row["within_tolerance"] = qualifies(row, reference)
        for label, pool in (("fastest", rows), ("fastest_at_default_guidance", [r for r in rows if r["guidance"] == REFERENCE[2]])):
            ok = sorted((r for r in pool if r["within_tolerance"]), key=lambda r: (r["passes_per_image"], r["cpu_s_per_image"]))
            result[label] = ok[0]["setting"] if ok else None
    (args.work / "result.json").write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(markdown(result))


def markdown(result: dict) -> str:
    """The README table: one row per setting, the reference last."""
    head = [
        "setting",
        "model passes / image",
        "CPU s / image",
        "mIoU %",
        "nodule IoU %",
        "nodule hit %",
        "feature FD",
        "intensity drift HU",
        "within 2 % / 2 pts",
    ]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in result["rows"]:
        cells = [
            r["setting"],
            str(r["passes_per_image"]),
            f"{r['cpu_s_per_image']:.2f}",
            f"{100 * r['miou']:.1f}",
            f"{100 * (r['nodule_iou'] or 0):.1f}",
            f"{100 * r['hit_rate']:.0f} ({r['hits']})",
            f"{r['feature_distance']:.3f}",
            f"{r['intensity_drift_hu']:.0f}",
            {True: "yes", False: "no", None: "–"}[r.get("within_tolerance")],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    ceiling = result["real_ceiling"]
    lines += [
        "",
        f"Real test slices (ceiling): mIoU {100 * ceiling['miou']:.1f} %, nodule hit {100 * ceiling['hit_rate']:.0f} %. "
        f"{result['images']} label maps, {result['nodules']} nodules, {result['size']} px, {result['threads']} CPU thread(s); "
        f"fastest within tolerance: {result.get('fastest')}, at guidance {REFERENCE[2]}: {result.get('fastest_at_default_guidance')}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the phantom store, label maps, samples and the result")
    parser.add_argument("--weights", default="demo-sdm-tiny", help="SDM weights (registry name or checkpoint)")
    parser.add_argument("--images", type=int, default=2, help="label maps sampled by every setting")
    parser.add_argument("--per-slice", type=int, default=6, help="nodules placed in each label map")
    parser.add_argument("--phase", choices=("sample", "score", "all"), default="all")
    parser.add_argument(
        "--part",
        choices=("all", "grid", "reference"),
        default="all",
        help="settings sampled: all, all but the reference, or the reference only (two processes can share the work)",
    )
    parser.add_argument(
        "--shard",
        type=lambda t: tuple(int(v) for v in t.split("/")),
        default=(0, 1),
        help="I/N: sample only label maps I, I+N, ... (N processes share a setting; each sample depends only on its seed)",
    )
    parser.add_argument(
        "--reverse", action="store_true", help="sample the chosen settings last to first (a second process meets the first halfway)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while sampling")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the label-map plan and the per-sample noise")
    parser.add_argument("--scans", type=int, default=20, help="phantom scans of the real store (the demo's 20; fewer for a smoke test)")
    parser.add_argument("--size", type=int, default=128, help="phantom slice size in pixels (the demo's 128)")
    parser.add_argument(
        "--settings",
        type=lambda t: t.split(","),
        default=None,
        help="sample only these settings, e.g. ddim-10-s1,dpmpp-25-s1.5 (default: every one)",
    )
    parser.add_argument("--segmenter-steps", type=int, default=SEGMENTER["steps"], help="training steps of the fidelity segmenter")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args()
    known = {setting_name(*s) for s in settings()}
    if args.settings and not set(args.settings) <= known:
        parser.error(f"--settings: unknown {sorted(set(args.settings) - known)}; known: {', '.join(sorted(known))}")
    args.work.mkdir(parents=True, exist_ok=True)
    if args.phase in ("sample", "all"):
        sample_phase(args)
    if args.phase in ("score", "all"):
        score_phase(args)


if __name__ == "__main__":
    main()
