"""Store fingerprints hash content (chunk checksums), never names or paths (issue 19, item 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from lungforge.core.errors import CorruptStoreError
from lungforge.store import open_store


def rewrite(store: Path, name: str, edit) -> None:
    """Rewrite array `name` of `store` through zarr (valid checksums, every chunk kept) as `edit(values)`."""
    array = zarr.open_array(str(store / name), mode="r+").with_config({"write_empty_chunks": True})
    array[...] = edit(array[...])


@pytest.fixture(scope="module")
def real(tmp_path_factory, store_builder) -> Path:
    return store_builder(tmp_path_factory.mktemp("fp") / "real.zarr", "real", seed=0, n_series=4)


def test_a_copy_or_a_move_keeps_the_fingerprint(real, tmp_path):
    copy = Path(shutil.copytree(real, tmp_path / "elsewhere" / "renamed.zarr"))
    assert open_store(copy).fingerprint() == open_store(real).fingerprint()


def test_equal_content_gives_equal_fingerprints_and_other_content_another(real, tmp_path, store_builder):
    again = store_builder(tmp_path / "again.zarr", "real", seed=0, n_series=4)  # another store_id and time
    other = store_builder(tmp_path / "other.zarr", "real", seed=1, n_series=4)
    assert open_store(again).attrs["store_id"] != open_store(real).attrs["store_id"]
    assert open_store(again).fingerprint() == open_store(real).fingerprint()
    assert open_store(other).fingerprint() != open_store(real).fingerprint()


def test_zeroed_images_change_the_fingerprint_and_only_the_image_digest(real, tmp_path):
    copy = Path(shutil.copytree(real, tmp_path / "zeroed.zarr"))
    rewrite(copy, "image", np.zeros_like)
    before, after = open_store(real).content_digests(), open_store(copy).content_digests()
    assert open_store(copy).fingerprint() != open_store(real).fingerprint()
    assert [name for name in before if before[name] != after[name]] == ["image"]


@pytest.mark.parametrize("name", ["label", "meta/split", "nodules/bbox", "series/uid"])
def test_every_array_is_part_of_the_fingerprint(real, tmp_path, name):
    copy = Path(shutil.copytree(real, tmp_path / "edited.zarr"))
    if name == "series/uid":
        rewrite(copy, name, lambda v: np.asarray([f"9.9.{i}" for i in range(len(v))], dtype=v.dtype))
    else:
        rewrite(copy, name, lambda v: (v[::-1] if name != "meta/split" else 1 - v).astype(v.dtype))
    assert open_store(copy).fingerprint() != open_store(real).fingerprint()


def test_finalize_records_the_content_it_wrote(real):
    store = open_store(real)
    content = store.attrs["content"]
    assert {k: content[k] for k in ("fingerprint", "arrays")} == {"fingerprint": store.fingerprint(), "arrays": store.content_digests()}
    assert store.recorded_digests() == store.content_digests()


def test_a_store_without_checksums_is_fingerprinted_by_its_bytes(real, tmp_path):
    old = Path(shutil.copytree(real, tmp_path / "old.zarr"))
    meta = json.loads((old / "zarr.json").read_text())
    del meta["attributes"]["integrity"], meta["attributes"]["content"]
    (old / "zarr.json").write_text(json.dumps(meta))
    store = open_store(old)
    assert not store.checked and store.recorded_digests() is None
    fingerprint = store.fingerprint()
    rewrite(old, "image", np.zeros_like)
    assert open_store(old).fingerprint() != fingerprint


def test_a_truncated_shard_is_a_corrupt_store_not_a_traceback(real, tmp_path):
    copy = Path(shutil.copytree(real, tmp_path / "cut.zarr"))
    shard = copy / "image" / "c" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(CorruptStoreError, match=r"image/c/0/0/0 is damaged"):
        open_store(copy).fingerprint()
