"""`info --verify` checks content against what was recorded and boxes against label maps (issue 19, item 4)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from lungforge.data.store import open_store
from lungforge.data.verify import verify_store
from lungforge.labels import NODULE


def rewrite(store: Path, name: str, edit) -> None:
    """Rewrite array `name` of `store` through zarr (valid checksums, every chunk kept) as `edit(values)`."""
    array = zarr.open_array(str(store / name), mode="r+").with_config({"write_empty_chunks": True})
    array[...] = edit(array[...])


def forget_recorded_content(store: Path) -> None:
    """Make `store` look finished before content digests were recorded, so only the table checks speak."""
    meta = json.loads((store / "zarr.json").read_text())
    del meta["attributes"]["content"]
    (store / "zarr.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def real(tmp_path_factory, store_builder) -> Path:
    return store_builder(tmp_path_factory.mktemp("verify") / "real.zarr", "real", seed=0, n_series=4)


@pytest.fixture()
def copy(real, tmp_path) -> Path:
    return Path(shutil.copytree(real, tmp_path / "copy.zarr"))


def test_an_intact_store_passes_every_check(real):
    result = verify_store(real)
    assert result.ok, result.problems
    assert result.content_recorded and result.boxes_checked == open_store(real).nodules()["slice"].size > 0


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
    forget_recorded_content(copy)  # a store finished before content was recorded: the boxes still tell
    problems = verify_store(copy).problems
    assert any(p.startswith("nodules/bbox:") or p.startswith("label:") for p in problems), problems


def test_boxes_off_their_nodules_fail(copy):
    forget_recorded_content(copy)
    rewrite(copy, "nodules/bbox", lambda b: np.where(np.arange(len(b))[:, None] % 2 == 0, b + [20, 0, 20, 0], b).astype(b.dtype))
    problems = verify_store(copy).problems
    n = open_store(copy).nodules()["slice"].size
    assert any(p.startswith(f"nodules/bbox: {(n + 1) // 2} of {n} boxes cover no nodule pixel") for p in problems), problems
    assert any(p.startswith("label:") and "lie in no box" in p for p in problems), problems


def test_a_box_reaching_past_its_nodule_fails(copy):
    forget_recorded_content(copy)
    rewrite(copy, "nodules/bbox", lambda b: np.concatenate([b[:1] + [-6, -6, 6, 6], b[1:]]).astype(b.dtype))
    problems = verify_store(copy).problems
    assert any(p.startswith("nodules/bbox: 1 of") and "reach past the nodule" in p and "first row 0" in p for p in problems), problems


def test_a_nodule_without_a_box_fails(copy):
    forget_recorded_content(copy)
    store = open_store(copy)
    row = int(store.nodules()["slice"][0])
    x0, y0, x1, y1 = store.nodules()["bbox"][0]
    far_x = 5 if x0 > 32 else 55

    def paint(labels):
        labels[row, 30:33, far_x : far_x + 3] = NODULE
        return labels

    rewrite(copy, "label", paint)
    problems = verify_store(copy).problems
    assert any(p.startswith("label: 1 nodules (label-5 components) lie in no box") and f"slice {row}" in p for p in problems), problems
