"""Building blocks of the SDM UNet: timestep embedding, SPADE-GroupNorm, ResBlocks, attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from lungforge.core.labels import NUM_CLASSES


def labels_to_onehot(label: torch.Tensor, num_classes: int = NUM_CLASSES) -> torch.Tensor:
    """One-hot encode a label map: (B, H, W) integer ids in 0..num_classes-1 → (B, C, H, W) float32."""
    if label.ndim != 3 or label.dtype.is_floating_point:
        raise ValueError(f"label must be an integer tensor of shape (B, H, W), got {label.dtype} {tuple(label.shape)}")
    if label.numel():
        low, high = int(label.min()), int(label.max())
        if low < 0 or high >= num_classes:
            raise ValueError(f"label ids must be in 0..{num_classes - 1}, got values in {low}..{high}")
    return F.one_hot(label.long(), num_classes).permute(0, 3, 1, 2).float()


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (B,) timesteps (integer or fractional) → (B, dim) float32."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim % 2))


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a module's parameters so a residual branch starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class SPADEGroupNorm(nn.Module):
    """GroupNorm without affine, modulated by γ/β predicted from the label map: x̂·(1+γ)+β.

    The one-hot map (B, num_classes, H', W') is resized with nearest neighbour to x's size.
    """

    def __init__(self, channels: int, num_classes: int, hidden: int, groups: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, channels, affine=False)
        self.shared = nn.Sequential(nn.Conv2d(num_classes, hidden, 3, padding=1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, padding=1)
        self.beta = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(onehot.to(x.dtype), size=x.shape[-2:], mode="nearest")
        features = self.shared(seg)
        return self.norm(x) * (1 + self.gamma(features)) + self.beta(features)


class ResBlock(nn.Module):
    """Residual block conditioned on the timestep embedding and, if `num_classes`, on the label map.

    Label-free blocks (the encoder) normalise with affine GroupNorm; label-conditioned blocks
    (middle and decoder) with SPADE-GroupNorm. `up`/`down` resample by 2 inside the block.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int,
        *,
        groups: int,
        dropout: float = 0.0,
        use_scale_shift_norm: bool = True,
        num_classes: int | None = None,
        label_hidden: int = 128,
        up: bool = False,
        down: bool = False,
        use_checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.label_conditioned = num_classes is not None
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_norm: nn.Module
        self.out_norm: nn.Module
        if num_classes is not None:
            self.in_norm = SPADEGroupNorm(channels, num_classes, label_hidden, groups)
            self.out_norm = SPADEGroupNorm(out_channels, num_classes, label_hidden, groups)
        else:
            self.in_norm = nn.GroupNorm(groups, channels)
            self.out_norm = nn.GroupNorm(groups, out_channels)
        if up:
            self.resample: nn.Module = nn.Upsample(scale_factor=2, mode="nearest")
        elif down:
            self.resample = nn.AvgPool2d(2)
        else:
            self.resample = nn.Identity()
        self.in_conv = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels * (2 if use_scale_shift_norm else 1)))
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1)))
        self.skip = nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)

    def _norm(self, norm: nn.Module, x: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
        return norm(x, onehot) if self.label_conditioned else norm(x)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor, onehot: torch.Tensor | None) -> torch.Tensor:
        h = self.resample(F.silu(self._norm(self.in_norm, x, onehot)))
        x = self.resample(x)
        h = self.in_conv(h)
        emb_out = self.emb(emb).to(h.dtype)[..., None, None]
        if self.use_scale_shift_norm:
            scale, shift = emb_out.chunk(2, dim=1)
            h = self._norm(self.out_norm, h, onehot) * (1 + scale) + shift
        else:
            h = self._norm(self.out_norm, h + emb_out, onehot)
        return self.skip(x) + self.out_layers(h)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, onehot: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W), emb (B, E), onehot (B, num_classes, H', W') for label-conditioned blocks."""
        if self.label_conditioned and onehot is None:
            raise ValueError("this ResBlock is label-conditioned and needs a one-hot label map")
        if self.use_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, onehot, use_reentrant=False)
        return self._forward(x, emb, onehot)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H·W positions, with heads of `head_channels` channels."""

    def __init__(self, channels: int, head_channels: int, groups: int) -> None:
        super().__init__()
        if channels % head_channels:
            raise ValueError(f"channels {channels} must be divisible by head_channels {head_channels}")
        self.num_heads = channels // head_channels
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C, H, W) → (B, C, H, W)."""
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, h * w))
        q, k, v = qkv.reshape(b, 3, self.num_heads, c // self.num_heads, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h * w)
        return x + self.proj(out).reshape(b, c, h, w)
