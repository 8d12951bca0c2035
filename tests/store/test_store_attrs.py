"""Each store array carries its units, axes and codes as Zarr attributes, readable without lungforge."""

from __future__ import annotations

from pathlib import Path

import pytest
import zarr

from lungforge.core.labels import labels_attr
from lungforge.store import SPLIT_IDS, open_store

DOCS = Path(__file__).resolve().parents[2] / "docs" / "store-format.md"


@pytest.mark.parametrize("kind", ["real", "synthetic"])
def test_every_array_has_attributes(store_builder, tmp_path: Path, kind: str) -> None:
    path = store_builder(tmp_path / f"{kind}.zarr", kind)
    names = open_store(path).array_names()
    group = zarr.open_group(str(path), mode="r")
    attrs = {name: dict(group[name].attrs) for name in names}
    assert all(a.get("axes") and len(a["axes"]) == group[name].ndim for name, a in attrs.items()), attrs
    assert attrs["meta/split"]["codes"] == {str(v): k for k, v in SPLIT_IDS.items()} == {"0": "train", "1": "test"}
    assert attrs["label"]["codes"] == labels_attr()
    assert attrs["meta/spacing"].items() >= {"units": "mm", "columns": ["row", "col"]}.items()
    assert attrs["meta/series"]["indexes"] == "series/uid"
    assert attrs["nodules/bbox"]["columns"] == ["x0", "y0", "x1", "y1"] and attrs["nodules/bbox"]["x1_y1"] == "exclusive"
    assert attrs["image"]["window_hu"] == [-1000, 400]
    assert ("meta/source" in attrs) == (kind == "synthetic")


def test_store_format_page_names_every_array(store_builder, tmp_path: Path) -> None:
    names = open_store(store_builder(tmp_path / "s.zarr", "synthetic")).array_names()
    text = DOCS.read_text()
    assert [name for name in names if f"`{name}`" not in text and f"`{name.split('/')[-1]}`" not in text] == []
