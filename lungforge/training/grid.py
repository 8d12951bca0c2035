"""Sample grids: one row per sample, the label map in colour beside the generated slice (PNG)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from lungforge.core.drawing import colour_labels


def grid_image(label: torch.Tensor, image: torch.Tensor, gap_px: int = 2) -> np.ndarray:
    """Grid (rows·H + gaps, 2·W + gap, 3) uint8: per row, coloured label (B, H, W) | image (B, 1, H, W) in [-1, 1]."""
    labels = label.detach().cpu().numpy()
    grey = ((image.detach().float().cpu().clamp(-1, 1)[:, 0].numpy() + 1.0) * 127.5).round().astype(np.uint8)
    b, h, _w = labels.shape
    gap = np.full((b, h, gap_px, 3), 255, dtype=np.uint8)
    tiles = np.concatenate([colour_labels(labels), gap, np.repeat(grey[..., None], 3, axis=-1)], axis=2)
    out = np.full((b * h + (b - 1) * gap_px, tiles.shape[2], 3), 255, dtype=np.uint8)
    for i in range(b):
        out[i * (h + gap_px) : i * (h + gap_px) + h] = tiles[i]
    return out


def save_grid(path: str | os.PathLike, label: torch.Tensor, image: torch.Tensor) -> Path:
    """Write :func:`grid_image` of `label` (B, H, W) and `image` (B, 1, H, W) to `path` as PNG."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    Image.fromarray(grid_image(label, image)).save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
