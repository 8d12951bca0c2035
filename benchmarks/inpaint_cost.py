"""Cost per generated nodule: inpainting SDM (one window per nodule) against whole-slice SDM, one run.

    python benchmarks/inpaint_cost.py --json                              # tiny: 32 px windows, 128 px slices, CPU
    python benchmarks/inpaint_cost.py --preset paper --device cuda --json # 64 px windows on 256 px slices

Prints one JSON line. Counted FLOPs (lungforge.models.flops, on the meta device) per nodule:
one UNet forward per sampler step and two with guidance ≠ 1 (batched), for a whole slice of the
preset's size against one window of `--window` pixels; the ratio does not depend on the sampler.
Measured: `augment` end to end (phantom store, random-initialised weights of the preset, same
sampler, steps, nodules and batch size for both) in nodules per second. The whole-slice SDM makes
slices at its own size; the inpainting SDM draws into the store's slices at `--store-size`.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.core.device import device_name, resolve_device
from lungforge.models.checkpoint import save_checkpoint
from lungforge.models.flops import sdm_forward_flops
from lungforge.models.presets import SDMConfig, get_preset, inpaint_preset
from lungforge.models.sdm_unet import SDMUNet
from lungforge.phantom.scans import make_phantom
from lungforge.preparation.pipeline import PrepareOptions, prepare

DEFAULTS = {"tiny": {"window": 32, "store_size": 128}, "paper": {"window": 64, "store_size": 256}}


def _weights(root: Path, name: str, preset: str, config: SDMConfig) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(
        root / name, kind="sdm", preset=preset, model_config=config, state_dict=SDMUNet(config).state_dict(), step=0, store_fingerprint=None
    )


def _nodules_per_s(real: Path, weights: Path, out: Path, args: argparse.Namespace) -> dict[str, float]:
    options = AugmentOptions(
        data=real,
        weights=str(weights),
        out=out,
        nodules=args.nodules,
        nodule_free=0,
        shape="real",
        sampler=args.sampler,
        steps=args.steps,
        guidance=args.guidance,
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision,
        min_contrast_hu=-1e9,
    )
    started = time.perf_counter()
    report = augment(options)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "nodules": int(report.nodules), "nodules_per_s": report.nodules / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(DEFAULTS), help="SDM preset of both models")
    parser.add_argument("--window", type=int, default=None, help="inpainting window in pixels (tiny 32, paper 64)")
    parser.add_argument("--store-size", type=int, default=None, help="phantom slice size in pixels (tiny 128, paper 256)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16")
    parser.add_argument("--nodules", type=int, default=16, help="nodule slices per model (one nodule each)")
    parser.add_argument("--batch-size", type=int, default=16, help="generator batch (both)")
    parser.add_argument("--sampler", default="ddpm", help="sampler (both)")
    parser.add_argument("--steps", type=int, default=10, help="sampler steps (both)")
    parser.add_argument("--guidance", type=float, default=1.5, help="guidance scale (both)")
    parser.add_argument("--scans", type=int, default=4, help="phantom scans of the input store")
    parser.add_argument("--flops-only", action="store_true", help="count FLOPs, measure nothing")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()
    window = args.window or DEFAULTS[args.preset]["window"]
    store_size = args.store_size or DEFAULTS[args.preset]["store_size"]

    preset = get_preset(args.preset)
    whole, inpaint = preset.sdm, inpaint_preset(preset, window).sdm
    passes = args.steps * (1 if args.guidance == 1.0 else 2)
    whole_flops, window_flops = sdm_forward_flops(whole), sdm_forward_flops(inpaint)
    result: dict = {
        "benchmark": "inpaint_cost",
        "preset": args.preset,
        "slice_px": whole.image_size,
        "window_px": window,
        "sampler": f"{args.sampler}-{args.steps}, guidance {args.guidance}",
        "gflops_per_nodule_whole_slice": whole_flops * passes / 1e9,
        "gflops_per_nodule_inpaint": window_flops * passes / 1e9,
        "flops_ratio": whole_flops / window_flops,
    }
    if not args.flops_only:
        device = resolve_device(args.device)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            make_phantom(root / "luna16", scans=args.scans, size=store_size, seed=0)
            prepare(root / "luna16", root / "real.zarr", PrepareOptions(test_patients=0.25))
            slice_w = _weights(root, "whole", args.preset, whole)
            window_w = _weights(root, "inpaint", args.preset, inpaint)
            measured_whole = _nodules_per_s(root / "real.zarr", slice_w, root / "whole.zarr", args)
            measured_inpaint = _nodules_per_s(root / "real.zarr", window_w, root / "inpaint.zarr", args)
        result.update(
            {
                "device": f"{device.type}: {device_name(device)}"
                + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""),
                "store_px": store_size,
                "nodules": measured_whole["nodules"],
                "batch_size": args.batch_size,
                "whole_slice_nodules_per_s": measured_whole["nodules_per_s"],
                "inpaint_nodules_per_s": measured_inpaint["nodules_per_s"],
                "measured_speedup": measured_inpaint["nodules_per_s"] / measured_whole["nodules_per_s"],
            }
        )
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>32}: {value}")


if __name__ == "__main__":
    main()
