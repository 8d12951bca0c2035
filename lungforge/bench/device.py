"""Torch device selection for the benchmarks (`--device auto|cpu|cuda`)."""

from __future__ import annotations

from typing import Literal

import torch

from lungforge.errors import InputError

DeviceChoice = Literal["auto", "cpu", "cuda"]


def resolve_device(choice: str) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cuda` without a GPU is an error."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cpu":
        return torch.device("cpu")
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise InputError("--device cuda asked for, but torch sees no CUDA device; use --device cpu or auto")
        return torch.device("cuda")
    raise InputError(f"--device must be auto, cpu or cuda, got {choice!r}")
