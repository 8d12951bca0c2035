"""Generator sampling throughput with FLOP accounting: images/s, achieved TFLOP/s, fraction of peak.

    python benchmarks/sampling.py --json                                         # tiny SDM, CPU
    python benchmarks/sampling.py --preset paper --device cuda --precision bf16 --batch-size 64 [--compile] --json
    python benchmarks/sampling.py --model spade --preset paper --device cuda --precision bf16 --batch-size 16 --json
    python benchmarks/sampling.py --baseline --baseline-timed-steps 20 --json     # + ancestral DDPM-1000 speedup

One JSON line (same keys on CPU and GPU). FLOPs per model pass are counted with
torch.utils.flop_counter on the meta device (lungforge.models.flops); an SDM image costs
passes_per_step × steps passes (2 with guidance ≠ 1: conditional and unconditional). The run
goes through what augment uses (channels_last inference model, forward-only autocast, optional
torch.compile); `first_call_s` is the first batch (warm-up, and compilation with `--compile`),
timed apart from the `--repeats` timed batches. On CUDA `peak_fraction` compares achieved
TFLOP/s with the GPU's dense peak for the precision (benchmarks/hardware.py; `--peak-tflops`
overrides). Weights: `--weights` (registry name or checkpoint), else random init of the preset
(speed does not depend on the weights). With `--baseline` the same model also runs the paper's
ancestral DDPM-1000 (`--baseline-timed-steps K`: K steps timed and scaled to 1000, labelled as
extrapolated) and "speedup" compares it; FID(fast, baseline) needs `--inception-weights FILE`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from hardware import device_fields, peak_memory_mb, peak_tflops, rate_fields, reset_peak_memory, timed
from lungforge.augment.synthesizer import onehot_labels
from lungforge.core.device import autocast_forward, check_precision, resolve_device
from lungforge.core.labels import BODY, LEFT_LUNG, RIGHT_LUNG, TRACHEA
from lungforge.diffusion.samplers import sample
from lungforge.models.acceleration import MEMORY_FORMATS, for_inference
from lungforge.models.flops import sdm_forward_flops, spade_forward_flops
from lungforge.models.presets import SDMConfig, SPADEConfig, get_preset
from lungforge.models.sdm_unet import SDMUNet
from lungforge.models.spade import SPADEGenerator

BASELINE_STEPS = 1000


def chest_labels(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, size, size) uint8 chest-like label maps: body, two lungs and a trachea with jittered shapes."""
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[:size, :size] + 0.5) / size
    out = np.zeros((n, size, size), dtype=np.uint8)
    for i in range(n):
        j = rng.uniform(-0.03, 0.03, size=6)
        out[i][((yy - 0.5) / (0.36 + j[0])) ** 2 + ((xx - 0.5) / (0.45 + j[1])) ** 2 <= 1] = BODY
        out[i][((yy - 0.48) / (0.25 + j[2])) ** 2 + ((xx - 0.70) / (0.14 + j[3])) ** 2 <= 1] = LEFT_LUNG
        out[i][((yy - 0.48) / (0.25 + j[4])) ** 2 + ((xx - 0.30) / (0.14 + j[5])) ** 2 <= 1] = RIGHT_LUNG
        out[i][((yy - 0.30) / 0.03) ** 2 + ((xx - 0.5) / 0.03) ** 2 <= 1] = TRACHEA
    return out


def load_model(args: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, str]:
    """The generator (eval mode on `device`) and its preset name."""
    if args.weights:
        from lungforge.models.catalog import resolve_weights
        from lungforge.models.checkpoint import build_model, load_checkpoint

        ckpt = load_checkpoint(resolve_weights(args.weights), expect_kind=args.model)
        return build_model(ckpt, device), ckpt.preset
    torch.manual_seed(0)
    preset = get_preset(args.preset)
    with torch.device(device):
        model = SDMUNet(preset.sdm) if args.model == "sdm" else SPADEGenerator(preset.spade)
    return model.eval(), args.preset


