"""`export_store`: atomic output, refusal to clobber, selection errors, resizing and reporting."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lungforge.core.errors import InputError, LockError
from lungforge.core.labels import NODULE
from lungforge.core.locks import hold_lock
from lungforge.export import ExportOptions, export_store
from lungforge.export import png as png_module
from lungforge.export.context import MARKER
from lungforge.export.slices import iter_slices, select_indices


def test_killed_export_leaves_nothing_that_looks_complete(stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "png"
    written = []

    def dying_write(path: Path, array: np.ndarray) -> None:
        if len(written) == 7:
            raise KeyboardInterrupt
        written.append(path)

    monkeypatch.setattr(png_module, "write_png", dying_write)
    with pytest.raises(KeyboardInterrupt):
        export_store(stores["real"], out, ExportOptions(format="png"))
    assert not out.exists() and (tmp_path / ".png.partial").is_dir()
    monkeypatch.undo()
    report = export_store(stores["real"], out, ExportOptions(format="png"))
    assert (out / MARKER).is_file() and not (tmp_path / ".png.partial").exists()
    assert json.loads((out / MARKER).read_text())["report"]["images"] == report.images == 40


def test_refuses_foreign_folder_and_replaces_only_with_overwrite(stores, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="is not a lungforge export; refusing to write into it: export into another --out$"):
        export_store(stores["real"], foreign, ExportOptions(format="png"))
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = tmp_path / "out"
    export_store(stores["real"], out, ExportOptions(format="yolo", split="test"))
    with pytest.raises(
        InputError,
        match=re.escape(f"already holds an export of {stores['real']}; to keep it, export into another --out (--overwrite replaces it)"),
    ):
        export_store(stores["B"], out, ExportOptions(format="yolo"))
    export_store(stores["real"], out, ExportOptions(format="yolo"), overwrite=True)
    assert (out / "images" / "train").is_dir() and not (tmp_path / ".out.replaced").exists()


def test_empty_selection_is_an_error(store_builder, tmp_path: Path) -> None:
    path = store_builder(tmp_path / "free.zarr", nodule_every=0)
    with pytest.raises(InputError, match="no slices match .*; choose another --split or leave out --nodule-only"):
        export_store(path, tmp_path / "x", ExportOptions(format="coco", nodule_only=True))
    assert not (tmp_path / "x").exists()


def test_bad_options_name_the_value() -> None:
    with pytest.raises(ValueError, match="got 'voc'"):
        ExportOptions(format="voc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 'a b'"):
        ExportOptions(format="nnunet", dataset_name="a b")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x0, y0, x1, y1 boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_resize_derives_boxes_from_the_resized_masks(stores, reference) -> None:
    from lungforge.store import open_store

    store = open_store(stores["real"])
    rows = select_indices(store, "all", nodule_only=True)
    assert rows.tolist() == reference.rows(nodule_only=True).tolist()
    items = list(iter_slices(store, rows, 16))
    assert [i.index for i in items] == rows.tolist()
    kept = 0
    for item in items:
        assert item.image.shape == item.label.shape == (16, 16) and item.masks.shape == (len(item.boxes), 16, 16)
        np.testing.assert_allclose(item.spacing_mm, reference.spacing[item.index] * 4, rtol=1e-6)
        np.testing.assert_array_equal(item.boxes, reference.resized_boxes(item.index, 16))
        for box, mask in zip(item.boxes, item.masks):
            assert not (mask & (item.label != NODULE)).any()
            if mask.any():
                kept += 1
                ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
                assert _iou(box, np.array([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1])) == 1.0
    assert kept > 0
    full = list(iter_slices(store, rows, None))
    assert all((i.nodule_pixels() > 0).all() for i in full)
    for item in full:
        np.testing.assert_array_equal(item.boxes, reference.boxes(item.index))


def test_a_nodule_too_small_for_the_size_keeps_its_nearest_pixel(stores, reference) -> None:
    """At 8 px (from 64) 8 of the 20 nodules lose every pixel to the resize: each keeps the pixel
    holding its centre of mass, in its mask, its box (1 × 1 px) and the label map."""
    from lungforge.store import open_store

    items = list(iter_slices(open_store(stores["real"]), reference.rows(nodule_only=True), 8))
    restored = [(item, k) for item in items for k in np.flatnonzero(item.restored)]
    assert len(restored) == 8
    for item in items:
        label, boxes = reference.resized(item.index, 8)
        np.testing.assert_array_equal(item.label, label)
        np.testing.assert_array_equal(item.boxes, boxes)
        assert (item.nodule_pixels() > 0).all() and not (item.masks & (item.label != NODULE)).any()
    for item, k in restored:
        (row,), (col,) = (np.flatnonzero(item.masks[k].any(axis=a)) for a in (1, 0))
        np.testing.assert_array_equal(item.boxes[k], [col, row, col + 1, row + 1])


def test_export_counts_the_nodules_kept_as_one_pixel(stores, tmp_path: Path) -> None:
    report = export_store(stores["real"], tmp_path / "coco", ExportOptions(format="coco", size=8))
    assert report.nodules == 20 and report.nodules_kept_as_pixel == 8
    assert any(note.startswith("8 of 20 nodules have no pixel left at 8×8: each keeps its nearest pixel") for note in report.notes)
    assert json.loads((tmp_path / "coco" / MARKER).read_text())["report"]["nodules_kept_as_pixel"] == 8
    assert export_store(stores["real"], tmp_path / "c64", ExportOptions(format="coco")).nodules_kept_as_pixel == 0


def test_second_export_into_a_locked_out_fails_and_writes_nothing(stores, tmp_path: Path) -> None:
    out = tmp_path / "coco"
    alias = tmp_path / "alias"
    alias.symlink_to(out)
    with hold_lock(out.resolve(), "export"):
        for path in (out, alias):
            with pytest.raises(LockError, match="another lungforge process"):
                export_store(stores["real"], path, ExportOptions(format="coco"))
    assert not out.exists() and not (tmp_path / ".coco.partial").exists()
    export_store(stores["real"], alias, ExportOptions(format="coco"))
    assert (out / MARKER).is_file()


@pytest.mark.parametrize("inside", ["", "image/c/9", "meta"])
def test_refuses_out_in_or_over_the_store(store_builder, tmp_path: Path, inside: str) -> None:
    store = store_builder(tmp_path / "real.zarr")
    before = sorted(str(p.relative_to(store)) for p in store.rglob("*"))
    out = store / inside if inside else store
    with pytest.raises(InputError, match=f"--out {out} is(?: inside)? STORE"):
        export_store(store, out, ExportOptions(format="png"), overwrite=True)
    with pytest.raises(InputError, match="contains STORE"):
        export_store(store, tmp_path, ExportOptions(format="yolo"), overwrite=True)
    assert sorted(str(p.relative_to(store)) for p in store.rglob("*")) == before
    raw = export_store(store, tmp_path, ExportOptions(format="nnunet"))  # DatasetNNN_* beside the store is fine
    assert Path(raw.out).parent == tmp_path
