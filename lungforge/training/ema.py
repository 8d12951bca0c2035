"""Exponential moving average of model weights (the weights an SDM checkpoint ships)."""

from __future__ import annotations

from typing import SupportsFloat, SupportsInt, cast

import torch
from torch import Tensor, nn


class EMA:
    """Shadow weights θ̄ ← d·θ̄ + (1−d)·θ after every optimiser step.

    The effective decay is `min(decay, (1 + n) / (10 + n))` after n updates, so short runs are
    not dominated by the random initialisation; it reaches `decay` after ~9/(1−decay) updates.
    Floating-point parameters and buffers are averaged; integer buffers are copied.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow: dict[str, Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next update will use."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards `model`'s current weights."""
        weight = 1.0 - self.current_decay()
        state = model.state_dict()
        floats = [k for k, v in self.shadow.items() if v.is_floating_point()]
        if floats:
            torch._foreach_lerp_([self.shadow[k] for k in floats], [state[k].detach() for k in floats], weight)
        for k, v in self.shadow.items():
            if not v.is_floating_point():
                v.copy_(state[k])
        self.updates += 1

    def copy_to(self, model: nn.Module) -> None:
        """Load the shadow weights into `model` (e.g. a separate sampling copy)."""
        model.load_state_dict(self.shadow, strict=True)

    def state_dict(self) -> dict[str, object]:
        """Plain state for a resume file: decay, update count and the shadow tensors."""
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore what :meth:`state_dict` returned (tensors are copied onto the shadow's device)."""
        shadow = state["shadow"]
        if not isinstance(shadow, dict) or set(shadow) != set(self.shadow):
            raise ValueError("EMA state does not match the model's parameters")
        for k, v in shadow.items():
            self.shadow[k].copy_(v)
        self.decay = float(cast(SupportsFloat, state["decay"]))
        self.updates = int(cast(SupportsInt, state["updates"]))
