"""Resizing slices to a model's resolution: images bilinear (antialiased), label maps nearest."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) float → (N, C, size, size), bilinear with antialiasing."""
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def resize_label(label: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) integer label maps → (N, size, size) long, nearest neighbour (ids never mix)."""
    return F.interpolate(label[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()


def resize_slices(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 image and label → (N, size, size) uint8 each, as the models see them."""
    img = resize_image(torch.from_numpy(image.astype(np.float32))[:, None], size)[:, 0]
    lab = resize_label(torch.from_numpy(label.astype(np.int64)), size)
    return img.round().clamp(0, 255).to(torch.uint8).numpy(), lab.to(torch.uint8).numpy()
