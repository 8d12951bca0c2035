"""The per-fold controls `hosts` and `classic`, their classical augmentation, and the helpfulness verdict."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lungforge.bench.protocol import detect
from lungforge.bench.protocol.classic import classic_copies
from lungforge.bench.protocol.detect import DetectConfig, run_detect
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.results import TaskResult
from lungforge.bench.protocol.verdict import verdicts
from lungforge.core.errors import InputError


def _config(**kw) -> DetectConfig:
    return dataclasses.replace(DetectConfig.quick_preset(size=64), epochs=1, **kw)


def _capture(monkeypatch) -> dict:
    """Replace training by a recorder of each (fold, condition)'s training patches."""
    seen: dict = {}

    def fake_run_fold(train, test, config, device, steps, diameter_mm, patient=None, seed=None):
        seen[len(seen)] = train
        return {"accuracy": 0.5, "optimizer_steps": steps, "train_patches": len(train), "train_positive": int(train.target.sum())}

    monkeypatch.setattr(detect, "run_fold", fake_run_fold)
    return seen


def _run(stores, monkeypatch, seed=0):
    real = open_real(stores["real"])
    synthetic = {"mislabeled": open_synthetic(stores["B"], real), "paste": open_synthetic(stores["B"], real)}
    seen = _capture(monkeypatch)
    result = run_detect(real, synthetic, _config(fold_controls=True, seed=seed), torch.device("cpu"))
    order = [(f, c) for f in range(2) for c in result.conditions]
    return result, {key: seen[i] for i, key in enumerate(order)}


def test_hosts_add_the_joined_host_patches_labelled_nodule_free_and_classic_as_many_augmented_positives(stores, monkeypatch):
    result, train = _run(stores, monkeypatch)
    assert result.conditions == ("A", "mislabeled", "paste", "hosts", "classic")
    for fold in range(2):
        a, mislabeled, paste = train[fold, "A"], train[fold, "mislabeled"], train[fold, "paste"]
        hosts, classic = train[fold, "hosts"], train[fold, "classic"]
        extra_hosts = hosts.select(np.arange(len(a), len(hosts)))
        joined = mislabeled.select(np.arange(len(a), len(mislabeled)))
        assert len(extra_hosts) == len(joined) > 0 and int(joined.target.sum()) > 0
        np.testing.assert_array_equal(extra_hosts.images, joined.images)  # the same pixels ...
        assert not extra_hosts.target.any() and (extra_hosts.nodule == -1).all()  # ... labelled nodule-free
        added = classic.select(np.arange(len(a), len(classic)))
        assert len(added) == int(paste.target.sum()) - int(a.target.sum())  # as many positives as paste adds
        assert added.target.all() and np.isin(added.slice, a.slice[a.target == 1]).all()  # A's own nodules only
        assert not np.array_equal(added.images, a.images[a.target == 1][: len(added)])


def test_classic_matches_the_first_synthetic_store_that_is_no_control(stores, store_builder, tmp_path, monkeypatch):
    """paste copies the first store's request, but its joins can differ (another shape, size or
    selection): classic adds as many positives as that store adds itself, and says so per fold."""
    real = open_real(stores["real"])
    sparse = store_builder(tmp_path / "sparse.zarr", "synthetic", seed=3, nodule_every=4, made_from=stores["real"])
    generator = open_synthetic(stores["B"], real)
    synthetic = {"mislabeled": generator, "paste": open_synthetic(sparse, real), "G": generator}
    seen = _capture(monkeypatch)
    result = run_detect(real, synthetic, _config(fold_controls=True), torch.device("cpu"))
    assert result.conditions == ("A", "mislabeled", "paste", "G", "hosts", "classic")
    train = {key: seen[i] for i, key in enumerate((f, c) for f in range(2) for c in result.conditions)}
    for fold in range(2):
        a, paste, g, classic = (train[fold, c] for c in ("A", "paste", "G", "classic"))
        added = int(classic.target.sum()) - int(a.target.sum())
        assert added == int(g.target.sum()) - int(a.target.sum()) > int(paste.target.sum()) - int(a.target.sum())
        assert result.folds["classic"][fold]["built_from"] == "G" and result.folds["classic"][fold]["synthetic_positives"] == added
        assert result.folds["hosts"][fold]["built_from"] == "mislabeled"
    assert "built_from" not in result.folds["G"][0]
    # without a store of its own, the run's classic is paste's size
    assert {row["built_from"] for row in _run(stores, monkeypatch)[0].folds["classic"]} == {"paste"}


