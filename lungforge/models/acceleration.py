"""Speed settings of a built model: memory format (channels_last) and opt-in `torch.compile`.

Neither changes what the model computes, only how: outputs agree with the plain model to float
rounding (tests/models/test_acceleration.py). Compilation costs time on the first call (and on
the first call with a new batch shape); callers report that cost separately.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

MemoryFormat = Literal["auto", "contiguous", "channels_last"]
MEMORY_FORMATS: tuple[str, ...] = ("auto", "contiguous", "channels_last")


def resolve_memory_format(choice: str, device: torch.device) -> torch.memory_format:
    """`auto` → channels_last on CPU (oneDNN convolutions skip their layout reorders: 1.3× on the
    tiny SDM, 1 thread) and on CUDA (cuDNN's NHWC kernels for tensor cores); else as named."""
    if choice not in MEMORY_FORMATS:
        raise ValueError(f"memory format must be one of {', '.join(MEMORY_FORMATS)}, got {choice!r}")
    if choice == "contiguous":
        return torch.contiguous_format
    return torch.channels_last


def for_inference(
    model: nn.Module, device: torch.device, *, memory_format: str = "auto", compile: bool = False
) -> Callable[..., torch.Tensor]:
    """`model` (eval mode, on `device`) converted in place to the memory format, optionally compiled.

    Only for inference copies: channels_last parameters have non-contiguous strides, which a
    checkpoint writer (safetensors) refuses, so a model being trained keeps its layout.
    """
    model.to(memory_format=resolve_memory_format(memory_format, device))
    return compiled(model, compile)


def compiled(module: nn.Module, enabled: bool) -> Callable[..., torch.Tensor]:
    """`torch.compile(module)` when `enabled`, else `module` unchanged (its state dict is shared)."""
    return torch.compile(module) if enabled else module
