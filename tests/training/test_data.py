from __future__ import annotations

import numpy as np
import pytest
import torch

from lungforge.core.errors import InputError
from lungforge.core.labels import BODY, LEFT_LUNG, NODULE, RIGHT_LUNG, TRACHEA
from lungforge.store import open_store
from lungforge.training.data import (
    LoaderSpec,
    StreamBatchSampler,
    check_label_ids,
    flip_horizontal,
    open_train_split,
    stream_keys,
    train_batches,
)


def test_flip_mirrors_and_swaps_lung_labels():
    label = torch.tensor([[[LEFT_LUNG, RIGHT_LUNG, BODY, TRACHEA, NODULE, 0]]])
    image = torch.arange(6, dtype=torch.float32).reshape(1, 1, 6)
    flipped_image, flipped_label = flip_horizontal(image, label)
    assert flipped_image.tolist() == [[[5, 4, 3, 2, 1, 0]]]
    assert flipped_label.tolist() == [[[0, NODULE, TRACHEA, BODY, LEFT_LUNG, RIGHT_LUNG]]]
    assert flipped_label.dtype == label.dtype
    # flipping twice is the identity
    back_image, back_label = flip_horizontal(flipped_image, flipped_label)
    assert torch.equal(back_image, image) and torch.equal(back_label, label)


def test_stream_covers_each_epoch_once_and_is_seeded():
    keys = stream_keys(0, 20, 10, seed=3, flip=True)
    assert sorted(k for k, _ in keys[:10]) == list(range(10))
    assert sorted(k for k, _ in keys[10:]) == list(range(10))
    assert keys == stream_keys(0, 20, 10, seed=3, flip=True)
    assert keys != stream_keys(0, 20, 10, seed=4, flip=True)
    assert stream_keys(7, 5, 10, seed=3, flip=True) == keys[7:12]
    assert {f for _, f in keys} == {True, False}
    assert not any(f for _, f in stream_keys(0, 20, 10, seed=3, flip=False))


def test_ranks_split_each_global_batch():
    single = iter(StreamBatchSampler(10, 6, seed=1, consumed=4))
    ranks = [iter(StreamBatchSampler(10, 3, seed=1, consumed=4, rank=r, world_size=2)) for r in range(2)]
    for _ in range(3):
        assert next(single) == next(ranks[0]) + next(ranks[1])


def test_loader_draws_train_rows_only(prepared_store):
    store = open_store(prepared_store)
    train_rows = set(np.flatnonzero(store.meta("split") == 0).tolist())
    assert 0 < len(train_rows) < len(store)
    slices = open_train_split(prepared_store, 32)
    batches = train_batches(slices, LoaderSpec(batch_size=4, seed=0))
    seen = set()
    for _ in range(2 * len(train_rows) // 4 + 1):
        batch = next(batches)
        assert batch["image"].shape == (4, 1, 32, 32) and batch["label"].shape == (4, 32, 32)
        assert batch["image"].min() >= -1 and batch["image"].max() <= 1
        seen.update(batch["row"].tolist())
    assert seen == train_rows


def test_no_train_split_is_an_error(store_factory):
    path = store_factory(np.zeros((3, 16, 16), np.uint8), split=np.ones(3))
    with pytest.raises(InputError, match="no train-split slices"):
        open_train_split(path, 16)


def test_bad_label_ids_name_the_slice():
    label = torch.zeros(3, 4, 4, dtype=torch.long)
    check_label_ids(label, torch.tensor([5, 6, 7]), "s.zarr")
    label[1, 2, 2] = 9
    with pytest.raises(InputError, match=r"slice 6 has ids \[9\], expected ids 0..5"):
        check_label_ids(label, torch.tensor([5, 6, 7]), "s.zarr")
