"""Device and numeric precision selection (`--device auto|cpu|cuda`, `--precision fp32|bf16|fp16`)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch

from lungforge.core.choices import PRECISIONS, Precision
from lungforge.core.errors import InputError

DeviceChoice = Literal["auto", "cpu", "cuda"]
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cuda` without a GPU is an error.

    Under torchrun each process takes the GPU of its `local_rank`.
    """
    if choice not in ("auto", "cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda, got {choice!r}")
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but torch sees no CUDA device; use --device cpu or auto")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise InputError(f"local rank {local_rank} needs GPU {local_rank}, but only {count} CUDA device(s) are visible")
    return torch.device("cuda", local_rank)


def check_precision(precision: str, device: torch.device) -> Precision:
    """Validate `precision` for `device`: fp16 needs CUDA (CPU autocast supports bf16 only)."""
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise InputError(f"--precision fp16 needs a CUDA device, got {device}; use fp32 or bf16 on CPU")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(f"--precision bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16 or fp32")
    return precision


def autocast(device: torch.device, precision: Precision) -> AbstractContextManager:
    """Mixed-precision context for the forward pass (a no-op for fp32)."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPES[precision])


def autocast_forward(model: Callable[..., torch.Tensor], device: torch.device, precision: Precision) -> Callable[..., torch.Tensor]:
    """`model` with only its forward pass under autocast (`model` itself for fp32).

    Samplers call this instead of running under autocast themselves, so the schedule and the
    sampler's update arithmetic stay in float32/64 whatever the model's precision.
    """
    if precision == "fp32":
        return model

    def forward(*args: object, **kwargs: object) -> torch.Tensor:
        with autocast(device, precision):
            return model(*args, **kwargs)

    return forward


def grad_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler:
    """A loss scaler, enabled only for fp16 (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def device_name(device: torch.device) -> str:
    """Human-readable name of `device` (GPU model, or the CPU's processor string)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"
