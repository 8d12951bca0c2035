"""`export_store`: atomic output, refusal to clobber, selection errors, resizing and reporting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lungforge.errors import InputError
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
    with pytest.raises(InputError, match="not a lungforge export"):
        export_store(stores["real"], foreign, ExportOptions(format="png"))
    assert (foreign / "notes.txt").read_text() == "keep me"
    out = tmp_path / "out"
    export_store(stores["real"], out, ExportOptions(format="yolo", split="test"))
    with pytest.raises(InputError, match="--overwrite"):
        export_store(stores["real"], out, ExportOptions(format="yolo"))
    export_store(stores["real"], out, ExportOptions(format="yolo"), overwrite=True)
    assert (out / "images" / "train").is_dir() and not (tmp_path / ".out.replaced").exists()


def test_empty_selection_is_an_error(store_builder, tmp_path: Path) -> None:
    path = store_builder(tmp_path / "free.zarr", nodule_every=0)
    with pytest.raises(InputError, match="no slices match"):
        export_store(path, tmp_path / "x", ExportOptions(format="coco", nodule_only=True))
    assert not (tmp_path / "x").exists()


def test_bad_options_name_the_value() -> None:
    with pytest.raises(ValueError, match="got 'voc'"):
        ExportOptions(format="voc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 'a b'"):
        ExportOptions(format="nnunet", dataset_name="a b")


def test_resize_scales_boxes_and_spacing_and_counts_erased_nodules(stores, reference) -> None:
    from lungforge.data.store import open_store

    store = open_store(stores["real"])
    rows = select_indices(store, "all", nodule_only=True)
    assert rows.tolist() == reference.rows(nodule_only=True).tolist()
    items = list(iter_slices(store, rows, 16))
    assert [i.index for i in items] == rows.tolist()
    for item in items:
        assert item.image.shape == item.label.shape == (16, 16)
        np.testing.assert_allclose(item.boxes, reference.boxes(item.index) / 4, rtol=1e-6)
        np.testing.assert_allclose(item.spacing_mm, reference.spacing[item.index] * 4, rtol=1e-6)
    full = list(iter_slices(store, rows, None))
    assert all((i.nodule_pixels() > 0).all() for i in full)
    tiny = list(iter_slices(store, rows, 8))
    assert any((i.nodule_pixels() == 0).any() for i in tiny)
