"""A compact UNet (Ronneberger et al. 2015) that segments CT slices into the 6 label classes;
the fidelity benchmark's judge. Its bottleneck, averaged over space, is the feature vector of the
segmenter-feature Fréchet distance."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lungforge.core.labels import NUM_CLASSES


def _block(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3×3 conv → batch norm → ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class SegUNet(nn.Module):
    """UNet with `levels` 2× poolings; channels width·2^i at level i. Input (B, 1, S, S) in [-1, 1]
    with S divisible by 2^levels; output (B, NUM_CLASSES, S, S) logits."""

    def __init__(self, width: int = 16, levels: int = 3, num_classes: int = NUM_CLASSES):
        super().__init__()
        chans = [width * 2**i for i in range(levels + 1)]
        self.levels = levels
        self.feature_dims = chans[-1]
        self.down = nn.ModuleList([_block(1, chans[0])] + [_block(chans[i], chans[i + 1]) for i in range(levels)])
        self.up = nn.ModuleList([nn.ConvTranspose2d(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(levels))])
        self.merge = nn.ModuleList([_block(2 * chans[i], chans[i]) for i in reversed(range(levels))])
        self.head = nn.Conv2d(chans[0], num_classes, 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder activations, finest first; the last is the bottleneck (B, width·2^levels, S/2^levels, S/2^levels)."""
        skips = [self.down[0](x)]
        for block in self.down[1:]:
            skips.append(block(F.max_pool2d(skips[-1], 2)))
        return skips

    def segment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, NUM_CLASSES, S, S) and features (B, feature_dims): the bottleneck's spatial mean."""
        skips = self.encode(x)
        h = skips[-1]
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            h = merge(torch.cat([up(h), skip], dim=1))
        return self.head(h), skips[-1].mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.segment(x)[0]
