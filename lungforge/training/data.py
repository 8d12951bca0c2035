"""Training data: the store's train split, a seeded resumable sample order, and label-aware flips.

The order is an endless stream of epochs; epoch e is a permutation of the train slices (and a
coin flip per slice) drawn from `np.random.default_rng([seed, e])`, so it depends only on the seed
and the epoch. A run's position is the number of samples consumed; global batch k is the stream
slice [consumed, consumed + B·W), of which rank r takes its r-th block of B. Resuming needs only
`consumed`, and the batches do not depend on DataLoader workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lungforge.core.errors import InputError
from lungforge.core.labels import LEFT_LUNG, NUM_CLASSES, RIGHT_LUNG
from lungforge.data.dataset import SliceDataset
from lungforge.store import Store, open_store

Key = tuple[int, bool]
"""A dataset item key: (position in the train split, flip horizontally)."""


def flip_horizontal(image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror image (..., H, W) and label (..., H, W) left-right and swap left/right lung ids (1↔2).

    A mirrored chest has its left lung on the other side, so the label ids must follow.
    """
    image = torch.flip(image, dims=(-1,))
    label = torch.flip(label, dims=(-1,))
    swapped = torch.where(label == LEFT_LUNG, RIGHT_LUNG, torch.where(label == RIGHT_LUNG, LEFT_LUNG, label))
    return image, swapped.to(label.dtype)


def check_label_ids(label: torch.Tensor, rows: torch.Tensor, store: str | os.PathLike) -> None:
    """Raise InputError naming the first store row whose label map (B, H, W) has ids outside 0..5."""
    bad = (label < 0) | (label >= NUM_CLASSES)
    if not bool(bad.any()):
        return
    first = int(bad.flatten(1).any(1).nonzero()[0, 0])
    values = torch.unique(label[first][bad[first]]).tolist()
    raise InputError(f"{store}: label map of slice {int(rows[first])} has ids {values}, expected ids 0..{NUM_CLASSES - 1}")


def open_train_split(store: str | os.PathLike | Store, size: int | None) -> SliceDataset:
    """The TRAIN split of `store` resized to `size`×`size` pixels (None: as stored); InputError if it has none."""
    opened = store if isinstance(store, Store) else open_store(store)
    dataset = SliceDataset(opened, size=size, split="train")
    if len(dataset) == 0:
        raise InputError(
            f"{opened.path}: no train-split slices ({len(opened)} slices, all in the test split); prepare it with fewer --test-patients"
        )
    return dataset


@lru_cache(maxsize=4)
def epoch_order(n: int, seed: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Permutation (n,) int64 of the train split for `epoch` and a flip flag (n,) bool per position."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n)
    flips = rng.random(n) < 0.5
    return order, flips


def stream_keys(start: int, count: int, n: int, seed: int, flip: bool) -> list[Key]:
    """Keys of stream positions [start, start + count) over epochs of `n` slices."""
    positions = np.arange(start, start + count, dtype=np.int64)
    epochs, offsets = np.divmod(positions, n)
    keys: list[Key] = []
    for epoch in np.unique(epochs):
        order, flips = epoch_order(n, seed, int(epoch))
        sel = offsets[epochs == epoch]
        keys.extend(zip(order[sel].tolist(), (flips[sel] & flip).tolist()))
    return keys


class StreamBatchSampler(Sampler[list[Key]]):
    """Endless per-rank batches of keys, starting at stream position `consumed` (samples, all ranks)."""

    def __init__(
        self, n: int, batch_size: int, *, seed: int, consumed: int = 0, rank: int = 0, world_size: int = 1, flip: bool = True
    ) -> None:
        if n < 1 or batch_size < 1:
            raise ValueError(f"need n >= 1 slices and batch_size >= 1, got n={n}, batch_size={batch_size}")
        self.n, self.batch_size, self.seed, self.flip = n, batch_size, seed, flip
        self.consumed, self.rank, self.world_size = consumed, rank, world_size

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def __iter__(self) -> Iterator[list[Any]]:
        position = self.consumed
        while True:
            yield self.batch_at(position + self.rank * self.batch_size)
            position += self.global_batch

    def batch_at(self, start: int) -> list[Any]:
        """This rank's keys of the batch whose first stream position is `start`."""
        return stream_keys(start, self.batch_size, self.n, self.seed, self.flip)


class TrainSlices(Dataset):
    """Items of a train split addressed by `(position, flip)` keys: image (1, S, S), label (S, S), row."""

    def __init__(self, slices: SliceDataset) -> None:
        self.slices = slices

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, key: Key) -> dict[str, Any]:
        position, flip = key
        item = self.slices[position]
        image, label = item["image"], item["label"]
        if flip:
            image, label = flip_horizontal(image, label)
        return {"image": image, "label": label, "row": item["index"]}


@dataclass(frozen=True)
class LoaderSpec:
    """How batches are drawn: per-rank `batch_size`, the order's `seed`, DataLoader `workers`, flips."""

    batch_size: int
    seed: int
    workers: int = 0
    flip: bool = True


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack the items' tensors along a new batch axis; integer fields (store rows) become (B,) int64."""
    return {
        key: torch.stack([i[key] for i in items])
        if isinstance(value, torch.Tensor)
        else torch.tensor([i[key] for i in items], dtype=torch.int64)
        for key, value in items[0].items()
    }


def stream_batches(
    items: Dataset,
    spec: LoaderSpec,
    *,
    consumed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    sampler: type[StreamBatchSampler] = StreamBatchSampler,
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches of `items` (:func:`collate`d) in the seeded stream order from position `consumed`.

    `sampler` draws the keys `items` takes (:class:`StreamBatchSampler`: `(position, flip)`).
    Workers only read ahead: the batches are the same for any `spec.workers`.
    """
    if not isinstance(items, Sized):
        raise TypeError(f"stream_batches needs a dataset with a length, got {type(items).__name__}")
    keys = sampler(len(items), spec.batch_size, seed=spec.seed, consumed=consumed, rank=rank, world_size=world_size, flip=spec.flip)
    loader = DataLoader(
        items,
        batch_sampler=keys,
        num_workers=spec.workers,
        collate_fn=collate,
        persistent_workers=False,
        prefetch_factor=2 if spec.workers else None,
    )
    return iter(loader)


def train_batches(
    slices: SliceDataset, spec: LoaderSpec, *, consumed: int = 0, rank: int = 0, world_size: int = 1
) -> Iterator[dict[str, torch.Tensor]]:
    """Endless batches `{"image": (B, 1, S, S) [-1, 1], "label": (B, S, S) long, "row": (B,) store rows}`."""
    return stream_batches(TrainSlices(slices), spec, consumed=consumed, rank=rank, world_size=world_size)
