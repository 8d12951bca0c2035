"""Drawing slices as RGB arrays: the label palette, label-map overlays, boxes and contact sheets.

The one place lungforge draws pixels: `lungforge view`, `augment --preview`, training sample
grids and the bench report figures all use these colours and functions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lungforge.core.labels import BACKGROUND, BODY, LEFT_LUNG, NODULE, NUM_CLASSES, RIGHT_LUNG, TRACHEA

PALETTE = np.zeros((NUM_CLASSES, 3), dtype=np.uint8)
PALETTE[BACKGROUND] = (0, 0, 0)
PALETTE[LEFT_LUNG] = (66, 135, 245)
PALETTE[RIGHT_LUNG] = (80, 200, 120)
PALETTE[TRACHEA] = (250, 220, 60)
PALETTE[BODY] = (120, 120, 120)
PALETTE[NODULE] = (230, 40, 40)

# Overlay opacity per label: body covers most of a slice, so it is only tinted.
OVERLAY_ALPHA = np.zeros(NUM_CLASSES, dtype=np.float32)
OVERLAY_ALPHA[[LEFT_LUNG, RIGHT_LUNG, TRACHEA]] = 0.35
OVERLAY_ALPHA[BODY] = 0.12
OVERLAY_ALPHA[NODULE] = 0.6

BOX_COLOUR = (255, 255, 0)
TRUTH_COLOUR = (0, 255, 0)
PREDICTION_COLOUR = (255, 0, 0)
BACKDROP = 255


def colour_labels(label: np.ndarray) -> np.ndarray:
    """Label map (..., H, W) integer ids → (..., H, W, 3) uint8 RGB with :data:`PALETTE`."""
    return PALETTE[np.clip(label, 0, NUM_CLASSES - 1)]


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """(..., H, W) uint8 windowed CT → (..., H, W, 3) uint8 grey RGB."""
    return np.repeat(np.asarray(image, dtype=np.uint8)[..., None], 3, axis=-1)


def overlay(image: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(H, W) uint8 CT with the label map blended over it (opacity :data:`OVERLAY_ALPHA`) → (H, W, 3) uint8."""
    ids = np.clip(label, 0, NUM_CLASSES - 1)
    alpha = OVERLAY_ALPHA[ids][..., None]
    blended = (1.0 - alpha) * grey_rgb(image) + alpha * PALETTE[ids]
    return np.round(blended).astype(np.uint8)


def draw_boxes(rgb: np.ndarray, boxes: np.ndarray, colour: Sequence[int] = BOX_COLOUR, width: int = 1) -> np.ndarray:
    """A copy of (H, W, 3) `rgb` with box outlines; boxes (K, 4) x0, y0, x1, y1 px (x1, y1 exclusive)."""
    out = rgb.copy()
    h, w = out.shape[:2]
    for x0, y0, x1, y1 in np.round(np.asarray(boxes, dtype=np.float64).reshape(-1, 4)).astype(int):
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(max(x1, x0 + 1), w), min(max(y1, y0 + 1), h)
        if x0 >= w or y0 >= h:
            continue
        t = max(1, min(width, (x1 - x0 + 1) // 2, (y1 - y0 + 1) // 2))
        out[y0 : y0 + t, x0:x1] = colour
        out[y1 - t : y1, x0:x1] = colour
        out[y0:y1, x0 : x0 + t] = colour
        out[y0:y1, x1 - t : x1] = colour
    return out


def enlarge(rgb: np.ndarray, factor: int) -> np.ndarray:
    """(H, W, 3) → (factor·H, factor·W, 3) by pixel repetition (labels and boxes stay crisp)."""
    return np.repeat(np.repeat(rgb, factor, axis=0), factor, axis=1)


def draw_scored_boxes(
    rgb: np.ndarray, boxes: np.ndarray, scores: Sequence[float], colour: Sequence[int] = PREDICTION_COLOUR, width: int = 1
) -> np.ndarray:
    """A copy of (H, W, 3) `rgb` with box outlines (K, 4 x0, y0, x1, y1 px) and each box's score
    (two decimals) written in `colour` just above it (below it at the top edge)."""
    from PIL import Image, ImageDraw

    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(scores) != boxes.shape[0]:
        raise ValueError(f"got {len(scores)} scores for {boxes.shape[0]} boxes, expected one each")
    canvas = Image.fromarray(draw_boxes(rgb, boxes, colour, width))
    draw = ImageDraw.Draw(canvas)
    draw.fontmode = "1"  # no antialiasing: the text is exactly `colour`
    for (x0, y0, _, y1), score in zip(boxes, scores):
        top = y0 - 11 if y0 >= 11 else y1 + 1
        draw.text((max(0.0, x0), top), f"{score:.2f}", fill=tuple(colour))
    return np.array(canvas)


def contact_sheet_shape(count: int, tile_hw: tuple[int, int], columns: int, gap_px: int = 4, caption_px: int = 14) -> tuple[int, int]:
    """(height, width) in pixels of the :func:`contact_sheet` of `count` tiles of `tile_hw` pixels."""
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    return rows * (caption_px + tile_hw[0]) + (rows + 1) * gap_px, columns * tile_hw[1] + (columns + 1) * gap_px


def contact_sheet(tiles: Sequence[np.ndarray], captions: Sequence[str], columns: int, gap_px: int = 4, caption_px: int = 14) -> np.ndarray:
    """Tiles (H, W, 3) uint8 of one size laid out `columns` wide, each under its caption → RGB uint8.

    Shape: (rows·(caption_px + H) + (rows + 1)·gap_px, columns·W + (columns + 1)·gap_px, 3).
    """
    from PIL import Image, ImageDraw

    h, w = tiles[0].shape[:2]
    columns = max(1, min(columns, len(tiles)))
    cell_h = caption_px + h
    sheet = np.full((*contact_sheet_shape(len(tiles), (h, w), columns, gap_px, caption_px), 3), BACKDROP, np.uint8)
    origins = [(gap_px + (i % columns) * (w + gap_px), gap_px + (i // columns) * (cell_h + gap_px)) for i in range(len(tiles))]
    canvas = Image.fromarray(sheet)
    draw = ImageDraw.Draw(canvas)
    for (left, top), caption in zip(origins, captions):
        draw.text((left + 1, top + 1), caption, fill=(0, 0, 0))
    # Tiles are pasted after the text, so a caption taller or wider than its strip never covers pixels.
    sheet = np.array(canvas)
    for (left, top), tile in zip(origins, tiles):
        sheet[top + caption_px : top + caption_px + h, left : left + w] = tile
    return sheet
