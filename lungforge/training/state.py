"""Training state (`resume.pt`): optimisers, EMA, step, RNG states and sampler position.

It holds tensors and plain Python types only, so it loads with `torch.load(weights_only=True)`.
A trainer's share of it is the state of its named parts (:class:`ResumableParts`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from lungforge.core.errors import CheckpointError
from lungforge.core.fileio import Writer, replace_together
from lungforge.core.tensor_files import load_tensor_dict
from lungforge.models.checkpoint import WRITE_ERRORS


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """Atomically `torch.save` `state` (tensors, numbers, strings, None, lists/tuples/dicts of them);
    a failed write (full disk) leaves the previous file intact and raises OutputError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_together({path: training_state_writer(state)}, WRITE_ERRORS)


def training_state_writer(state: dict[str, Any]) -> Writer:
    """A writer of `state` with `torch.save` (checked to hold plain types only, so it loads with
    `weights_only=True`), for :func:`lungforge.core.fileio.replace_together`."""
    _check_plain(state, "state")
    return lambda tmp: torch.save(state, tmp)


def load_training_state(path: Path) -> dict[str, Any]:
    """Load a `resume.pt` written by `save_training_state` (with `weights_only=True`, on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"--resume given but no training state at {path}")
    return load_tensor_dict(path, "training state", CheckpointError)


class ResumableParts:
    """A trainer's `state_dict` / `load_state_dict`: the states of the parts :meth:`resume_parts`
    names (modules, optimisers, loss scaler, EMA), each under its name."""

    def resume_parts(self) -> dict[str, Any]:
        """The parts (each with `state_dict` and `load_state_dict`) by their names in the state."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {name: part.state_dict() for name, part in self.resume_parts().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, part in self.resume_parts().items():
            # A part that saved nothing stays as built: a disabled GradScaler saves {} and refuses to load it.
            if state[name]:
                part.load_state_dict(state[name])


def capture_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and every CUDA device), numpy's global RNG and `random`, as plain types."""
    np_state = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "python": random.getstate(),
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore what `capture_rng_state` captured (CUDA states only where devices are present)."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"][: torch.cuda.device_count()])
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, (Tensor, int, float, str, bool, bytes, type(None))):
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int)):
                raise TypeError(f"{where} has a key of type {type(key).__name__}; use str or int keys")
            _check_plain(item, f"{where}[{key!r}]")
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; training state may hold only tensors, numbers, strings, None "
        "and lists/tuples/dicts of them (so it loads with weights_only=True)"
    )
