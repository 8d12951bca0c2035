"""Augment pipeline overhead: a whole `augment` run vs pure model sampling of the same images, one run.

    python benchmarks/augment.py --json                       # tiny preset, CPU, phantom data
    python benchmarks/augment.py --device cuda --nodules 448 --nodule-free 64 --batch-size 64 --json

Prints one JSON line {"img_per_s", "sampling_only_img_per_s", "overhead", ...} where overhead =
augment seconds per image / sampling-only seconds per image − 1 (target ≤ 0.15). The augment
side is the full call: opening the stores, the nodule library and visibility threshold, layout
planning, verification and Zarr writes. The sampling side runs the same generator, sampler,
steps and batch size on the same label maps and seeds. `--min-contrast` defaults to a value
every nodule passes, so both sides sample exactly the same images (verification still runs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lungforge.augment import synthesizer as synthesis
from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.augment.synthesizer import SamplingSettings, Synthesizer
from lungforge.core.device import check_precision, device_name, resolve_device
from lungforge.models.checkpoint import load_checkpoint, save_checkpoint
from lungforge.models.presets import get_preset
from lungforge.models.sdm_unet import SDMUNet
from lungforge.phantom.scans import make_phantom
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="random-init SDM preset (tiny on CPU)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16")
    parser.add_argument("--nodules", type=int, default=48, help="nodule slices")
    parser.add_argument("--nodule-free", type=int, default=16, help="nodule-free slices")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (both sides)")
    parser.add_argument("--sampler", default="dpmpp", help="sampler (both sides)")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps (both sides)")
    parser.add_argument("--min-contrast", type=float, default=-1e9, help="visibility threshold in HU")
    parser.add_argument("--scans", type=int, default=4, help="phantom scans of the input store (the first two have no nodules)")
    parser.add_argument(
        "--phantom-size",
        type=int,
        default=256,
        help="phantom slice size in pixels: LUNA16-sized nodules must span pixels for --shape real's mask library (at 64 px they are 1 px)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--preview", type=Path, default=None, help="also write a label | image PNG grid of the output")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    # Random-initialised weights draw saturated noise, which augment refuses as a broken generator;
    # the check still runs on every sample here (its cost is part of the overhead), it just passes.
    synthesis.SATURATED_SHARE = 1.0

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        size = get_preset(args.preset).sdm.image_size
        make_phantom(root / "luna16", scans=args.scans, size=args.phantom_size, seed=0)
        # No test patients: every phantom nodule can lend its mask (augment draws shapes from train patients only).
        prepare(root / "luna16", root / "real.zarr", PrepareOptions(test_patients=0))
        torch.manual_seed(0)
        config = get_preset(args.preset).sdm
        save_checkpoint(
            root / "sdm",
            kind="sdm",
            preset=args.preset,
            model_config=config,
            state_dict=SDMUNet(config).state_dict(),
            step=0,
            store_fingerprint=None,
        )
        options = AugmentOptions(
            data=root / "real.zarr",
            weights=str(root / "sdm"),
            out=root / "synth.zarr",
            nodules=args.nodules,
            nodule_free=args.nodule_free,
            shape="real",
            sampler=args.sampler,
            steps=args.steps,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            min_contrast_hu=args.min_contrast,
        )

        synthesizer = Synthesizer(
            load_checkpoint(root / "sdm"), device, check_precision(args.precision, device), SamplingSettings(args.sampler, args.steps)
        )
        synthesizer(np.zeros((2, size, size), dtype=np.uint8), [0, 1])  # warm-up (both sides then run warm)

        started = time.perf_counter()
        report = augment(options)
        augment_s = time.perf_counter() - started

        store = open_store(options.out)
        labels = np.asarray(store.label[...])
        seeds = store.meta("seed").tolist()
        if args.preview is not None:
            from lungforge.augment.preview import write_preview

            write_preview(options.out, args.preview)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for start in range(0, labels.shape[0], args.batch_size):
            images = synthesizer(labels[start : start + args.batch_size], seeds[start : start + args.batch_size])
        sampling_s = time.perf_counter() - started
        identical = bool((images == np.asarray(store.image[start:])).all())

    n = report.images_sampled
    result = {
        "benchmark": "augment",
        "device": f"{device.type}: {device_name(device)}" + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""),
        "preset": args.preset,
        "images": n,
        "slices": report.slices,
        "batch_size": args.batch_size,
        "sampler": f"{args.sampler}-{args.steps}",
        "augment_seconds": augment_s,
        "sampling_only_seconds": sampling_s,
        "img_per_s": n / augment_s,
        "sampling_only_img_per_s": labels.shape[0] / sampling_s,
        "overhead": (augment_s / n) / (sampling_s / labels.shape[0]) - 1.0,
        "same_images_as_augment": identical,
        "verified_final": report.verified_final,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")


if __name__ == "__main__":
    main()
