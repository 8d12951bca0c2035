"""`info --verify` checks content against what was recorded and boxes against label maps (issue 19, item 4;
issue 27, item 2: each box is the tight box of exactly one nodule)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from lungforge.core.labels import NODULE
from lungforge.store import open_store
from lungforge.store.verify import verify_store


def rewrite(store: Path, name: str, edit) -> None:
    """Rewrite array `name` of `store` through zarr (valid checksums, every chunk kept) as `edit(values)`."""
    array = zarr.open_array(str(store / name), mode="r+").with_config({"write_empty_chunks": True})
    array[...] = edit(array[...])


def append_rows(store: Path, rows: np.ndarray) -> None:
    """Append copies of nodule-table rows `rows` to every `nodules/*` column of `store` (through zarr)."""
    for name in ("slice", "bbox", "diameter_mm"):
        array = zarr.open_array(str(store / "nodules" / name), mode="r+").with_config({"write_empty_chunks": True})
        values = array[...]
        array.resize((len(values) + len(rows), *values.shape[1:]))
        array[...] = np.concatenate([values, values[rows]])


def tight_boxes(store: Path) -> np.ndarray:
    """(M, 4) x0, y0, x1, y1 of the label-5 pixels of each nodule row's slice (one nodule per slice in these stores)."""
    opened = open_store(store)
    out = []
    for index in opened.nodules()["slice"]:
        rows, cols = np.nonzero(np.asarray(opened.label[int(index)]) == NODULE)
        out.append([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])
    return np.asarray(out, dtype=np.float32)


@pytest.fixture(scope="module")
def real(tmp_path_factory, store_builder) -> Path:
    return store_builder(tmp_path_factory.mktemp("verify") / "real.zarr", "real", seed=0, n_series=4)


@pytest.fixture()
def copy(real, tmp_path) -> Path:
    return Path(shutil.copytree(real, tmp_path / "copy.zarr"))


def test_an_intact_store_passes_every_check(real):
    result = verify_store(real)
    assert result.ok, result.problems
    assert result.content_recorded and result.attributes_recorded
    assert result.boxes_checked == open_store(real).nodules()["slice"].size > 0
    assert (open_store(real).nodules()["bbox"] == tight_boxes(real)).all()


def test_zeroed_images_with_valid_checksums_fail(copy):
    rewrite(copy, "image", np.zeros_like)
    problems = verify_store(copy).problems
    assert any(p.startswith("image: content differs from what was recorded") for p in problems), problems


def test_shards_swapped_in_from_another_store_of_the_same_size_fail(copy, tmp_path, store_builder):
    other = store_builder(tmp_path / "other.zarr", "real", seed=5, n_series=4)
    for name in ("image", "label"):
        shutil.rmtree(copy / name)
        shutil.copytree(other / name, copy / name)
    result = verify_store(copy)
    assert not result.ok
    assert any(p.startswith("label: content differs") for p in result.problems), result.problems
    assert any(p.startswith("nodules/bbox: ") for p in result.problems), result.problems  # the boxes tell too


def test_boxes_off_their_nodules_fail(copy):
    rewrite(copy, "nodules/bbox", lambda b: np.where(np.arange(len(b))[:, None] % 2 == 0, b + [20, 0, 20, 0], b).astype(b.dtype))
    problems = verify_store(copy).problems
    n = open_store(copy).nodules()["slice"].size
    assert any(p.startswith(f"nodules/bbox: {(n + 1) // 2} of {n} boxes cover no nodule pixel") for p in problems), problems
    assert any(p.startswith(f"label: {(n + 1) // 2} nodules (label-5 components) lie in no box") for p in problems), problems


def test_a_box_reaching_past_its_nodule_fails(copy):
    rewrite(copy, "nodules/bbox", lambda b: np.concatenate([b[:1] + [-6, -6, 6, 6], b[1:]]).astype(b.dtype))
    problems = verify_store(copy).problems
    assert any(p.startswith("nodules/bbox: 1 of") and "not the tight box of the nodule" in p and "first row 0" in p for p in problems), (
        problems
    )


