import numpy as np
import pytest
import torch
import torchvision

from lungforge.bench.protocol.detector_training import make_targets, to_inputs
from lungforge.bench.protocol.folds import real_groups
from lungforge.bench.protocol.inputs import open_real
from lungforge.bench.protocol.localize import LocalizeConfig, build_model, load_slices
from lungforge.core.errors import CheckpointError


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

    from lungforge.bench.protocol.detector_training import train_detector
    from lungforge.bench.protocol.localize import SliceSet

    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 64, 64), dtype=np.uint8)
    boxes = [np.array([[10, 10, 20, 20]], np.float32)] * 4
    train = SliceSet(
        images=images,
        boxes=boxes,
        **{f.name: np.zeros(4, np.int64) for f in dataclasses.fields(SliceSet) if f.name not in ("images", "boxes")},
    )
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

    from lungforge.bench.protocol.localize import run_localize
    from lungforge.bench.scoring.froc import CPM, FROC_METRICS

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


def test_cpu_preset_anchors_match_every_box_of_2_to_30_px_at_its_rpn_threshold():
    """A box no anchor reaches at the RPN's positive IoU can never be learnt (the Matcher's low-quality
    rescue aside): every square and 1-px-oblong box of 2–30 px, at every offset within the coarsest
    stride, has an anchor of the real generator's output at or above it."""
    from torchvision.models.detection._utils import Matcher
    from torchvision.ops import box_iou

    from lungforge.bench.networks.small_rcnn import RPN_FG_IOU

    size = 128
    model = build_model(LocalizeConfig.cpu_preset(size=size))
    assert model.rpn.proposal_matcher.high_threshold == RPN_FG_IOU
    model.eval()
    with torch.no_grad():
        images, _ = model.transform(to_inputs(np.zeros((1, size, size), np.uint8), torch.device("cpu")))
        anchors = model.rpn.anchor_generator(images, list(model.backbone(images.tensors).values()))[0]
    boxes = torch.tensor(
        [
            [40 + dx, 40 + dy, 40 + dx + w, 40 + dy + h]
            for w in range(2, 31)
            for h in (w, w + 1)
            if h <= 30
            for dx in range(16)
            for dy in range(16)
        ],
        dtype=torch.float32,
    )
    best = box_iou(boxes, anchors).max(1).values  # each box alone (the boxes overlap one another)
    assert (best >= RPN_FG_IOU).all(), f"worst box {boxes[best.argmin()].tolist()} reaches IoU {best.min():.3f}"
    one = Matcher(RPN_FG_IOU, model.rpn.proposal_matcher.low_threshold, allow_low_quality_matches=False)(box_iou(boxes[:1], anchors))
    assert (one == 0).any()  # torchvision's own matcher makes a positive of it
    quick = build_model(LocalizeConfig.quick_preset(size=size))  # the paper geometry misses the small ones at 0.7
    with torch.no_grad():
        images, _ = quick.transform(to_inputs(np.zeros((1, size, size), np.uint8), torch.device("cpu")))
        paper_anchors = quick.rpn.anchor_generator(images, list(quick.backbone(images.tensors).values()))[0]
    assert (box_iou(boxes[:256], paper_anchors).max(1).values < quick.rpn.proposal_matcher.high_threshold).all()


def test_rotate90_turns_boxes_with_the_image():
    from lungforge.bench.protocol.detector_training import rotate90

    image = np.zeros((16, 16), np.uint8)
    image[2:5, 10:14] = 1  # rows 2..4, columns 10..13: box (10, 2, 14, 5)
    for turns in range(4):
        turned, boxes = rotate90(image, np.array([[10.0, 2.0, 14.0, 5.0]]), turns)
        rows, cols = np.nonzero(turned)
        np.testing.assert_array_equal(boxes[0], [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1])


def test_cpu_preset_takes_a_whole_resnet18_and_trains(tmp_path):
    good = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), good)
    model = build_model(LocalizeConfig.cpu_preset(size=64, backbone_weights=str(good)))
    assert torch.equal(model.backbone.body.layer2[0].conv1.weight, torch.load(good, weights_only=True)["layer2.0.conv1.weight"])
    assert not hasattr(model.backbone.body, "layer3")
    model.train()
    images = np.random.default_rng(0).integers(0, 255, (2, 64, 64), dtype=np.uint8)
    losses = model(
        to_inputs(images, torch.device("cpu")), make_targets([np.array([[10, 10, 12, 12]], np.float32)] * 2, torch.device("cpu"))
    )
    assert all(torch.isfinite(v) for v in losses.values())