def test_classic_is_seeded(stores, monkeypatch):
    first = _run(stores, monkeypatch)[1][0, "classic"]
    again = _run(stores, monkeypatch)[1][0, "classic"]
    other = _run(stores, monkeypatch, seed=1)[1][0, "classic"]
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)


def test_fold_controls_need_the_control_stores(stores, monkeypatch):
    real = open_real(stores["real"])
    _capture(monkeypatch)
    with pytest.raises(InputError, match="need the control stores mislabeled, paste"):
        run_detect(real, {"B": open_synthetic(stores["B"], real)}, _config(fold_controls=True), torch.device("cpu"))


def test_classic_copies_move_boxes_with_their_nodule():
    rng = np.random.default_rng(0)
    images = np.full((3, 64, 64), 20, np.uint8)
    boxes = []
    for i, (r, c) in enumerate([(10, 12), (40, 30), (30, 45)]):
        images[i, r : r + 6, c : c + 8] = 220
        boxes.append(np.array([[c, r, c + 8, r + 6]], np.float32))
    rows, moved, moved_boxes = classic_copies(images, boxes, 12, rng)
    assert sorted(np.bincount(rows).tolist()) == [4, 4, 4]  # every source used in turn
    for image, box in zip(moved, moved_boxes):
        x0, y0, x1, y1 = box[0]
        bright = np.argwhere(image > 120)
        centre = bright.mean(axis=0)
        assert y0 <= centre[0] <= y1 and x0 <= centre[1] <= x1
        rows_c, cols_c = bright[:, 0] + 0.5, bright[:, 1] + 0.5  # pixel centres in edge coordinates
        assert ((rows_c >= y0 - 1) & (rows_c <= y1 + 1) & (cols_c >= x0 - 1) & (cols_c <= x1 + 1)).all()  # the box holds the moved nodule
        assert abs((x1 - x0) * (y1 - y0) - 48) < 48  # about its size (scale 0.9–1.1, rotation ≤ 15°)


def _result(values: dict[str, list[float]]) -> TaskResult:
    folds = {c: [{"accuracy": v} for v in vs] for c, vs in values.items()}
    return TaskResult("detect", DetectConfig(), tuple(values), folds, {})


def test_a_generator_is_helpful_only_when_ahead_of_a_classic_and_blob():
    base = np.linspace(0.5, 0.7, 10)
    step = np.linspace(0.01, 0.02, 10)
    values = {
        "A": base,
        "mislabeled": base - 0.1,
        "paste": base + step,
        "blob": base + step,
        "hosts": base,
        "classic": base + 2 * step,
        "good": base + 3 * step,
        "beats_a_only": base + step,
    }
    by_name = {v.generator: v for v in verdicts(_result({k: list(v) for k, v in values.items()}), "accuracy")}
    assert set(by_name) == {"good", "beats_a_only"}
    assert by_name["good"].helpful and set(by_name["good"].against) == {"A", "classic", "blob"}
    assert not by_name["beats_a_only"].helpful
    assert by_name["beats_a_only"].against["A"].diff_mean > 0 and by_name["beats_a_only"].against["classic"].diff_mean < 0


def test_slice_sets_give_nodule_free_hosts_and_classic_copies_with_moved_boxes():
    from lungforge.bench.protocol.localize import SliceSet

    images = np.full((3, 64, 64), 20, np.uint8)
    images[0, 20:28, 20:28] = 220
    boxes = [np.array([[20, 20, 28, 28]], np.float32), np.zeros((0, 4), np.float32), np.zeros((0, 4), np.float32)]
    slices = SliceSet(images, boxes, np.zeros(3, np.int64), np.arange(3))
    assert slices.positive.tolist() == [True, False, False]
    hosts = slices.nodule_free()
    assert not hosts.positive.any() and np.array_equal(hosts.images, images)
    classic = slices.classic(5, np.random.default_rng(0))
    assert len(classic) == 5 and classic.positive.all() and (classic.slice == 0).all()
    for image, (box,) in zip(classic.images, classic.boxes):
        centre = np.argwhere(image > 120).mean(axis=0) + 0.5
        assert box[1] <= centre[0] <= box[3] and box[0] <= centre[1] <= box[2]
