"""Reading tensor files that hold no code: safetensors, or `torch.load(weights_only=True)`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lungforge.core.errors import LungforgeError, torch_load_reason


def load_tensor_dict(path: Path, what: str, error: type[LungforgeError], expected: str = "dict") -> dict[str, Any]:
    """The dict saved in `path` on CPU: a `.safetensors` file, else a `torch.save` file of tensors
    and plain types. `error` naming `what` and `path` when it cannot be read or holds no dict."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise error(f"{what} {path} cannot be read: {torch_load_reason(exc)}") from None
    if not isinstance(state, dict):
        raise error(f"{what} {path} holds a {type(state).__name__}, expected a {expected}")
    return state
