import numpy as np
import pytest
import torch
import torchvision

from lungforge.bench.protocol.folds import real_groups
from lungforge.bench.protocol.inputs import open_real
from lungforge.bench.protocol.localize import LocalizeConfig, build_model, load_slices, make_targets, to_inputs
from lungforge.errors import CheckpointError


def test_load_slices_keeps_nodule_slices_and_scales_boxes(stores):
    real = open_real(stores["real"])
    groups = real_groups(real, 2, "all")
    s = load_slices(real, groups, 32, 0.0, np.random.default_rng(0))
    assert s.images.shape == (20, 32, 32)
    assert all(b.shape[0] == 1 for b in s.boxes)
    original = real.nodules()["bbox"][np.searchsorted(real.nodules()["slice"], s.slice)]
    np.testing.assert_allclose(np.concatenate(s.boxes), original / 2, rtol=1e-6)
    with_free = load_slices(real, groups, 32, 0.5, np.random.default_rng(0))
    assert with_free.images.shape[0] == 30 and sum(b.shape[0] == 0 for b in with_free.boxes) == 10


@pytest.fixture(scope="module")
def quick_model():
    return build_model(LocalizeConfig.quick_preset(size=64))


def test_quick_model_trains_and_predicts_at_working_size(quick_model):
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64), dtype=np.uint8)
    boxes = [np.array([[10, 10, 20, 20]], np.float32), np.zeros((0, 4), np.float32)]
    quick_model.train()
    losses = quick_model(to_inputs(images, torch.device("cpu")), make_targets(boxes, torch.device("cpu")))
    assert set(losses) >= {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    assert quick_model.transform.min_size == (64,) and quick_model.transform.max_size == 64
    assert quick_model.roi_heads.box_predictor.cls_score.out_features == 2


def test_backbone_weights_from_a_local_file(tmp_path):
    good = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), good)
    model = build_model(LocalizeConfig.quick_preset(size=64, backbone_weights=str(good)))
    reference = torch.load(good, weights_only=True)
    assert torch.equal(model.backbone.body.conv1.weight, reference["conv1.weight"])
    wrong = tmp_path / "wrong.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), wrong)
    with pytest.raises(CheckpointError, match="does not match"):
        build_model(LocalizeConfig.quick_preset(size=64, backbone_weights=str(wrong)))


def test_training_is_deterministic_whatever_the_global_rng(quick_model):
    import copy
    import dataclasses

    from lungforge.bench.protocol.localize import SliceSet, train_detector

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    boxes = [np.array([[10, 10, 20, 20]], np.float32)] * 4
    train = SliceSet(images=images, boxes=boxes, **{f.name: np.zeros(4, np.int64) for f in dataclasses.fields(SliceSet) if f.name not in ("images", "boxes")})
    config = dataclasses.replace(LocalizeConfig.quick_preset(size=64), epochs=1, batch_size=2)
    weights = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        model, steps = train_detector(copy.deepcopy(quick_model), train, config, torch.device("cpu"), 2)
        assert steps == 2
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_froc_scores_every_test_slice_nodule_free_included(stores):
    """AP/AR on the fold's nodule slices, the FROC on all of its slices (the fixture: 20 per fold, 10 with a nodule)."""
    import dataclasses

    from lungforge.bench.scoring.froc import CPM, FROC_METRICS
    from lungforge.bench.protocol.localize import run_localize

    real = open_real(stores["real"])
    config = dataclasses.replace(LocalizeConfig.quick_preset(size=64), epochs=1)
    result = run_localize(real, {}, config, torch.device("cpu"))
    groups = real_groups(real, 2, "all")
    for fold, record in enumerate(result.folds["A"]):
        in_fold = groups == fold
        assert record["test_slices"] == int((in_fold & real.meta("has_nodule")).sum()) == 10
        assert record["froc_slices"] == int(in_fold.sum()) == 20
        sens = [record[k] for k in FROC_METRICS]
        assert all(0.0 <= s <= 1.0 for s in sens) and sens == sorted(sens)
        assert record[CPM] == pytest.approx(np.mean(sens))
