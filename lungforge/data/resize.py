"""Resizing slices to a working resolution: images bilinear (antialiased), label maps nearest.

The one place that resizes label maps: training, augment and bench all call
:func:`resize_label` / :func:`resize_label_maps`, so a nodule lands on the same pixels
everywhere. Labels use nearest neighbour at pixel centres (torch's ``nearest-exact``, as PIL and
skimage): it stays aligned with the bilinear image resize (``align_corners=False``), where
torch's plain ``nearest`` shifts the map by up to one source pixel.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LABEL_MODE = "nearest-exact"


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) float → (N, C, size, size), bilinear with antialiasing."""
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def resize_label(label: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) integer label maps → (N, size, size) long, nearest neighbour (ids never mix)."""
    return F.interpolate(label[:, None].float(), size=(size, size), mode=LABEL_MODE)[:, 0].long()


def resize_images_uint8(images: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) uint8 → (N, size, size) uint8, bilinear with antialiasing, rounded."""
    images = np.asarray(images)
    if images.shape[1:] == (size, size):
        return images.astype(np.uint8, copy=False)
    out = resize_image(torch.from_numpy(images.astype(np.float32))[:, None], size)[:, 0]
    return out.round().clamp(0, 255).to(torch.uint8).numpy()


def resize_label_maps(labels: np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) uint8 label maps → (N, size, size) uint8 with :func:`resize_label`."""
    labels = np.asarray(labels)
    if labels.shape[1:] == (size, size):
        return labels.astype(np.uint8, copy=False)
    return resize_label(torch.from_numpy(labels.astype(np.int64)), size).to(torch.uint8).numpy()


def resize_slices(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 image and label → (N, size, size) uint8 each, as the models see them."""
    return resize_images_uint8(image, size), resize_label_maps(label, size)
