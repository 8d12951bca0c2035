"""Floating-point operations of the generators, counted by `torch.utils.flop_counter` (not a formula).

Counts run on the meta device (shapes only: instant for any preset, no memory) with the math
attention backend, whose matmuls the counter sees on every device; the fused attention kernels
used at run time do the same multiply-adds. A multiply-add counts as 2 FLOPs; elementwise ops
(norms, activations, the sampler's update) are not counted.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lungforge.models.presets import SDMConfig, SPADEConfig
from lungforge.models.sdm_unet import SDMUNet
from lungforge.models.spade import SPADEGenerator

META = torch.device("meta")


def count_flops(run: Callable[[], object]) -> int:
    """FLOPs of everything `run()` executes (forward, and backward if it calls one)."""
    counter = FlopCounterMode(display=False)
    with sdpa_kernel(SDPBackend.MATH), counter:
        run()
    return counter.get_total_flops()


def _onehot(batch: int, num_classes: int, size: int) -> torch.Tensor:
    return torch.zeros(batch, num_classes, size, size, device=META)


def _context(config: SDMConfig, batch: int) -> torch.Tensor | None:
    """The inpainting SDM's context input (None for a whole-slice SDM)."""
    if not config.context_channels:
        return None
    return torch.zeros(batch, config.context_channels, config.image_size, config.image_size, device=META)


def _sdm_forward(config: SDMConfig, batch_size: int, train: bool) -> Callable[[], torch.Tensor]:
    """One SDM UNet pass on meta inputs: `batch_size` images of `config.image_size`² (with their
    label maps, timesteps and inpainting context), the model in train or eval mode."""
    with torch.device(META):
        model = SDMUNet(config).train(train)
    x = torch.zeros(batch_size, config.in_channels, config.image_size, config.image_size, device=META)
    t = torch.zeros(batch_size, dtype=torch.long, device=META)
    onehot = _onehot(batch_size, config.num_classes, config.image_size)
    context = _context(config, batch_size)
    return lambda: model(x, t, onehot, context)


def sdm_forward_flops(config: SDMConfig, batch_size: int = 1) -> int:
    """FLOPs of one SDM UNet pass on `batch_size` images of `config.image_size`² (windows for an inpainting SDM)."""
    forward = _sdm_forward(config, batch_size, train=False)
    with torch.no_grad():
        return count_flops(forward)


def sdm_train_flops(config: SDMConfig, batch_size: int = 1) -> int:
    """FLOPs of one SDM UNet forward + backward (what a training step costs, optimiser excluded)."""
    forward = _sdm_forward(config, batch_size, train=True)
    return count_flops(lambda: forward().square().mean().backward())


def spade_forward_flops(config: SPADEConfig, batch_size: int = 1) -> int:
    """FLOPs of one SPADE generator pass on `batch_size` label maps of `config.image_size`²."""
    with torch.device(META):
        model = SPADEGenerator(config).eval()
    with torch.no_grad():
        return count_flops(lambda: model(_onehot(batch_size, config.num_classes, config.image_size)))
