"""Semantic Diffusion Model UNet (Wang et al. 2022): label maps enter only the middle and decoder."""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import nn

from lungforge.models.layers import AttentionBlock, ResBlock, timestep_embedding, zero_init
from lungforge.models.presets import SDMConfig


class _BlockOptions(TypedDict, total=False):
    """Keyword options shared by the UNet's ResBlocks (see :class:`ResBlock`)."""

    groups: int
    dropout: float
    use_scale_shift_norm: bool
    use_checkpoint: bool
    num_classes: int
    label_hidden: int


class _Stage(nn.ModuleList):
    """A run of layers fed the timestep embedding (all ResBlocks) and the label map (SPADE ResBlocks)."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                x = layer(x, emb, onehot if layer.label_conditioned else None)
            else:
                x = layer(x)
        return x


class SDMUNet(nn.Module):
    """ε-prediction UNet with learned-range variance, conditioned on a one-hot label map.

    `forward(x (B, in_channels, H, W), t (B,) timesteps, onehot (B, num_classes, H, W))`
    returns (B, out_channels, H, W): ε, then the variance interpolation v when `learn_sigma`.
    An inpainting SDM (`config.context_channels` > 0) also takes `context` (B, context_channels,
    H, W), concatenated to x before the first conv.
    """

    def __init__(self, config: SDMConfig, *, use_checkpoint: bool = False) -> None:
        super().__init__()
        self.config = config
        c = config
        emb_ch = 4 * c.model_channels
        self.time_embed = nn.Sequential(nn.Linear(c.model_channels, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        common: _BlockOptions = {
            "groups": c.norm_groups,
            "dropout": c.dropout,
            "use_scale_shift_norm": c.use_scale_shift_norm,
            "use_checkpoint": use_checkpoint,
        }
        labelled: _BlockOptions = {**common, "num_classes": c.num_classes, "label_hidden": c.label_embed_channels}

        def attention(channels: int) -> AttentionBlock:
            return AttentionBlock(channels, c.num_head_channels, c.norm_groups)

        ch = c.model_channels
        resolution = c.image_size
        self.input_blocks = nn.ModuleList([_Stage([nn.Conv2d(c.in_channels + c.context_channels, ch, 3, padding=1)])])
        skip_channels = [ch]
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_ch, mult * c.model_channels, **common)]
                ch = mult * c.model_channels
                if resolution in c.attention_resolutions:
                    layers.append(attention(ch))
                self.input_blocks.append(_Stage(layers))
                skip_channels.append(ch)
            if level != len(c.channel_mult) - 1:
                down = ResBlock(ch, emb_ch, ch, down=True, **common) if c.resblock_updown else nn.AvgPool2d(2)
                self.input_blocks.append(_Stage([down]))
                skip_channels.append(ch)
                resolution //= 2

        self.middle_block = _Stage([ResBlock(ch, emb_ch, ch, **labelled), attention(ch), ResBlock(ch, emb_ch, ch, **labelled)])

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_ch, mult * c.model_channels, **labelled)]
                ch = mult * c.model_channels
                if resolution in c.attention_resolutions:
                    layers.append(attention(ch))
                if level and i == c.num_res_blocks:
                    layers.append(
                        ResBlock(ch, emb_ch, ch, up=True, **labelled) if c.resblock_updown else nn.Upsample(scale_factor=2, mode="nearest")
                    )
                    resolution *= 2
                self.output_blocks.append(_Stage(layers))

        self.out = nn.Sequential(nn.GroupNorm(c.norm_groups, ch), nn.SiLU(), zero_init(nn.Conv2d(ch, c.out_channels, 3, padding=1)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, onehot: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) noisy image, t (B,) timesteps, onehot (B, num_classes, H, W) → (B, out, H, W).

        `context` (B, context_channels, H, W): required by an inpainting SDM, refused otherwise.
        """
        expected = self.config.context_channels
        got = 0 if context is None else context.shape[1]
        if got != expected:
            raise ValueError(f"this SDM takes {expected} context channels, got {got}")
        emb = self.time_embed(timestep_embedding(t, self.config.model_channels))
        h = x if context is None else torch.cat([x, context.to(x.dtype)], dim=1)
        skips = []
        for stage in self.input_blocks:
            h = stage(h, emb, onehot)
            skips.append(h)
        h = self.middle_block(h, emb, onehot)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, skips.pop().to(h.dtype)], dim=1), emb, onehot)
        return self.out(h).to(x.dtype)
