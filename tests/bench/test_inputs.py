import numpy as np
import pytest

from lungforge.bench.inputs import SyntheticSpec, nodule_boxes, open_real, open_synthetic, parse_synthetic
from lungforge.errors import InputError, SchemaError


def test_parse_synthetic_names():
    assert SyntheticSpec.parse("C=sdm.zarr").name == "C"
    with pytest.raises(InputError, match="NAME=STORE"):
        SyntheticSpec.parse("sdm.zarr")
    with pytest.raises(InputError, match="not 'A'"):
        SyntheticSpec.parse("A=x.zarr")
    with pytest.raises(InputError, match="unique"):
        parse_synthetic(["B=x.zarr", "B=y.zarr"])


def test_store_kinds_are_checked(stores):
    with pytest.raises(SchemaError, match="expected 'real'"):
        open_real(stores["B"])
    real = open_real(stores["real"])
    with pytest.raises(SchemaError, match="expected 'synthetic'"):
        open_synthetic(stores["real"], real)


def test_synthetic_without_nodules_is_rejected(tmp_path, stores, store_builder):
    real = open_real(stores["real"])
    empty = store_builder(tmp_path / "free.zarr", "synthetic", nodule_every=0)
    with pytest.raises(SchemaError, match="no nodule slices"):
        open_synthetic(empty, real)
    assert len(open_synthetic(empty, real, need_nodules=False)) == 40


def test_sources_outside_the_real_store_are_rejected(tmp_path, stores, store_builder):
    small = open_real(store_builder(tmp_path / "small.zarr", "real", n_series=2))
    with pytest.raises(SchemaError, match="meta/source spans"):
        open_synthetic(stores["B"], small)


def test_nodule_boxes_per_slice(stores):
    real = open_real(stores["real"])
    boxes = nodule_boxes(real)
    assert len(boxes) == len(real)
    counts = np.array([b.shape[0] for b in boxes])
    np.testing.assert_array_equal(counts > 0, real.meta("has_nodule"))
