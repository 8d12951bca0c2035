"""SDM samplers chosen by data: the same label maps through the 1000-step guided ancestral
reference and through ddim / dpmpp (and short ddpm) at several step counts and guidance scales,
scored by the label-fidelity segmenter (lungforge.bench.fidelity).

    python benchmarks/samplers.py --work bench-samplers                  # demo SDM, 16 maps, CPU, 1 thread
    python benchmarks/samplers.py --work bench-samplers --phase score --json

Phase `sample` builds the demo's phantom store (20 scans, 128 px, seed 0; prepare with 20 %
test patients), plans `--images` label maps with `--per-slice` nodules each with augment's own
planner (the demo's request: spheres of 4–20 mm), and samples every
setting with the same per-sample seeds, one batch per setting, writing
`WORK/samples/<setting>.npz` (images and seconds) as it goes; a rerun skips finished settings.
Phase `score` trains (or reuses, cached beside the store) the fidelity segmenter at the SDM's
size and prints, per setting: seconds per image, mIoU, nodule hit rate, the segmenter-feature
Fréchet distance to the real test slices (not comparable with published FID), mIoU and hit rate
relative to the reference, and the fastest setting within 2 % mIoU and 2 points of hit rate of
the reference. Seconds per image are wall-clock for the whole batch divided by its size.
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


def settings() -> list[tuple[str, int, float]]:
    """Every (sampler, steps, guidance) measured: the fast grid, short ddpm at s=1.5, then the reference."""
    grid = [(sampler, steps, g) for sampler in ("ddim", "dpmpp") for g in GUIDANCES for steps in FAST_STEPS]
    return grid + [("ddpm", steps, 1.5) for steps in SHORT_DDPM_STEPS] + [REFERENCE]


def setting_name(sampler: str, steps: int, guidance: float) -> str:
    return f"{sampler}-{steps}-s{guidance:g}"


def real_store_path(work: Path) -> Path:
    """The demo's phantom store (20 scans, 128 px, seed 0, 20 % test patients), built once."""
    from lungforge.data.phantom import make_phantom
    from lungforge.data.prepare import PrepareOptions, prepare

    real = work / "real.zarr"
    if not real.exists():
        make_phantom(work / "luna16-phantom", scans=20, size=128, seed=0)
        prepare(work / "luna16-phantom", real, PrepareOptions(test_patients=0.2, seed=0, workers=1))
    return real


def plan_label_maps(work: Path, real: Path, n: int, per_slice: int, size: int, seed: int) -> dict[str, np.ndarray]:
    """`n` label maps (n, size, size) uint8 with `per_slice` nodules each, from augment's planner; saved as WORK/labels.npz."""
    from lungforge.augment.layout import LayoutRequest
    from lungforge.augment.plan import SamplePlanner, SourceMaps
    from lungforge.data.store import open_store

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


def sample_phase(args: argparse.Namespace) -> None:
    from lungforge.augment.synthesizer import SamplingSettings, Synthesizer
    from lungforge.models.checkpoint import load_checkpoint
    from lungforge.registry import resolve_weights

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ckpt = load_checkpoint(resolve_weights(args.weights), expect_kind="sdm")
    size = int(ckpt.config.image_size)
    maps = plan_label_maps(args.work, real_store_path(args.work), args.images, args.per_slice, size, args.seed)
    out = args.work / "samples"
    out.mkdir(parents=True, exist_ok=True)
    chosen = {"all": settings(), "grid": settings()[:-1], "reference": [REFERENCE]}[args.part]
    for sampler, steps, guidance in chosen:
        name = setting_name(sampler, steps, guidance)
        path = out / f"{name}.npz"
        if path.exists():
            continue
        synth = Synthesizer(ckpt, device, settings=SamplingSettings(sampler, steps, guidance))  # type: ignore[arg-type]
        started = time.perf_counter()
        images = synth(maps["label"], [int(s) for s in maps["seed"]])
        seconds = time.perf_counter() - started
        partial = out / f".{name}.partial.npz"
        np.savez(partial, image=images, seconds=seconds, threads=args.threads)
        os.replace(partial, path)
        print(f"{name}: {seconds / len(images):.2f} s/image", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="folder for the phantom store, label maps, samples and the result")
    parser.add_argument("--weights", default="demo-sdm-tiny", help="SDM weights (registry name or checkpoint)")
    parser.add_argument("--images", type=int, default=4, help="label maps sampled by every setting")
    parser.add_argument("--per-slice", type=int, default=3, help="nodules placed in each label map")
    parser.add_argument("--phase", choices=("sample", "score", "all"), default="all")
    parser.add_argument("--part", choices=("all", "grid", "reference"), default="all", help="settings sampled: all, all but the reference, or the reference only (two processes can share the work)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads while sampling")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of the label-map plan and the per-sample noise")
    parser.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.phase in ("sample", "all"):
        sample_phase(args)
    if args.phase in ("score", "all"):
        score_phase(args)


if __name__ == "__main__":
    main()
