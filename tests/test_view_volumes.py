"""`lungforge.view` on a volume store: per nodule, three orthogonal panels through its centre."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lungforge.cli.main import app
from lungforge.core.drawing import contact_sheet_shape
from lungforge.core.errors import OutputError
from lungforge.core.labels import NODULE
from lungforge.preparation.masks import window_to_uint8
from lungforge.store import open_volume_store
from lungforge.view import VolumeViewOptions, write_volume_view
from lungforge.view.volumes import OUTLINE_COLOUR, outline

GAP, CAPTION = 4, 14


def _panels(png: Path, tile: int) -> list[np.ndarray]:
    sheet = np.asarray(Image.open(png).convert("RGB"))
    assert sheet.shape[:2] == contact_sheet_shape(3, (tile, tile), 3) == (CAPTION + tile + 2 * GAP, 3 * tile + 4 * GAP)
    top = GAP + CAPTION
    return [sheet[top : top + tile, GAP + k * (tile + GAP) : GAP + k * (tile + GAP) + tile] for k in range(3)]


def test_each_nodule_gets_three_true_planes_through_its_centre(volume_store: Path, tmp_path: Path) -> None:
    """At 2 mm a 66 mm field of view is 33 voxels: with 33 px tiles a panel is the store's voxels
    themselves, windowed, with the nodule's own voxels outlined in red and nothing else red."""
    store = open_volume_store(volume_store)
    table = store.nodules()
    pngs, rows = write_volume_view(volume_store, tmp_path / "views", VolumeViewOptions(tile_px=33, fov_mm=66.0))
    assert rows.tolist() == list(range(5)) and [p.name for p in pngs] == [f"nodule_{k:03d}.png" for k in range(5)]
    for row, png in zip(rows.tolist(), pngs):
        image, label = store.read(int(table["scan"][row]))
        z, y, x = np.rint(table["center_voxel"][row]).astype(int)
        pad = [(16, 16)] * 3
        hu = np.pad(image, pad, constant_values=-1000)[z : z + 33, y : y + 33, x : x + 33]
        z0, y0, x0, z1, y1, x1 = table["bbox"][row]
        own = np.zeros(label.shape, bool)
        own[z0:z1, y0:y1, x0:x1] = label[z0:z1, y0:y1, x0:x1] == NODULE
        own = np.pad(own, pad)[z : z + 33, y : y + 33, x : x + 33]
        expected = [(hu[16], own[16]), (hu[::-1, 16, :], own[::-1, 16, :]), (hu[::-1, :, 16], own[::-1, :, 16])]
        for panel, (plane_hu, plane_mask) in zip(_panels(png, 33), expected):
            red = (panel == OUTLINE_COLOUR).all(axis=-1)
            np.testing.assert_array_equal(red, outline(plane_mask))
            assert red[16, 16] or plane_mask[16, 16]  # the centre voxel is the nodule's
            np.testing.assert_array_equal(panel[~red][:, 0], window_to_uint8(plane_hu)[~red])


def test_chosen_nodules_at_another_size_and_bad_choices(volume_store: Path, tmp_path: Path) -> None:
    pngs, rows = write_volume_view(volume_store, tmp_path / "v", VolumeViewOptions(nodules=(4, 1), tile_px=48))
    assert rows.tolist() == [4, 1] and [p.name for p in pngs] == ["nodule_004.png", "nodule_001.png"]
    assert all(len(_panels(p, 48)) == 3 for p in pngs)
    assert sorted(p.name for p in (tmp_path / "v").iterdir()) == ["nodule_001.png", "nodule_004.png"]
    with pytest.raises(ValueError, match="nodule 5 outside 0..4"):
        write_volume_view(volume_store, tmp_path / "w", VolumeViewOptions(nodules=(5,)))
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(OutputError, match="is a file; a volume store's view is a folder"):
        write_volume_view(volume_store, tmp_path / "file.png")
    with pytest.raises(ValueError, match="field of view must be in"):
        VolumeViewOptions(fov_mm=0.0)


def test_cli_view_of_a_volume_store(volume_store: Path, stores, tmp_path: Path) -> None:
    args = ["view", str(volume_store), "--out", str(tmp_path / "v"), "--nodule", "0,2-3", "--tile", "32", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["nodules"] == [0, 2, 3]
    assert [Path(p).name for p in payload["pngs"]] == ["nodule_000.png", "nodule_002.png", "nodule_003.png"]
    plain = CliRunner().invoke(app, ["view", str(volume_store), "--out", str(tmp_path / "all"), "--tile", "16"])
    assert plain.exit_code == 0 and plain.stdout == f"wrote 5 nodule views to {tmp_path / 'all'}\n"
    for args, message in (
        ([str(volume_store), "--index", "1"], "--index do not apply to"),
        ([str(stores["real"]), "--nodule", "1"], "--nodule do not apply to"),
    ):
        refused = CliRunner().invoke(app, ["view", *args, "--out", str(tmp_path / "x")])
        assert refused.exit_code == 2 and message in " ".join(refused.output.replace("│", " ").split())
    assert not (tmp_path / "x").exists()
