"""Learning curves (issue 17 item 1): nested per-fold subsets of real nodule slices, synthetic
slices only with kept nodules, one budget for every point and condition, and independent
per-condition sampling (item 6)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lungforge.bench.protocol.crossval import condition_stream, copies_kept, kept_nodules, kept_real_slices, parse_real_nodules
from lungforge.bench.protocol.curves import curve_figure, curve_markdown, curve_table, learning_curve
from lungforge.bench.protocol.detect import DetectConfig, run_detect
from lungforge.bench.protocol.folds import real_groups
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.patches import sample_patches
from lungforge.store import nodule_ids

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def real_store(stores):
    return open_real(stores["real"])


def test_parse_real_nodules_sorts_and_rejects_bad_items():
    assert parse_real_nodules("all,16,4") == [4, 16, None]
    for bad, word in (("0,all", "'0'"), ("4,x", "'x'"), ("4,4", "twice"), ("4,²", "'²'"), ("٣", "'٣'")):
        with pytest.raises(ValueError, match=word):
            parse_real_nodules(bad)


def test_kept_slices_are_nested_seeded_in_the_store_proportion_and_inside_the_training_fold(real_store):
    groups = real_groups(real_store, 2, "all")
    has = real_store.meta("has_nodule")
    train = groups != 0
    full = kept_real_slices(real_store, groups, 0, None, seed=0)
    assert np.array_equal(full, train)
    previous = np.zeros(len(real_store), bool)
    for k in (2, 4, 8):
        kept = kept_real_slices(real_store, groups, 0, k, seed=0)
        assert (kept & has).sum() == k and not (kept & ~train).any()
        assert (kept & ~has).sum() == round(k * (train & ~has).sum() / (train & has).sum())
        assert not (previous & ~kept).any()  # nested
        assert np.array_equal(kept, kept_real_slices(real_store, groups, 0, k, seed=0))
        previous = kept
    assert not np.array_equal(kept_real_slices(real_store, groups, 0, 4, seed=1), kept_real_slices(real_store, groups, 0, 4, seed=0))


def test_a_curve_point_keeps_k_whole_nodules_with_all_their_slices(tmp_path, store_builder):
    real = open_real(store_builder(tmp_path / "runs.zarr", "real", seed=3, nodule_every=1))  # nodules on runs of adjacent slices
    groups = real_groups(real, 2, "all")
    ids, rows = nodule_ids(real), real.nodules()["slice"]
    assert np.unique(ids).size < ids.size
    for k in (1, 2, 3):
        kept = kept_real_slices(real, groups, 0, k, seed=0)
        chosen = kept_nodules(real, kept)
        assert chosen.size == k and kept[rows[np.isin(ids, chosen)]].all()
        assert (kept & real.meta("has_nodule")).sum() == np.isin(ids, chosen).sum() > k - 1


def _one_source_store(path, store_builder, real_path, real, row: int, column: str):
    """A synthetic store whose every nodule copies real nodule `row` through `column`, its label
    maps from nodule-free real slices (the default layout: 40 slices, 20 nodules)."""
    free = np.flatnonzero(~real.meta("has_nodule"))
    return store_builder(
        path,
        "synthetic",
        seed=5,
        made_from=real_path,
        meta={"source": free[np.arange(40) % free.size]},
        nodule_columns={column: np.full(20, row, np.int64)},
    )


@pytest.mark.parametrize("column", ["shape_source", "size_source"])
def test_a_synthetic_slice_joins_only_when_every_nodule_it_copies_is_kept(tmp_path, store_builder, stores, real_store, column):
    groups = real_groups(real_store, 2, "all")
    kept = kept_real_slices(real_store, groups, 0, 2, seed=0)
    rows = real_store.nodules()["slice"]
    inside, outside = np.flatnonzero(kept[rows])[0], np.flatnonzero(~kept[rows])[0]
    joined = open_synthetic(
        _one_source_store(tmp_path / "in.zarr", store_builder, stores["real"], real_store, int(inside), column), real_store
    )
    left = open_synthetic(
        _one_source_store(tmp_path / "out.zarr", store_builder, stores["real"], real_store, int(outside), column), real_store
    )
    assert copies_kept(joined, real_store, kept).all()
    has = left.meta("has_nodule")
    assert not copies_kept(left, real_store, kept)[has].any() and copies_kept(left, real_store, kept)[~has].all()


def test_a_label_map_from_an_unkept_nodule_slice_copies_its_nodule(stores, real_store):
    groups = real_groups(real_store, 2, "all")
    kept = kept_real_slices(real_store, groups, 0, 2, seed=0)
    synthetic = open_synthetic(stores["B"], real_store)  # label map i = real slice i, no shape or size sources
    source = synthetic.meta("source")
    expected = kept[source] | ~real_store.meta("has_nodule")[source]
    assert np.array_equal(copies_kept(synthetic, real_store, kept), expected) and not expected.all()


def test_curve_cuts_real_data_with_one_budget_for_every_point_and_condition(real_store, stores, tmp_path):
    syn = {"B": open_synthetic(stores["B"], real_store)}
    config = dataclasses.replace(DetectConfig.quick_preset(size=64), epochs=1, batch_size=8)
    curve = learning_curve(run_detect, real_store, syn, config, [2, None], torch.device("cpu"))
    assert curve.points == ["2", "all"] and curve.last is curve.results["all"]
    small, full = curve.results["2"].folds, curve.results["all"].folds
    assert isinstance(curve.optimizer_steps, int)
    for fold in range(2):
        assert small["A"][fold]["real_nodule_slices"] == 2 < full["A"][fold]["real_nodule_slices"]
        assert small["A"][fold]["real_nodules"] == 2  # one slice per nodule in this store
        assert small["A"][fold]["train_patches"] < full["A"][fold]["train_patches"]
        assert small["B"][fold]["train_patches"] < full["B"][fold]["train_patches"]
        steps = {small[c][fold]["optimizer_steps"] for c in ("A", "B")} | {full[c][fold]["optimizer_steps"] for c in ("A", "B")}
        assert steps == {curve.optimizer_steps}
        assert small["A"][fold]["test_patches"] == full["A"][fold]["test_patches"]  # the test fold is never cut
    lines = "\n".join(curve_markdown(curve, "accuracy", "detect", curve_table(curve, ("accuracy",), "accuracy")))
    assert f"{curve.optimizer_steps} steps" in lines and "| 2 | 2.0 (2.0) | B |" in lines
    assert "p corrected t" in lines and "Primary comparison (fixed before the run): B vs A at K = 2" in lines
    header = next(line for line in lines.splitlines() if line.startswith("| K |"))
    row = next(line for line in lines.splitlines() if line.startswith("| 2 | 2.0 (2.0) | B |"))
    assert header.count("|") == row.count("|")  # every cell has its header
    path = curve_figure(curve, "accuracy", tmp_path / "curve.png", "t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_conditions_patches_do_not_depend_on_the_other_conditions(real_store, stores, monkeypatch):
    """The stream of a condition comes from its name, not its position among the conditions."""
    import lungforge.bench.protocol.detect as detect

    sampled: list[tuple[str, np.ndarray]] = []

    def recording(store, *args, **kwargs):
        patches = sample_patches(store, *args, **kwargs)
        sampled.append((str(store.path), patches.centre))
        return patches

    monkeypatch.setattr(detect, "sample_patches", recording)
    store = open_synthetic(stores["B"], real_store)
    config = dataclasses.replace(DetectConfig.quick_preset(size=64, patch=16), epochs=1)
    run_detect(real_store, {"B": store}, config, torch.device("cpu"))
    alone = dict(sampled)[str(store.path)]
    sampled.clear()
    run_detect(real_store, {"C": open_synthetic(stores["C"], real_store), "B": store}, config, torch.device("cpu"))
    assert np.array_equal(dict(sampled)[str(store.path)], alone)
    assert condition_stream("A") == 0 and condition_stream("B") != condition_stream("C")
