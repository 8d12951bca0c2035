import gc
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from lungforge.bench.protocol.inputs import SyntheticSpec, nodule_boxes, open_real, open_synthetic, parse_synthetic
from lungforge.core.errors import InputError, LockError, SchemaError
from lungforge.core.locks import hold_lock


def zero_images(store: Path) -> None:
    """Rewrite every image of `store` as zeros through zarr (valid checksums, every chunk kept)."""
    image = zarr.open_array(str(store / "image"), mode="r+").with_config({"write_empty_chunks": True})
    image[...] = 0


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
    empty = store_builder(tmp_path / "free.zarr", "synthetic", nodule_every=0, made_from=stores["real"])
    with pytest.raises(SchemaError, match="no nodule slices"):
        open_synthetic(empty, real)
    assert len(open_synthetic(empty, real, need_nodules=False)) == 40


def test_sources_outside_the_real_store_are_rejected(tmp_path, stores, store_builder):
    small_path = store_builder(tmp_path / "small.zarr", "real", n_series=2)
    big = store_builder(tmp_path / "big.zarr", "synthetic", made_from=small_path)
    with pytest.raises(SchemaError, match="meta/source spans"):
        open_synthetic(big, open_real(small_path))


def test_a_synthetic_store_made_from_other_real_content_is_refused(tmp_path, stores, store_builder):
    """Same patients, same slice count, other content: meta/source would silently point at other
    slices, so bench refuses it with one line naming both stores. A preparation with identical
    content has the same (content) fingerprint and is accepted."""
    same = store_builder(tmp_path / "same.zarr", "real", seed=0)
    assert len(open_synthetic(stores["B"], open_real(same))) == 40
    other_path = store_builder(tmp_path / "again.zarr", "real", seed=3)
    real, other = open_real(stores["real"]), open_real(other_path)
    assert len(real) == len(other) and real.series_uids == other.series_uids
    with pytest.raises(
        InputError, match=r"b\.zarr: was made from a real store with fingerprint .*again\.zarr has content fingerprint"
    ) as info:
        open_synthetic(stores["B"], other)
    assert "\n" not in str(info.value)
    unrecorded = store_builder(tmp_path / "bare.zarr", "synthetic")
    with pytest.raises(InputError, match="records no input fingerprint"):
        open_synthetic(unrecorded, real)


def test_a_real_store_whose_images_were_zeroed_no_longer_matches_its_synthetic_stores(tmp_path, stores):
    """Issue 19 item 2: the fingerprint hashes content, so a copy keeps it and rewritten images change it."""
    copy = Path(shutil.copytree(stores["real"], tmp_path / "copy.zarr"))
    assert open_real(copy).fingerprint() == open_real(stores["real"]).fingerprint()
    assert len(open_synthetic(stores["B"], open_real(copy))) == 40
    zero_images(copy)
    with pytest.raises(InputError, match="has content fingerprint"):
        open_synthetic(stores["B"], open_real(copy))


def test_a_synthetic_store_recording_a_name_based_fingerprint_is_refused_with_the_reason(tmp_path, stores, store_builder):
    real = open_real(stores["real"])
    old = store_builder(
        tmp_path / "old.zarr",
        "synthetic",
        made_from=stores["real"],
        attrs={"input": {"path": str(stores["real"]), "fingerprint": real.legacy_fingerprint()}},
    )
    with pytest.raises(InputError, match="name-based fingerprint .* make it again with `lungforge augment`"):
        open_synthetic(old, real)


def test_bench_inputs_hold_their_stores_against_writers(stores):
    gc.collect()  # stores opened by earlier tests, kept alive only by their tracebacks' reference cycles
    real = open_real(stores["real"])
    synthetic = open_synthetic(stores["B"], real)
    for path in (stores["real"], stores["B"]):
        with pytest.raises(LockError, match="reading this store"), hold_lock(path, "store"):
            pass
    real.close()
    synthetic.close()
    with hold_lock(stores["real"], "store"):
        pass


def test_nodule_sources_outside_the_real_nodule_table_are_rejected(tmp_path, stores, store_builder):
    n_real_rows = open_real(stores["real"]).nodules()["slice"].size
    bad = store_builder(
        tmp_path / "bad.zarr", "synthetic", made_from=stores["real"], nodule_columns={"shape_source": np.full(20, n_real_rows)}
    )
    with pytest.raises(SchemaError, match="nodules/shape_source spans"):
        open_synthetic(bad, open_real(stores["real"]))


def test_nodule_boxes_per_slice(stores):
    real = open_real(stores["real"])
    boxes = nodule_boxes(real)
    assert len(boxes) == len(real)
    counts = np.array([b.shape[0] for b in boxes])
    np.testing.assert_array_equal(counts > 0, real.meta("has_nodule"))