def fid_between(a: torch.Tensor, b: torch.Tensor, weights: Path, device: torch.device) -> float:
    """FID between two image batches (B, 1, H, W) in [-1, 1], with lungforge.bench.scoring.fid's Inception."""
    from lungforge.bench.scoring.fid import FidConfig, Moments, frechet_distance, make_extractor

    extractor, dims = make_extractor(FidConfig(), weights, device, allow_download=False)
    moments = []
    with torch.no_grad():
        for images in (a, b):
            m = Moments(dims)
            x = ((images.float() + 1) / 2).clamp(0, 1).expand(-1, 3, -1, -1).to(device)
            m.add(extractor(x)[0].squeeze(-1).squeeze(-1).cpu().numpy())
            moments.append(m.mean_cov())
    return frechet_distance(*moments[0], *moments[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("sdm", "spade"), default="sdm", help="generator kind")
    parser.add_argument("--preset", default="tiny", help="model preset when no --weights: tiny (CPU) or paper (GPU)")
    parser.add_argument("--weights", default=None, help="weights (registry name or checkpoint); default random init")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--precision", default="fp32", help="fp32, bf16 or fp16 (autocast around the model only)")
    parser.add_argument("--batch-size", default="2", help="images per sampling batch; a list (16,64) prints one line per size")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (first call timed apart)")
    parser.add_argument("--memory-format", default="auto", choices=MEMORY_FORMATS, help="model memory format")
    parser.add_argument("--sampler", default="dpmpp", help="SDM sampler: dpmpp, ddim or ddpm")
    parser.add_argument("--steps", type=int, default=25, help="SDM sampler steps")
    parser.add_argument("--guidance", type=float, default=1.5, help="classifier-free guidance scale")
    parser.add_argument("--repeats", type=int, default=1, help="timed batches after the first")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense peak TFLOP/s of this device at this precision")
    parser.add_argument("--baseline", action="store_true", help="also time ancestral DDPM-1000 (SDM) and report the speedup")
    parser.add_argument("--baseline-timed-steps", type=int, default=None, help="with --baseline: time only K steps, scale to 1000")
    parser.add_argument(
        "--inception-weights", type=Path, default=None, help="with --baseline: pytorch-fid Inception weights, for FID(fast, baseline)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON line only")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = check_precision(args.precision, device)
    model, preset = load_model(args, device)
    config = model.config if args.model == "sdm" else model.cfg
    forward = autocast_forward(for_inference(model, device, memory_format=args.memory_format, compile=args.compile), device, precision)
    for batch_size in [int(b) for b in args.batch_size.split(",")]:
        report(run(args, forward, config, preset, batch_size, device, precision), args.json)


def run(
    args: argparse.Namespace,
    forward: Callable[..., torch.Tensor],
    config: SDMConfig | SPADEConfig,
    preset: str,
    batch_size: int,
    device: torch.device,
    precision: str,
) -> dict:
    """Time one first batch and `args.repeats` more of `batch_size` images; the result line."""
    size = config.image_size
    onehot = onehot_labels(chest_labels(batch_size, size), device)
    sdm = args.model == "sdm"
    passes = (1 if args.guidance == 1.0 else 2) * args.steps if sdm else 1
    flops_per_pass = sdm_forward_flops(config) if sdm else spade_forward_flops(config)

    def generate(sampler: str = args.sampler, steps: int = args.steps) -> torch.Tensor:
        if not sdm:
            with torch.no_grad():
                return forward(onehot)
        generators = [torch.Generator(device=device).manual_seed(i) for i in range(batch_size)]
        return sample(forward, onehot, sampler=sampler, steps=steps, guidance=args.guidance, generators=generators)

    reset_peak_memory(device)
    first_s = timed(generate, device)
    print(f"first batch {first_s:.1f} s; timing {args.repeats} batch(es) ...", file=sys.stderr, flush=True)
    outputs: list[torch.Tensor] = []
    seconds = sum(timed(lambda: outputs.append(generate()), device) for _ in range(args.repeats))
    images = batch_size * args.repeats
    result = {
        "benchmark": "sampling",
        "model": args.model,
        "preset": preset,
        "image_size": size,
        **device_fields(device),
        "precision": precision,
        "memory_format": args.memory_format,
        "compile": args.compile,
        "batch_size": batch_size,
        "sampler": f"{args.sampler}-{args.steps} s={args.guidance}" if sdm else "single pass",
        "passes_per_image": passes,
        "flops_per_pass": flops_per_pass,
        "flops_per_image": flops_per_pass * passes,
        "first_call_s": first_s,
        "seconds": seconds,
        **rate_fields(images, seconds, flops_per_pass * passes, peak_tflops(device, precision, args.peak_tflops)),
        "peak_mem_mb": peak_memory_mb(device),
        "baseline": None,
        "baseline_img_per_s": None,
        "baseline_extrapolated_from_steps": None,
        "speedup": None,
        "fid_fast_vs_baseline": None,
        "fid_note": None,
    }
    if args.baseline and sdm:
        steps = args.baseline_timed_steps or BASELINE_STEPS
        baseline: list[torch.Tensor] = []
        baseline_s = timed(lambda: baseline.append(generate("ddpm", steps)), device) * BASELINE_STEPS / steps
        result.update(
            baseline=f"ddpm-{BASELINE_STEPS} s={args.guidance}",
            baseline_img_per_s=batch_size / baseline_s,
            baseline_extrapolated_from_steps=args.baseline_timed_steps,
            speedup=baseline_s / (seconds / args.repeats),
        )
        if args.inception_weights is None:
            result["fid_note"] = "no --inception-weights given (FID Inception weights are not available offline)"
        elif args.baseline_timed_steps:
            result["fid_note"] = "baseline was not run to 1000 steps, its samples are not comparable"
        else:
            result["fid_fast_vs_baseline"] = fid_between(outputs[-1], baseline[0], args.inception_weights, device)
            result["fid_note"] = f"{batch_size} samples each: too few for a stable FID; use a large --batch-size and trained --weights"
    return result


def report(result: dict, as_json: bool) -> None:
    """Print one result: a JSON line, or aligned key: value lines."""
    if as_json:
        print(json.dumps(result), flush=True)
    else:
        for key, value in result.items():
            print(f"{key:>32}: {value}")


if __name__ == "__main__":
    main()
