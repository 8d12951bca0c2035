"""Classical augmentation of a real image, the `classic` control's transform (array level).

One draw is a random symmetry of the square (quarter turns and a flip), a small affine about the
image centre (rotation within ±ROTATE_DEG, isotropic scale within SCALE, shift within SHIFT_PX)
applied with bilinear interpolation and edge replication, and an intensity jitter (gain within
GAIN, offset within OFFSET uint8 steps). Boxes follow the geometry exactly (the bounding box of
the moved corners, clipped to the image).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ROTATE_DEG = 15.0
SCALE = (0.9, 1.1)
SHIFT_PX = 2.0
GAIN = (0.9, 1.1)
OFFSET = 8.0
"""uint8 steps, about 25 HU at the store's window."""


def classic_matrix(size: int, rng: np.random.Generator) -> np.ndarray:
    """(3, 3) homogeneous map of (row, col) pixel centres of a (size, size) image to the augmented one."""
    quarter = int(rng.integers(4))
    flip = bool(rng.integers(2))
    angle = np.deg2rad(90.0 * quarter + rng.uniform(-ROTATE_DEG, ROTATE_DEG))
    scale = rng.uniform(*SCALE)
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if flip:
        linear = linear @ np.diag([1.0, -1.0])
    centre = np.full(2, (size - 1) / 2.0)
    shift = rng.uniform(-SHIFT_PX, SHIFT_PX, 2)
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre + shift - linear @ centre
    return matrix


def classic_image(image: np.ndarray, matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`image` (S, S) uint8 moved by `matrix` (:func:`classic_matrix`) and intensity-jittered, (S, S) uint8."""
    inverse = np.linalg.inv(matrix)
    moved = ndimage.affine_transform(image.astype(np.float32), inverse[:2, :2], offset=inverse[:2, 2], order=1, mode="nearest")
    jittered = rng.uniform(*GAIN) * moved + rng.uniform(-OFFSET, OFFSET)
    return np.clip(np.round(jittered), 0, 255).astype(np.uint8)


def classic_boxes(boxes: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Boxes (K, 4) x0, y0, x1, y1 px (pixel edges) moved by `matrix`: their corners' bounding box,
    clipped to the image; a box moved wholly off the image is dropped."""
    if boxes.shape[0] == 0:
        return boxes.astype(np.float32).reshape(0, 4)
    x0, y0, x1, y1 = (boxes[:, i] - 0.5 for i in range(4))  # edges in pixel-centre coordinates
    corners = np.stack([np.stack([y, x, np.ones_like(x)]) for y, x in ((y0, x0), (y0, x1), (y1, x0), (y1, x1))])  # (4, 3, K)
    moved = np.einsum("ij,cjk->cik", matrix, corners)[:, :2] + 0.5  # (4, 2 row/col, K)
    lo, hi = np.clip(moved.min(axis=0), 0, size), np.clip(moved.max(axis=0), 0, size)
    moved_boxes = np.stack([lo[1], lo[0], hi[1], hi[0]], axis=1).astype(np.float32)
    return moved_boxes[(moved_boxes[:, 2] > moved_boxes[:, 0]) & (moved_boxes[:, 3] > moved_boxes[:, 1])]


def classic_copies(
    images: np.ndarray, boxes: list[np.ndarray] | None, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """`count` augmented copies of `images` (n, S, S) uint8 (and their `boxes`, (K, 4) px each),
    each source used in turn in one seeded random order: (rows (count,) of the sources, images
    (count, S, S) uint8, moved boxes or None)."""
    n, size = images.shape[0], images.shape[-1]
    if n == 0 or count <= 0:
        return np.zeros(0, np.int64), np.zeros((0, *images.shape[1:]), np.uint8), [] if boxes is not None else None
    rows = np.concatenate([rng.permutation(n) for _ in range(-(-count // n))])[:count]
    out, moved = np.empty((count, *images.shape[1:]), np.uint8), []
    for i, row in enumerate(rows.tolist()):
        matrix = classic_matrix(size, rng)
        out[i] = classic_image(images[row], matrix, rng)
        if boxes is not None:
            moved.append(classic_boxes(boxes[row], matrix, size))
    return rows, out, moved if boxes is not None else None
