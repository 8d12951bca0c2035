"""SDM sampling speed: the paper's ancestral DDPM (1000 steps, guided) vs a fast sampler, same model, one run.

    python benchmarks/sampling.py --json                                  # tiny preset, CPU
    python benchmarks/sampling.py --preset paper --device cuda --batch-size 8 --json

Prints {"device", "preset", "baseline", "baseline_img_per_s", "fast", "fast_img_per_s", "speedup",
"flops_per_image", "peak_mem_mb", "fid_fast_vs_baseline", ...}. Target: speedup ≥ 40 (e.g.
dpmpp-20 vs ddpm-1000 → 50× fewer model passes). With `--baseline-timed-steps K` the baseline
runs K ancestral steps and its time is scaled to 1000 steps: the output then says so
("baseline_extrapolated_from_steps": K). For the paper preset use it: a full 1000-step guided
run of batch 8 did not finish in 380 s on an H100 in fp32. Weights: `--weights` (registry name or checkpoint),
else a random-init model of the preset (speed does not depend on the weights; FID does).
FID of the fast samples against the baseline's own samples needs `--inception-weights FILE`
(pytorch-fid's pt_inception-2015-12-05-6726825d.pth); without it "fid_fast_vs_baseline" is null
and "fid_note" gives the reason.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from lungforge.augment.synthesizer import onehot_labels
from lungforge.diffusion.samplers import sample
from lungforge.labels import BODY, LEFT_LUNG, RIGHT_LUNG, TRACHEA
from lungforge.models.presets import get_preset
from lungforge.models.sdm_unet import SDMUNet, count_flops_per_forward
from lungforge.device import device_name, resolve_device

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
    if args.weights:
        from lungforge.registry import resolve_weights
        from lungforge.models.checkpoint import build_model, load_checkpoint

        ckpt = load_checkpoint(resolve_weights(args.weights), expect_kind="sdm")
        return build_model(ckpt, device), ckpt.preset
    torch.manual_seed(0)
    return SDMUNet(get_preset(args.preset).sdm).to(device).eval(), args.preset


def timed_sample(model, onehot: torch.Tensor, sampler: str, steps: int, guidance: float, seed: int) -> tuple[torch.Tensor, float]:
    generators = [torch.Generator(device=onehot.device).manual_seed(seed + i) for i in range(onehot.shape[0])]
    if onehot.device.type == "cuda":
        torch.cuda.synchronize(onehot.device)
    started = time.perf_counter()
    x = sample(model, onehot, sampler=sampler, steps=steps, guidance=guidance, generators=generators)
    if onehot.device.type == "cuda":
        torch.cuda.synchronize(onehot.device)
    return x, time.perf_counter() - started


def fid_between(a: torch.Tensor, b: torch.Tensor, weights: Path, device: torch.device) -> float:
    """FID between two image batches (B, 1, H, W) in [-1, 1], with lungforge.bench.fid's Inception."""
    from lungforge.bench.fid import FidConfig, Moments, frechet_distance, make_extractor

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
    parser.add_argument("--preset", default="tiny", help="model preset when no --weights: tiny (CPU) or paper (GPU)")
    parser.add_argument("--weights", default=None, help="SDM weights (registry name or checkpoint); default random init")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=2, help="images per sampling batch")
    parser.add_argument("--sampler", default="dpmpp", help="fast sampler: dpmpp or ddim")
    parser.add_argument("--steps", type=int, default=20, help="fast sampler steps")
    parser.add_argument("--guidance", type=float, default=1.5, help="classifier-free guidance scale (both runs)")
    parser.add_argument("--baseline-timed-steps", type=int, default=None, help="time only K ancestral steps and scale to 1000 (labelled as extrapolated)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--inception-weights", type=Path, default=None, help="pytorch-fid Inception weights file, for FID(fast, baseline)")
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model, preset = load_model(args, device)
    size = model.config.image_size
    onehot = onehot_labels(chest_labels(args.batch_size, size), device)
    passes = 1 if args.guidance == 1.0 else 2
    flops_forward = count_flops_per_forward(model, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    timed_sample(model, onehot, args.sampler, 2, args.guidance, seed=0)  # warm-up
    fast, fast_s = timed_sample(model, onehot, args.sampler, args.steps, args.guidance, seed=0)
    print(f"fast {args.sampler}-{args.steps}: {args.batch_size / fast_s:.3f} img/s; running the baseline ...", file=sys.stderr, flush=True)
    baseline_steps = args.baseline_timed_steps or BASELINE_STEPS
    baseline, baseline_s = timed_sample(model, onehot, "ddpm", baseline_steps, args.guidance, seed=0)
    baseline_s *= BASELINE_STEPS / baseline_steps

    result = {
        "device": f"{device.type}: {device_name(device)}" + (f", {torch.get_num_threads()} threads" if device.type == "cpu" else ""),
        "preset": preset,
        "image_size": size,
        "batch_size": args.batch_size,
        "baseline": f"ddpm-{BASELINE_STEPS} s={args.guidance}",
        "baseline_img_per_s": args.batch_size / baseline_s,
        "baseline_extrapolated_from_steps": args.baseline_timed_steps,
        "fast": f"{args.sampler}-{args.steps} s={args.guidance}",
        "fast_img_per_s": args.batch_size / fast_s,
        "speedup": baseline_s / fast_s,
        "flops_per_image": flops_forward * passes * args.steps,
        "baseline_flops_per_image": flops_forward * passes * BASELINE_STEPS,
        "peak_mem_mb": (
            torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
        "fid_fast_vs_baseline": None,
        "fid_note": None,
    }
    if args.inception_weights is None:
        result["fid_note"] = "no --inception-weights given (FID Inception weights are not available offline)"
    elif args.baseline_timed_steps:
        result["fid_note"] = "baseline was not run to 1000 steps, its samples are not comparable"
    else:
        result["fid_fast_vs_baseline"] = fid_between(fast, baseline, args.inception_weights, device)
        result["fid_note"] = f"{args.batch_size} samples each: too few for a stable FID; use a large --batch-size and trained --weights"
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
