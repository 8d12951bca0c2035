"""External sources (issue 24 item 1): synthetic slices built from patients outside the benchmark
join every fold at every K, each fold row records the synthetic slices joined, a condition that
adds no nodule slice to a fold is refused, and "A + the real source slices" is benched beside them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.bench.protocol.detect import DetectConfig, run_detect
from lungforge.bench.protocol.folds import OUTSIDE, real_groups
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.sources import SOURCES, external_source_slices
from lungforge.core.errors import InputError
from lungforge.store import NO_SOURCE, nodule_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def real_store(stores):
    return open_real(stores["real"])


@pytest.fixture(scope="module")
def paste(stores, tmp_path_factory):
    """`augment --weights paste --shape real` (the README's recipe) from the real store's train split."""
    path = tmp_path_factory.mktemp("sources") / "paste.zarr"
    augment(
        AugmentOptions(
            data=stores["real"], weights="paste", out=path, nodules=8, nodule_free=4, shape="real", shard_size=4, device="cpu", seed=3
        )
    )
    return path


def _config(**kw) -> DetectConfig:
    return dataclasses.replace(DetectConfig.quick_preset(size=64, patch=16), epochs=1, batch_size=8, **kw)


def test_the_readme_recipe_adds_synthetic_positives_to_every_fold(real_store, paste):
    store = open_synthetic(paste, real_store)
    groups = real_groups(real_store, 2, "test")
    copied = store.nodules()["shape_source"]
    assert (copied != NO_SOURCE).all() and (groups[real_store.nodules()["slice"][copied]] == OUTSIDE).all()  # train-split nodules
    result = run_detect(real_store, {"paste": store}, _config(real_split="test", real_nodules=1, fixed_budget=True), torch.device("cpu"))
    assert result.conditions == ("A", "paste", SOURCES)
    for fold in range(2):
        a, p, s = (result.folds[c][fold] for c in ("A", "paste", SOURCES))
        assert p["synthetic_positives"] == 8 and p["synthetic_negatives"] <= 4 and a["synthetic_positives"] == a["synthetic_negatives"] == 0
        assert p["train_positive"] > a["train_positive"] and a["real_nodules"] == 1
        assert s["synthetic_positives"] > 0 and s["train_positive"] > a["train_positive"]


def test_external_source_slices_are_the_outside_slices_synthetic_ones_draw_on(real_store, paste):
    store = open_synthetic(paste, real_store)
    groups = real_groups(real_store, 2, "test")
    used = external_source_slices(real_store, {"paste": store}, groups)
    expected = np.zeros(len(real_store), bool)
    expected[store.meta("source")] = True
    expected[real_store.nodules()["slice"][store.nodules()["shape_source"]]] = True
    assert np.array_equal(used, expected & (groups == OUTSIDE)) and used.any()
    assert not external_source_slices(real_store, {"paste": store}, real_groups(real_store, 2, "all")).any()


def test_augment_records_the_real_nodule_each_synthetic_nodule_copies(real_store, paste):
    table = open_synthetic(paste, real_store).nodules()
    assert np.array_equal(table["nodule"], nodule_ids(real_store)[table["shape_source"]])


def test_a_condition_adding_no_nodule_slice_to_a_fold_is_refused_unless_allowed(tmp_path, store_builder, stores, real_store):
    groups = real_groups(real_store, 2, "all")
    fold0 = np.flatnonzero(groups[real_store.nodules()["slice"]] == 0)[0]  # a fold-0 nodule: leaks into fold 0, not kept in fold 1 at K=1
    free = np.flatnonzero(~real_store.meta("has_nodule") & (groups == 0))
    path = store_builder(
        tmp_path / "one.zarr",
        "synthetic",
        seed=5,
        made_from=stores["real"],
        meta={"source": free[np.arange(40) % free.size]},
        nodule_columns={"shape_source": np.full(20, fold0, np.int64)},
    )
    store = open_synthetic(path, real_store)
    with pytest.raises(InputError, match=r"^E: adds no synthetic nodule slice to fold\(s\) 0, 1 .*--allow-empty-synthetic"):
        run_detect(real_store, {"E": store}, _config(real_nodules=1), torch.device("cpu"))
    result = run_detect(real_store, {"E": store}, _config(real_nodules=1, allow_empty_synthetic=True), torch.device("cpu"))
    assert [row["synthetic_positives"] for row in result.folds["E"]] == [0, 0]
