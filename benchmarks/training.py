"""Training throughput of SDM or SPADE with FLOP accounting: images/s, achieved TFLOP/s, fraction of peak.

    python benchmarks/training.py --json                                          # tiny SDM, CPU
    python benchmarks/training.py --preset paper --device cuda --precision bf16 --batch-size 8 --json
    python benchmarks/training.py --preset paper --device cuda --precision bf16 --batch-size max --json
    python benchmarks/training.py --kind spade --preset paper --device cuda --precision bf16 --batch-size 8 --json

One JSON line (same keys on CPU and GPU). Each run makes the trainer `lungforge train` uses,
runs one warm-up step (timed apart as `first_step_s`: with `--compile` it holds the
compilation), then `--steps` timed optimiser steps on random chest-like label maps. FLOPs per
image are counted with torch.utils.flop_counter: for SDM on the meta device (UNet forward +
backward, lungforge.models.flops), for SPADE around one real batch-1 step (G and D, forward and
backward). `--batch-size max` (CUDA) doubles the batch from 8 until it runs out of memory and
reports the largest that ran. Peak memory: torch.cuda.max_memory_allocated on CUDA, the
process's ru_maxrss on CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from hardware import device_fields, peak_memory_mb, peak_tflops, rate_fields, reset_peak_memory, timed
from lungforge.core.device import check_precision, resolve_device
from lungforge.core.labels import BODY, LEFT_LUNG, RIGHT_LUNG
from lungforge.core.process_group import DistInfo
from lungforge.models.flops import count_flops, sdm_train_flops
from lungforge.models.presets import get_preset
from lungforge.training.loop_sdm import SDMTrainer
from lungforge.training.loop_spade import SPADETrainer
from lungforge.training.options import TrainOptions
from lungforge.training.run import step_generator


def _batch(batch: int, size: int, device: torch.device, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (B, 1, S, S) in [-1, 1] and a chest-like label map (B, S, S): body, two lungs."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    label = torch.zeros(size, size, dtype=torch.long)
    label[(yy / 0.8) ** 2 + (xx / 0.9) ** 2 <= 1] = BODY
    label[((yy / 0.5) ** 2 + ((xx - 0.4) / 0.25) ** 2) <= 1] = LEFT_LUNG
    label[((yy / 0.5) ** 2 + ((xx + 0.4) / 0.25) ** 2) <= 1] = RIGHT_LUNG
    image = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
    return image.to(device), label.expand(batch, -1, -1).contiguous().to(device)


def _trainer(args: argparse.Namespace, batch: int, device: torch.device, precision: str, compile: bool):
    preset = get_preset(args.preset)
    options = TrainOptions(data=Path("."), out=Path("."), preset=preset, batch_size=batch, precision=precision, compile=compile)
    torch.manual_seed(0)
    factory = SDMTrainer if args.kind == "sdm" else SPADETrainer
    return factory(preset, options, device, precision, DistInfo())


def flops_per_image(args: argparse.Namespace, device: torch.device, precision: str) -> int:
    """Counted FLOPs of one training step on one image."""
    preset = get_preset(args.preset)
    if args.kind == "sdm":
        return sdm_train_flops(preset.sdm)
    trainer = _trainer(args, 1, device, precision, compile=False)
    image, label = _batch(1, preset.spade.image_size, device, 0)
    return count_flops(lambda: trainer.train_step(image, label, step_generator(0, 0, 0, device)))


def bench(args: argparse.Namespace, batch: int, device: torch.device, precision: str) -> dict:
    """Warm-up step, then `args.steps` timed steps at `batch`; raises torch.OutOfMemoryError."""
    preset = get_preset(args.preset)
    size = (preset.sdm if args.kind == "sdm" else preset.spade).image_size
    reset_peak_memory(device)
    trainer = _trainer(args, batch, device, precision, args.compile)
    image, label = _batch(batch, size, device, 0)
    try:
        first_s = timed(lambda: trainer.train_step(image, label, step_generator(0, 0, 0, device)), device)
        losses: list[float] = []

        def steps() -> None:
            for step in range(1, args.steps + 1):
                losses.append(trainer.train_step(image, label, step_generator(0, 0, step, device))["loss"])

        seconds = timed(steps, device)
        return {
            "batch_size": batch,
            "first_step_s": first_s,
            "seconds": seconds,
            "s_per_step": seconds / args.steps,
            "loss": losses[-1],
            "peak_mem_mb": peak_memory_mb(device),
        }
    finally:
        trainer = None  # frees the model before the caller retries at a smaller batch
        if device.type == "cuda":
            torch.cuda.empty_cache()


def largest_batch(args: argparse.Namespace, device: torch.device, precision: str) -> tuple[dict, list[int]]:
    """Double the batch from 8 until out of memory; the last run that fit, and the sizes that did not."""
    best, batch, failed = None, 8, []
    while True:
        try:
            best = bench(args, batch, device, precision)
        except torch.OutOfMemoryError:
            failed.append(batch)
            break
        print(f"batch {batch} fits ({best['peak_mem_mb']:.0f} MB)", file=sys.stderr, flush=True)
        batch *= 2
    if best is None:
        raise SystemExit("batch 8 does not fit on this device; pass --batch-size N")
    return best, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("sdm", "spade"), default="sdm", help="model to train")
    parser.add_argument("--preset", default="tiny", help="tiny or paper")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16")
    parser.add_argument("--batch-size", default="2", help="images per step, or 'max' (CUDA): the largest that fits")
    parser.add_argument("--steps", type=int, default=3, help="timed optimiser steps after the warm-up step")
    parser.add_argument("--compile", action="store_true", help="torch.compile the SDM training forward (SDM only)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense peak TFLOP/s of this device at this precision")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = check_precision(args.precision, device)
    if args.compile and args.kind == "spade":
        parser.error("--compile applies to SDM training only")
    flops = flops_per_image(args, device, precision)
    failed: list[int] = []
    if args.batch_size == "max":
        if device.type != "cuda":
            parser.error("--batch-size max needs a CUDA device")
        row, failed = largest_batch(args, device, precision)
    else:
        row = bench(args, int(args.batch_size), device, precision)
    preset = get_preset(args.preset)
    result = {
        "benchmark": "training",
        "kind": args.kind,
        "preset": args.preset,
        "image_size": (preset.sdm if args.kind == "sdm" else preset.spade).image_size,
        **device_fields(device),
        "precision": precision,
        "compile": args.compile,
        "batch_size": row["batch_size"],
        "batch_size_search": args.batch_size == "max",
        "out_of_memory_at": failed[0] if failed else None,
        "steps": args.steps,
        "flops_per_image": flops,
        "first_step_s": row["first_step_s"],
        "seconds": row["seconds"],
        "s_per_step": row["s_per_step"],
        **rate_fields(row["batch_size"] * args.steps, row["seconds"], flops, peak_tflops(device, precision, args.peak_tflops)),
        "peak_mem_mb": row["peak_mem_mb"],
        "loss": row["loss"],
    }
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
