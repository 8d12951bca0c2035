"""Training throughput of SDM and SPADE, side by side: images/s and peak memory per preset and batch size.

    python benchmarks/training.py [--device auto|cpu|cuda] [--precision fp32|bf16|fp16]
                                  [--presets tiny,paper] [--batch-sizes 1,2,4,8] [--steps 3]
                                  [--budget-s 60] [--json]

Each configuration runs one warm-up step, then `--steps` timed optimiser steps on random
chest-like label maps. A batch size is skipped (and reported as such) when the previous size's
step time predicts it would exceed `--budget-s`; on CPU the paper preset runs batch 1 only.
Peak memory: torch.cuda.max_memory_allocated on CUDA, the process's ru_maxrss on CPU (a
high-water mark over the whole process, so it only grows down the table).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

from lungforge.labels import BODY, LEFT_LUNG, RIGHT_LUNG
from lungforge.models.presets import get_preset
from lungforge.device import check_precision, device_name, resolve_device
from lungforge.training.distributed import DistInfo
from lungforge.training.loop_sdm import SDMTrainer
from lungforge.training.loop_spade import SPADETrainer
from lungforge.training.run import TrainOptions, step_generator


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


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def bench_one(kind: str, preset_name: str, batch: int, steps: int, device: torch.device, precision: str) -> dict:
    preset = get_preset(preset_name)
    size = (preset.sdm if kind == "sdm" else preset.spade).image_size
    options = TrainOptions(data=Path("."), out=Path("."), preset=preset, batch_size=batch, precision=precision)
    factory = SDMTrainer if kind == "sdm" else SPADETrainer
    if device.type == "cuda":
        torch.cuda.init()  # resetting the peak statistics needs an initialised CUDA context
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    torch.manual_seed(0)
    trainer = factory(preset, options, device, precision, DistInfo())
    image, label = _batch(batch, size, device, 0)
    trainer.train_step(image, label, step_generator(0, 0, 0, device))  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for step in range(1, steps + 1):
        loss = trainer.train_step(image, label, step_generator(0, 0, step, device))["loss"]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    row = {
        "kind": kind, "preset": preset_name, "image_px": size, "batch": batch, "steps": steps,
        "s_per_step": seconds / steps, "img_per_s": batch * steps / seconds, "peak_mb": _peak_mb(device), "loss": loss,
    }
    del trainer
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--presets", default="tiny,paper")
    parser.add_argument("--batch-sizes", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=60.0, help="Skip a configuration predicted to take longer (seconds).")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    precision = check_precision(args.precision, device)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    rows, skipped = [], []
    for preset_name in args.presets.split(","):
        for kind in ("sdm", "spade"):
            per_image_s = None
            for batch in sizes:
                if preset_name == "paper" and device.type == "cpu" and batch > 1:
                    skipped.append({"kind": kind, "preset": preset_name, "batch": batch, "reason": "paper preset on CPU: batch 1 only"})
                    continue
                steps = 2 if preset_name == "paper" and device.type == "cpu" else args.steps
                if per_image_s is not None and per_image_s * batch * (steps + 1) > args.budget_s:
                    skipped.append({"kind": kind, "preset": preset_name, "batch": batch, "reason": f"predicted > {args.budget_s:g} s"})
                    continue
                try:
                    row = bench_one(kind, preset_name, batch, steps, device, precision)
                except torch.OutOfMemoryError:
                    skipped.append({"kind": kind, "preset": preset_name, "batch": batch, "reason": "out of memory"})
                    break
                rows.append(row)
                per_image_s = row["s_per_step"] / batch
                print(f"{kind:5s} {preset_name:5s} {row['image_px']:4d}px b{batch}: {row['img_per_s']:8.2f} img/s "
                      f"{row['s_per_step']:7.3f} s/step  peak {row['peak_mb']:8.0f} MB", file=sys.stderr)
    report = {
        "device": device_name(device), "device_type": device.type, "precision": precision,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "results": rows, "skipped": skipped,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
