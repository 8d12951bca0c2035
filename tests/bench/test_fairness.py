"""Conditions differ in the generator only: one selection rule, one training budget, no leakage."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
import torch

from lungforge.bench.protocol.budget import batch_indices, reference_steps
from lungforge.bench.protocol.detect import DetectConfig, run_detect
from lungforge.bench.protocol.folds import fold_splits, leak_groups, real_groups
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.selection import selected, selection_summary
from lungforge.core.errors import InputError


@pytest.fixture(scope="module")
def real_store(stores):
    return open_real(stores["real"])


def _quick(**kw) -> DetectConfig:
    """The quick preset at 64 px with one epoch (quick_preset itself fixes 20)."""
    return dataclasses.replace(DetectConfig.quick_preset(size=64), epochs=1, **kw)


def _synthetic(tmp_path, store_builder, real_path, **kw):
    return store_builder(tmp_path / f"s{len(list(tmp_path.iterdir()))}.zarr", "synthetic", seed=5, made_from=real_path, **kw)


class CountingAdam(torch.optim.Adam):
    """Adam that counts its optimiser steps (class-wide, reset by each test)."""

    steps: ClassVar[list[int]] = []

    def step(self, closure=None):  # type: ignore[override]
        CountingAdam.steps[-1] += 1
        return super().step(closure)

    def __init__(self, *args, **kwargs):
        CountingAdam.steps.append(0)
        super().__init__(*args, **kwargs)


def test_every_condition_trains_the_same_optimiser_steps_sized_from_a(real_store, stores, monkeypatch):
    """B adds synthetic patches (more data) but not more optimiser steps than A."""
    monkeypatch.setattr(torch.optim, "Adam", CountingAdam)
    CountingAdam.steps = []
    syn = {"B": open_synthetic(stores["B"], real_store)}
    config = _quick(batch_size=8)
    result = run_detect(real_store, syn, config, torch.device("cpu"))
    counted = iter(CountingAdam.steps)  # runs go fold by fold, A then B
    for a, b in zip(result.folds["A"], result.folds["B"]):
        assert b["train_patches"] > a["train_patches"]
        expected = reference_steps(a["train_patches"], config.epochs, config.batch_size)
        assert next(counted) == next(counted) == expected == a["optimizer_steps"] == b["optimizer_steps"]


def test_batches_come_from_successive_permutations():
    g = torch.Generator().manual_seed(0)
    batches = list(batch_indices(10, 4, 5, g))
    assert len(batches) == 5 and all(b.numel() == 4 for b in batches)
    flat = torch.cat(batches)
    assert sorted(flat[:10].tolist()) == list(range(10))  # the first pass sees every sample once
    assert list(batch_indices(0, 4, 5, g)) == []
    assert reference_steps(33, 3, 8) == 3 * 5


def test_every_condition_is_judged_on_one_draw_per_slice(tmp_path, store_builder, stores, real_store):
    """Store B re-drew every nodule slice (best of 3, as augment --retries 2 does for SDM); store C
    (SPADE without noise input) could not. Under the default rule both train on first draws only."""
    n = len(real_store)
    redrawn = np.where(np.arange(n) % 2 == 0, 3, 1).astype(np.int32)  # the nodule slices
    b = open_synthetic(_synthetic(tmp_path, store_builder, stores["real"], meta={"attempts": redrawn}), real_store)
    c = open_synthetic(_synthetic(tmp_path, store_builder, stores["real"]), real_store)
    for store in (b, c):
        assert (store.meta("attempts")[selected(store, "first-draw")] == 1).all()
    assert selection_summary(b, "first-draw")["resampled_share"] == pytest.approx(0.5)
    assert selection_summary(b, "first-draw")["nodule_slices_used"] == 0
    assert selection_summary(b, "all")["used"] == n

    with pytest.raises(InputError, match="B: adds no synthetic nodule slice to fold"):  # every nodule slice of B was re-drawn
        run_detect(real_store, {"B": b}, _quick(), torch.device("cpu"))
    first = run_detect(real_store, {"B": b}, _quick(allow_empty_synthetic=True), torch.device("cpu"))
    # none of B's slices yield training patches
    for a_fold, b_fold in zip(first.folds["A"], first.folds["B"]):
        assert b_fold["train_patches"] == a_fold["train_patches"] and b_fold["synthetic_positives"] == 0
    everything = run_detect(real_store, {"B": b}, _quick(select="all"), torch.device("cpu"))
    assert all(bf["train_patches"] > af["train_patches"] for af, bf in zip(everything.folds["A"], everything.folds["B"]))


def _patient_of_row(real, rows):
    return real.meta("series")[real.nodules()["slice"][rows]]


def test_a_test_fold_patient_never_reaches_training_through_a_nodule_shape(tmp_path, store_builder, stores, real_store):
    """Synthetic nodules whose shape or size comes from random real nodules: in every fold, no kept
    slice has its label map or any nodule source on a test-fold patient."""
    rng = np.random.default_rng(0)
    m = real_store.nodules()["slice"].size
    k = 20  # nodule rows of the synthetic store
    columns = {"shape_source": rng.integers(0, m, k), "size_source": np.where(rng.random(k) < 0.5, -1, rng.integers(0, m, k))}
    syn = open_synthetic(_synthetic(tmp_path, store_builder, stores["real"], nodule_columns=columns), real_store)
    table = syn.nodules()
    series = real_store.meta("series")
    for folds in (2, 5):
        for split in fold_splits(real_store, {"B": syn}, folds, "all"):
            test_patients = set(series[split.test_real].tolist())
            kept = split.train_synthetic["B"]
            assert not test_patients & set(series[syn.meta("source")[kept]].tolist())
            rows = np.isin(table["slice"], kept)
            for column in ("shape_source", "size_source"):
                sources = table[column][rows]
                assert not test_patients & set(_patient_of_row(real_store, sources[sources >= 0]).tolist())
    # the shapes really do come from other patients than the label maps: something is dropped for them
    groups = real_groups(real_store, 2, "all")
    label_only = real_groups(real_store, 2, "all")[syn.meta("source")]
    touch = leak_groups(syn, real_store, groups)
    assert (touch.sum(axis=1) > 1).any() and (touch[np.arange(len(syn)), label_only]).all()


def test_shapes_from_the_test_fold_keep_synthetic_slices_out_of_that_fold(tmp_path, store_builder, stores, real_store):
    """Every nodule's shape comes from a patient of the other fold group than its label map: each
    synthetic nodule slice then touches both groups and trains neither fold (no positive patch
    of B reaches training; its nodule-free slices may still give negatives)."""
    table = real_store.nodules()
    group = real_store.meta("fold")[table["slice"]] % 2
    rows_of = {g: np.flatnonzero(group == g) for g in (0, 1)}
    n = len(real_store)
    source_group = real_store.meta("fold") % 2  # synthetic slice i comes from real slice i
    nodule_slices = np.arange(0, n, 2)
    shape = np.array([rows_of[1 - int(source_group[i])][0] for i in nodule_slices])
    syn = open_synthetic(_synthetic(tmp_path, store_builder, stores["real"], nodule_columns={"shape_source": shape}), real_store)
    result = run_detect(real_store, {"B": syn}, _quick(allow_empty_synthetic=True), torch.device("cpu"))
    for a_fold, b_fold in zip(result.folds["A"], result.folds["B"]):
        assert b_fold["train_positive"] == a_fold["train_positive"] and b_fold["synthetic_positives"] == 0


def test_a_lidc_contour_from_a_test_fold_scan_keeps_its_slice_out_of_that_fold(tmp_path, store_builder, stores, real_store):
    """LUNA16 scans are LIDC scans: a `--shape lidc` contour read from a patient of the real store
    (by series uid) counts as a source of that patient, like a real-store shape."""
    n_rows = real_store.nodules()["slice"].size
    uids = real_store.series_uids
    patient_group = real_store.meta("fold")[np.unique(real_store.meta("series"), return_index=True)[1]] % 2
    annotation = np.arange(n_rows, dtype=np.int64) + 1000
    path = _synthetic(tmp_path, store_builder, stores["real"], nodule_columns={"lidc_annotation": annotation})
    other_group_uid = {g: uids[int(np.flatnonzero(patient_group == g)[0])] for g in (0, 1)}
    syn = open_synthetic(path, real_store)
    label_group = real_groups(real_store, 2, "all")[syn.meta("source")]
    table = syn.nodules()
    contour_group = 1 - label_group[table["slice"]]
    series = {str(a): other_group_uid[int(g)] for a, g in zip(table["lidc_annotation"], contour_group)}
    lidc = {"series": {**series, "999999": "not.in.this.store"}}
    syn = open_synthetic(
        _synthetic(tmp_path, store_builder, stores["real"], nodule_columns={"lidc_annotation": annotation}, attrs={"lidc": lidc}),
        real_store,
    )
    touch = leak_groups(syn, real_store, real_groups(real_store, 2, "all"))
    nodule_slices = np.unique(table["slice"])
    assert touch[nodule_slices].all(), "a slice whose contour comes from the other fold group must leave both folds"
    without = np.setdiff1d(np.arange(len(syn)), nodule_slices)
    assert touch[without].sum(axis=1).max() <= 1
