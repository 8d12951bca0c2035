from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from lungforge.core.drawing import PALETTE
from lungforge.core.labels import LEFT_LUNG, NODULE
from lungforge.training.grid import save_grid


def test_grid_png_has_label_colours_beside_image(tmp_path):
    label = torch.zeros(2, 8, 8, dtype=torch.long)
    label[0, :4] = LEFT_LUNG
    label[1] = NODULE
    image = torch.linspace(-1, 1, 2 * 64).reshape(2, 1, 8, 8)
    path = save_grid(tmp_path / "g" / "grid.png", label, image)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (2 * 8 + 2, 8 + 2 + 8, 3)
    assert (grid[0, 0] == PALETTE[LEFT_LUNG]).all()
    assert (grid[10, 0] == PALETTE[NODULE]).all()
    # the image half is grey, from -1 (black) to 1 (white)
    assert grid[0, 10].tolist() == [0, 0, 0] and grid[-1, -1].tolist() == [255, 255, 255]
