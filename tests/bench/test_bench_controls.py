"""`bench --controls`: the control stores' request, and the separation verdict."""

from __future__ import annotations

import numpy as np
import pytest

from lungforge.augment.options import AugmentOptions
from lungforge.bench.protocol.controls import CONTROLS_DIR, REQUEST, control_options, make_controls, separation, separation_sentence
from lungforge.bench.protocol.detect import DetectConfig
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.results import TaskResult
from lungforge.core.errors import InputError


def test_controls_copy_the_reference_request_and_resume_an_existing_store(tmp_path, stores):
    real = open_real(stores["real"])
    reference = open_synthetic(stores["B"], real)
    options = control_options(stores["real"], real, reference, tmp_path / "controls", seed=4)
    assert [o.weights for o in options] == ["mislabeled", "paste", "blob"]
    has = reference.meta("has_nodule")
    for o in options:
        assert (o.nodules, o.nodule_free) == (int(has.sum()), int((~has).sum()))
        assert o.size == real.shape_hw[0] and o.shape == "real" and o.retries == 0 and not o.resume
    (tmp_path / "controls" / "paste.zarr").mkdir()
    again = control_options(stores["real"], real, reference, tmp_path / "controls", seed=4)
    assert [o.resume for o in again] == [False, True, False]
    alone = control_options(stores["real"], real, None, tmp_path / "alone", seed=4)
    train_nodule_slices = int(((real.meta("split") == 0) & real.meta("has_nodule")).sum())
    assert alone[0].nodules == alone[0].nodule_free == train_nodule_slices


def test_controls_read_the_reference_request_back_from_its_augment_options(tmp_path, stores, store_builder):
    real = open_real(stores["real"])
    path = tmp_path / "ref.zarr"
    written = AugmentOptions(
        data=stores["real"],
        weights="demo-sdm-tiny",
        out=path,
        nodules=7,
        nodule_free=3,
        diameter_mm=(4.0, 9.5),
        per_slice=2,
        placement="left",
        shape="sphere",
        seed=11,
        min_contrast_hu=40.0,
        retries=2,
        overwrite=True,
    )
    store_builder(path, "synthetic", seed=5, made_from=stores["real"], attrs={"params": written.as_params()})
    for options in control_options(stores["real"], real, open_synthetic(path, real), tmp_path / "controls", seed=4):
        assert {name: getattr(options, name) for name in REQUEST} == {name: getattr(written, name) for name in REQUEST}
        assert options.shape == "real" and options.retries == 0 and not options.overwrite and options.size == 64


def test_controls_are_made_at_the_real_store_size_not_the_generator_size(tmp_path, stores, store_builder):
    real = open_real(stores["real"])
    small = store_builder(tmp_path / "small.zarr", "synthetic", seed=5, made_from=stores["real"], size=32)
    options = control_options(stores["real"], real, open_synthetic(small, real), tmp_path / "controls", seed=4)
    assert real.shape_hw[0] == 64 and [o.size for o in options] == [64, 64, 64]


def _result(paste: list[float], mislabeled: list[float]) -> TaskResult:
    folds = {"paste": [{"accuracy": v} for v in paste], "mislabeled": [{"accuracy": v} for v in mislabeled]}
    return TaskResult("detect", DetectConfig(), ("paste", "mislabeled"), folds, {})


def test_controls_made_from_another_real_store_are_refused_naming_both(tmp_path, stores, store_builder):
    """`bench all --controls` rerun into one --out with another --real (here of another length):
    refused naming the store the controls were made from and the one given, not a shard count."""
    out = tmp_path / "report"
    store_builder(out / CONTROLS_DIR / "mislabeled.zarr", "synthetic", made_from=stores["real"])
    other = store_builder(tmp_path / "other.zarr", "real", per_series=6, seed=9)
    with pytest.raises(InputError) as refused:
        make_controls(other, open_real(other), {}, out, seed=0)
    message = str(refused.value)
    assert f"made from real store {stores['real']}" in message and f"--real {other}" in message and "shards" not in message
    assert "another --out" in message


def test_separation_needs_a_paired_p_below_005_with_paste_ahead():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.8, 10)
    ahead = separation(_result(list(base + 0.05 + rng.uniform(0, 0.01, 10)), list(base)), "accuracy")
    assert ahead.separated and ahead.comparison.p["signed_rank"] < 0.05 and ahead.comparison.diff_mean > 0
    behind = separation(_result(list(base), list(base + 0.05 + rng.uniform(0, 0.01, 10))), "accuracy")
    assert not behind.separated
    two_folds = separation(_result([0.9, 0.9], [0.5, 0.5]), "accuracy")
    assert not two_folds.separated and two_folds.comparison.p_min["signed_rank"] == 0.5
    data = two_folds.to_dict()
    assert data["metric"] == "accuracy" and data["separated"] is False and data["p"]["signed_rank"]["min"] == 0.5
    excluded = _result([0.9, 0.9, 0.9], [0.5, 0.5, 0.5])
    excluded.folds["paste"][1]["test_negative"] = 0
    assert separation(excluded, "accuracy").comparison.paired_folds == 2  # the unscored fold is left out
    sentence = separation_sentence("detect", two_folds, 2)
    assert "does NOT separate" in sentence and "means nothing" in sentence and "+40.00 pts" in sentence
    assert "separates the positive control" in separation_sentence("detect", ahead, 10)
