"""Classifier-free guidance: condition dropout for training, guided ε for sampling."""

from __future__ import annotations

from collections.abc import Callable

import torch

from lungforge.diffusion.gaussian import Model


def drop_condition(onehot: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero each sample's whole one-hot map (B, K, H, W) with probability p (the null condition)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition drop probability must be in [0, 1], got {p}")
    device = generator.device if generator is not None else onehot.device
    keep = torch.rand(onehot.shape[0], generator=generator, device=device) >= p
    return onehot * keep.to(device=onehot.device, dtype=onehot.dtype).reshape(-1, 1, 1, 1)


def combine(cond: torch.Tensor, uncond: torch.Tensor, scale: float, eps_channels: int) -> torch.Tensor:
    """ε_u + s·(ε_c − ε_u) on the first `eps_channels` channels; the rest (variance) come from `cond`."""
    c = eps_channels
    eps = uncond[:, :c] + scale * (cond[:, :c] - uncond[:, :c])
    return torch.cat([eps, cond[:, c:]], dim=1)


def guided_output(model: Model, x: torch.Tensor, t: torch.Tensor, onehot: torch.Tensor, scale: float) -> torch.Tensor:
    """Model output with classifier-free guidance; both passes share ONE batched forward.

    x (B, C, H, W), t (B,) training step ids, onehot (B, K, H, W); returns (B, 2C, H, W) float32.
    """
    if scale == 1.0:
        return model(x, t, onehot).float()
    both = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([onehot, torch.zeros_like(onehot)])).float()
    cond, uncond = both.chunk(2)
    return combine(cond, uncond, scale, x.shape[1])


def with_context(model: Callable[..., torch.Tensor], context: torch.Tensor) -> Model:
    """`model(x, t, onehot, context)` with a fixed context (B, C, H, W), as a plain :data:`Model`.

    Guided sampling runs the conditional and unconditional passes as one batch of 2B; both see
    the same context (guidance drops the label map only), so the context is repeated to fit.
    """

    def forward(x: torch.Tensor, t: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        repeats = x.shape[0] // context.shape[0]
        return model(x, t, onehot, context.repeat(repeats, 1, 1, 1))

    return forward
