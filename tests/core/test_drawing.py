"""Drawing primitives: palette, overlay, boxes and the contact-sheet layout."""

from __future__ import annotations

import numpy as np

from lungforge.core.drawing import BOX_COLOUR, OVERLAY_ALPHA, PALETTE, colour_labels, contact_sheet, draw_boxes, overlay
from lungforge.core.labels import BACKGROUND, LEFT_LUNG, NODULE


def test_overlay_blends_label_colours_and_keeps_background_grey() -> None:
    image = np.full((4, 4), 100, np.uint8)
    label = np.zeros((4, 4), np.uint8)
    label[0, 0], label[1, 1] = NODULE, LEFT_LUNG
    rgb = overlay(image, label)
    a = OVERLAY_ALPHA[NODULE]
    np.testing.assert_allclose(rgb[0, 0], np.round((1 - a) * 100 + a * PALETTE[NODULE].astype(float)), atol=0.5)
    assert rgb[1, 1].tolist() != [100, 100, 100] and rgb[3, 3].tolist() == [100, 100, 100]
    assert OVERLAY_ALPHA[BACKGROUND] == 0
    assert (colour_labels(label)[0, 0] == PALETTE[NODULE]).all()


def test_boxes_are_outlines_with_exclusive_far_edges() -> None:
    rgb = draw_boxes(np.zeros((10, 10, 3), np.uint8), np.array([[2.0, 3.0, 6.0, 8.0]]))
    drawn = (rgb == BOX_COLOUR).all(axis=-1)
    expected = np.zeros((10, 10), bool)
    expected[3:8, 2:6] = True
    expected[4:7, 3:5] = False
    np.testing.assert_array_equal(drawn, expected)
    assert (draw_boxes(rgb, np.array([[20.0, 20.0, 30.0, 30.0]])) == rgb).all()


def test_contact_sheet_layout_and_captions() -> None:
    tiles = [np.full((8, 12, 3), 50 * i, np.uint8) for i in range(5)]
    sheet = contact_sheet(tiles, [f"#{i}" for i in range(5)], columns=3, gap_px=2, caption_px=10)
    assert sheet.shape == (2 * (10 + 8) + 3 * 2, 3 * 12 + 4 * 2, 3)
    top, left = 2 + 18 + 2 + 10, 2 + 14
    assert (sheet[top : top + 8, left : left + 12] == 200).all()
    assert (sheet[2:12, 2:14] < 128).any()


def test_scored_boxes_draw_the_score_in_the_box_colour() -> None:
    from lungforge.core.drawing import PREDICTION_COLOUR, draw_scored_boxes

    rgb = np.zeros((40, 40, 3), np.uint8)
    out = draw_scored_boxes(rgb, np.array([[5.0, 20.0, 15.0, 30.0]]), [0.87])
    red = (out == PREDICTION_COLOUR).all(axis=-1)
    assert red[20, 5:15].all()  # the box outline
    assert red[:20].any()  # the score text above the box
    assert not red[:20, 30:].any()


def test_localization_tile_shows_truth_and_scored_predictions_in_two_colours() -> None:
    from lungforge.bench.reporting.figures import EXAMPLE_TILE_PX, localization_tile
    from lungforge.core.drawing import PREDICTION_COLOUR, TRUTH_COLOUR

    example = {"truth": [[10.0, 10.0, 20.0, 20.0]], "predicted": [[30.0, 30.0, 40.0, 40.0]], "scores": [0.9]}
    tile = localization_tile(np.full((64, 64), 80, np.uint8), example)
    assert tile.shape == (EXAMPLE_TILE_PX, EXAMPLE_TILE_PX, 3)
    green = (tile == TRUTH_COLOUR).all(axis=-1)
    red = (tile == PREDICTION_COLOUR).all(axis=-1)
    assert green[40, 40:80].all() and red[120, 120:160].all()
    assert red[100:120].any()  # the score, written above the predicted box