def test_a_box_shrunk_to_a_corner_of_its_nodule_fails(copy):
    store = open_store(copy)
    x0, y0, x1, y1 = store.nodules()["bbox"][0]
    rows, cols = np.nonzero(np.asarray(store.label[int(store.nodules()["slice"][0])]) == NODULE)
    corner = (cols[rows == rows.min()].min(), rows.min())  # a 2×2 box over the nodule's first pixel
    assert x1 - x0 >= 5 and y1 - y0 >= 5
    rewrite(copy, "nodules/bbox", lambda b: np.concatenate([[[*corner, corner[0] + 2, corner[1] + 2]], b[1:]]).astype(b.dtype))
    problems = verify_store(copy).problems
    detail = f"box x {corner[0]:g}..{corner[0] + 2:g}, y {corner[1]:g}..{corner[1] + 2:g}; nodule x {x0:g}..{x1:g}, y {y0:g}..{y1:g}"
    assert any(p.startswith("nodules/bbox: 1 of") and "first row 0 (slice " in p and detail in p for p in problems), problems


def test_a_box_shrunk_off_its_nodule_pixels_fails(copy):
    boxes = open_store(copy).nodules()["bbox"]
    row = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))  # the largest disk: its box's corners are empty
    x0, y0 = boxes[row][:2]
    rewrite(copy, "nodules/bbox", lambda b: np.where(np.arange(len(b))[:, None] == row, [x0, y0, x0 + 1, y0 + 1], b).astype(b.dtype))
    problems = verify_store(copy).problems
    assert any(p.startswith("nodules/bbox: 1 of") and "cover no nodule pixel" in p for p in problems), problems
    assert any(p.startswith("label: 1 nodules (label-5 components) lie in no box") for p in problems), problems


def test_a_nodule_in_two_pieces_under_one_box_passes(copy):
    index = int(open_store(copy).nodules()["slice"][0])

    def two_pieces(labels):
        labels[index][labels[index] == NODULE] = labels[index, 32, 10]  # the disk gone (lung)
        labels[index, 20:23, 10:13] = labels[index, 27:29, 16:18] = NODULE  # one mask, two 8-separated pieces
        return labels

    rewrite(copy, "label", two_pieces)
    rewrite(copy, "nodules/bbox", lambda b: np.concatenate([[[10, 20, 18, 29]], b[1:]]).astype(b.dtype))
    problems = verify_store(copy).problems
    assert problems and all("content differs" in p for p in problems), problems


def test_a_box_one_pixel_off_fails(copy):
    rewrite(copy, "nodules/bbox", lambda b: np.concatenate([b[:1] + [0, 0, 1, 0], b[1:]]).astype(b.dtype))
    problems = verify_store(copy).problems
    assert any(p.startswith("nodules/bbox: 1 of") and "not the tight box" in p for p in problems), problems


def test_a_nodule_with_two_boxes_fails(copy):
    append_rows(copy, np.array([0]))
    problems = verify_store(copy).problems
    slice_ = int(open_store(copy).nodules()["slice"][0])
    assert any(
        p == f"nodules/bbox: 1 nodules (label-5 components) lie in more than one box, first on slice {slice_} (2 boxes)" for p in problems
    ), problems


def test_a_second_box_over_part_of_a_nodule_fails(copy):
    append_rows(copy, np.array([0]))
    x0, y0, x1, y1 = open_store(copy).nodules()["bbox"][0]
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    rewrite(copy, "nodules/bbox", lambda b: np.concatenate([b[:-1], [[cx, cy, cx + 2, cy + 2]]]).astype(b.dtype))
    problems = verify_store(copy).problems
    assert any(p.startswith("nodules/bbox: 1 nodules (label-5 components) lie in more than one box") for p in problems), problems
    assert any(p.startswith("nodules/bbox: 1 of") and "not the tight box" in p for p in problems), problems


def test_a_nodule_without_a_box_fails(copy):
    store = open_store(copy)
    row = int(store.nodules()["slice"][0])
    x0, _y0, _x1, _y1 = store.nodules()["bbox"][0]
    far_x = 5 if x0 > 32 else 55

    def paint(labels):
        labels[row, 30:33, far_x : far_x + 3] = NODULE
        return labels

    rewrite(copy, "label", paint)
    problems = verify_store(copy).problems
    assert any(p.startswith("label: 1 nodules (label-5 components) lie in no box") and f"slice {row}" in p for p in problems), problems
