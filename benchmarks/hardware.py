"""Shared by the throughput benchmarks: dense peak TFLOP/s of known GPUs, timing, memory, device line.

Peaks are the vendors' dense (no structured sparsity) tensor-core figures. `fp32` maps to the
TF32 tensor-core peak: PyTorch runs fp32 convolutions as TF32 on these GPUs by default
(torch.backends.cudnn.allow_tf32), and convolutions are almost all of these models' FLOPs.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable

import torch

from lungforge.core.device import device_name

# (substring of torch.cuda.get_device_name, label, {precision: dense TFLOP/s}); first match wins.
KNOWN_GPUS: tuple[tuple[str, str, dict[str, float]], ...] = (
    ("H100 PCIe", "H100 PCIe", {"fp32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    ("H100 NVL", "H100 NVL", {"fp32": 417.5, "bf16": 835.0, "fp16": 835.0}),
    ("H100", "H100 SXM", {"fp32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("H200", "H200", {"fp32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("GH200", "GH200", {"fp32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("A100", "A100", {"fp32": 156.0, "bf16": 312.0, "fp16": 312.0}),
    ("L40S", "L40S", {"fp32": 183.0, "bf16": 362.05, "fp16": 362.05}),
    ("L4", "L4", {"fp32": 60.0, "bf16": 121.0, "fp16": 121.0}),
    ("A10", "A10", {"fp32": 62.5, "bf16": 125.0, "fp16": 125.0}),
    ("RTX 4090", "RTX 4090", {"fp32": 82.6, "bf16": 165.2, "fp16": 165.2}),
)


def peak_tflops(device: torch.device, precision: str, override: float | None) -> tuple[float | None, str | None]:
    """(dense peak TFLOP/s, where it comes from) for `device` at `precision`; (None, None) if unknown."""
    if override is not None:
        return override, "--peak-tflops"
    if device.type != "cuda":
        return None, None
    name = torch.cuda.get_device_name(device)
    for pattern, label, peaks in KNOWN_GPUS:
        if pattern in name:
            return peaks[precision], f"{label} dense {precision}" + (" (TF32 tensor cores)" if precision == "fp32" else "")
    return None, None


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of `run()`, with the device drained before and after."""
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - started


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max_memory_allocated since the last reset; CPU: the process's RSS high-water mark."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def device_fields(device: torch.device) -> dict[str, object]:
    """The device keys every throughput line carries."""
    return {
        "device": device_name(device),
        "device_type": device.type,
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__,
    }


def rate_fields(images: int, seconds: float, flops_per_image: float, peak: tuple[float | None, str | None]) -> dict[str, object]:
    """images/s, achieved TFLOP/s and the fraction of the dense peak (None where the peak is unknown)."""
    tflops = images * flops_per_image / seconds / 1e12
    return {
        "img_per_s": images / seconds,
        "img_per_min": 60 * images / seconds,
        "achieved_tflops": tflops,
        "peak_tflops": peak[0],
        "peak_source": peak[1],
        "peak_fraction": tflops / peak[0] if peak[0] else None,
    }
