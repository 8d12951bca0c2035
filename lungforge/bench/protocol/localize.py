"""Nodule localization benchmark (paper §3, Table 1-II): torchvision Faster R-CNN, k-fold CV.

Trains on nodule slices (plus, optionally, nodule-free slices as pure negatives) of the real
training folds and, per condition, of one synthetic store's selected slices that do not touch the
test fold; evaluates AP/AR on the test fold's real nodule slices (as the paper) and the FROC
(sensitivity at 1/8 … 8 false positives per slice, CPM) on all its real slices, nodule-free ones
included. Same seeds, optimiser steps (sized from A) and schedule for every condition.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lungforge.bench.networks.small_rcnn import small_faster_rcnn
from lungforge.bench.protocol.budget import realized_share
from lungforge.bench.protocol.crossval import FoldRunner, condition_stream, cross_validate, fold_runner
from lungforge.bench.protocol.detector_training import make_targets, positive_share, predict, train_detector
from lungforge.bench.protocol.folds import OUTSIDE, source_groups
from lungforge.bench.protocol.inputs import nodule_boxes, nodule_rows
from lungforge.bench.protocol.localize_config import ANCHORS_AT_256, SHOW_SCORE, LocalizeConfig, SliceSet
from lungforge.bench.protocol.results import FoldRow, TaskResult
from lungforge.bench.protocol.selection import selected
from lungforge.bench.protocol.slices import read_resized, scale_boxes
from lungforge.bench.protocol.sources import SOURCES, external_source_slices
from lungforge.bench.scoring.froc import CPM, FROC_METRICS, froc
from lungforge.bench.scoring.metrics import detection_metrics
from lungforge.core.errors import CheckpointError, torch_load_reason
from lungforge.store import Store, nodule_ids


def load_slices(
    store: Store, groups: np.ndarray, size: int, nodule_free_ratio: float, rng: np.random.Generator, used: np.ndarray | None = None
) -> SliceSet:
    """Nodule slices of `store` among `used` (N,) bool (default: real, those with group != -1;
    synthetic, all; `groups` of the slices, or of their sources), plus round(ratio × nodule
    slices) randomly chosen nodule-free slices of the same kind, resized to `size`."""
    has = store.meta("has_nodule")
    boxes_all = nodule_boxes(store)
    keep = has & np.array([b.shape[0] > 0 for b in boxes_all])
    if used is not None:
        allowed = used
    else:
        allowed = (groups != OUTSIDE) if store.kind == "real" else np.ones(len(store), bool)
    chosen = np.flatnonzero(keep & allowed)
    free = np.flatnonzero(~has & allowed)
    n_free = min(free.size, round(nodule_free_ratio * chosen.size))
    if n_free:
        chosen = np.sort(np.concatenate([chosen, rng.choice(free, size=n_free, replace=False)]))
    images, _ = read_resized(store, chosen, size, labels=False)
    h, w = store.shape_hw
    return SliceSet(images, [scale_boxes(boxes_all[i], h, w, size) for i in chosen], groups[chosen], chosen)


def build_model(config: LocalizeConfig) -> torch.nn.Module:
    """Faster R-CNN with 2 classes (background, nodule), min_size = max_size = working size.

    resnet50 with 256 FPN channels is torchvision's `fasterrcnn_resnet50_fpn`; otherwise the same
    detector is assembled on a ResNet body with `fpn_channels` and a `head_dim` box head. Anchors
    are (8, 16, 32, 64, 128) px at 256 (scaled with the size): nodules of 3–30 mm are a few to
    ~40 px there, below torchvision's default 32–512 px anchors. Batch norm is trained (random
    init makes frozen statistics meaningless). Backbone resnet18-stride2 is the CPU-sized detector
    of :mod:`lungforge.bench.networks.small_rcnn` (anchors 2–32 px on strides 2–16).
    """
    from torch import nn
    from torchvision.models import resnet18, resnet50
    from torchvision.models.detection import FasterRCNN, fasterrcnn_resnet50_fpn
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    if config.backbone == "resnet18-stride2":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = small_faster_rcnn(config.size, config.fpn_channels, config.head_dim, config.roi_samples)
        if config.backbone_weights:
            load_backbone(model, Path(config.backbone_weights))
        return model
    sizes = tuple((max(2, round(a * config.size / 256)),) for a in ANCHORS_AT_256)
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))
    common = dict(min_size=config.size, max_size=config.size, rpn_anchor_generator=anchors, box_batch_size_per_image=config.roi_samples)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.backbone == "resnet50" and config.fpn_channels == 256 and config.head_dim == 1024:
            model = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2, **common)
        else:
            body = (resnet50 if config.backbone == "resnet50" else resnet18)(weights=None, norm_layer=nn.BatchNorm2d)
            stage = body.fc.in_features // 8
            backbone = BackboneWithFPN(
                body,
                return_layers={f"layer{i}": str(i - 1) for i in range(1, 5)},
                in_channels_list=[stage, 2 * stage, 4 * stage, 8 * stage],
                out_channels=config.fpn_channels,
                extra_blocks=LastLevelMaxPool(),
                norm_layer=None,
            )
            head = TwoMLPHead(config.fpn_channels * 7 * 7, config.head_dim)
            model = FasterRCNN(backbone, box_head=head, box_predictor=FastRCNNPredictor(config.head_dim, 2), **common)
    if config.backbone_weights:
        load_backbone(model, Path(config.backbone_weights))
    return model


def load_backbone(model: torch.nn.Module, path: Path) -> None:
    """Load a local torchvision ResNet state dict (e.g. ImageNet weights) into the FPN backbone body."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such backbone weights file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(f"{path}: not a loadable state dict ({torch_load_reason(exc)})") from None
    body = model.get_submodule("backbone.body")
    # a body cut after layer2 (resnet18-stride2) takes the layers it has from a whole ResNet's weights
    layers = {name for name, _ in body.named_children()}
    state = {k: v for k, v in state.items() if k.split(".")[0] in layers} if isinstance(state, dict) else {}
    expected = body.state_dict()
    wrong = sorted(set(expected) ^ set(state)) + sorted(k for k in expected if k in state and state[k].shape != expected[k].shape)
    if wrong:
        raise CheckpointError(f"{path}: does not match the {type(body).__name__} of the chosen backbone (first mismatch: {wrong[0]})")
    body.load_state_dict(state)


def run_fold(
    initial: torch.nn.Module,
    train: SliceSet,
    test: SliceSet,
    config: LocalizeConfig,
    device: torch.device,
    steps: int,
    free_test: np.ndarray,
    test_nodules: list[np.ndarray] | None = None,
    seed: int | None = None,
) -> FoldRow:
    """Train a copy of `initial` on `train` for `steps` optimiser steps (seeded by `seed`), evaluate:
    AP/AR on the `test` nodule slices, FROC sensitivities and CPM (:mod:`lungforge.bench.scoring.froc`)
    on them plus the fold's nodule-free slices `free_test` (F, S, S) uint8, per slice and, with
    `test_nodules` (per test slice, the nodule id (G,) of each box), per nodule (`nodule_` keys);
    sizes, steps taken and a few example predictions."""
    model, taken = train_detector(copy.deepcopy(initial), train, config, device, steps, seed)
    preds = predict(model, test.images, device)
    metrics = detection_metrics(preds, make_targets(test.boxes, torch.device("cpu")))
    every = preds + predict(model, free_test, device)
    truth = test.boxes + [np.zeros((0, 4), np.float32)] * free_test.shape[0]
    curve = froc([p["boxes"].numpy() for p in every], [p["scores"].numpy() for p in every], truth)
    per_nodule = {}
    if test_nodules is not None:
        ids = test_nodules + [np.zeros(0, np.int64)] * free_test.shape[0]
        by_nodule = froc([p["boxes"].numpy() for p in every], [p["scores"].numpy() for p in every], truth, nodule_ids=ids)
        per_nodule = {**{f"nodule_{k}": by_nodule[k] for k in (*FROC_METRICS, CPM)}, "froc_nodules": by_nodule["nodules"]}
    examples = [
        {
            "slice": int(test.slice[i]),
            "truth": test.boxes[i].round(2).tolist(),
            "predicted": preds[i]["boxes"][preds[i]["scores"] >= SHOW_SCORE].numpy().round(2).tolist(),
            "scores": preds[i]["scores"][preds[i]["scores"] >= SHOW_SCORE].numpy().round(4).tolist(),
        }
        for i in range(min(config.examples, len(preds)))
    ]
    return {
        **metrics,
        **{k: curve[k] for k in (*FROC_METRICS, CPM)},
        "froc_slices": curve["slices"],
        "froc_false_positives": curve["false_positives"],
        **per_nodule,
        "optimizer_steps": taken,
        "train_slices": int(train.images.shape[0]),
        "test_slices": int(test.images.shape[0]),
        "test_nodules": int(sum(b.shape[0] for b in test.boxes)),
        "test_positive": int(test.images.shape[0]),
        "batch_size": config.batch_size,
        "positive_share": realized_share(np.array([b.shape[0] > 0 for b in train.boxes]), config.batch_size, positive_share(config)),
        "examples": examples,
    }


def run_localize(
    real: Store, synthetic: dict[str, Store], config: LocalizeConfig, device: torch.device, out: Path | None = None, progress: Any = None
) -> TaskResult:
    """Run every (fold, condition) of the localization benchmark; finished folds in `out` are reused."""

    def make_runner(groups: np.ndarray) -> FoldRunner:
        real_set = load_slices(real, groups, config.size, config.nodule_free_ratio, np.random.default_rng([config.seed, 0]))
        test_mask = np.array([b.shape[0] > 0 for b in real_set.boxes])
        syn_sets = {}
        for name, store in synthetic.items():
            rng = np.random.default_rng([config.seed, condition_stream(name)])
            syn_sets[name] = load_slices(
                store, source_groups(store, real, groups), config.size, config.nodule_free_ratio, rng, selected(store, config.select)
            )
        sources = external_source_slices(real, synthetic, groups)
        if sources.any():
            rng = np.random.default_rng([config.seed, condition_stream(SOURCES)])
            syn_sets[SOURCES] = load_slices(real, groups, config.size, config.nodule_free_ratio, rng, sources)
        initial = build_model(config)  # built once: every fold and condition starts from these weights
        free_rows = np.flatnonzero(~real.meta("has_nodule") & (groups != OUTSIDE))
        free_test: dict[int, np.ndarray] = {}  # the current fold's nodule-free slices (folds run in order)

        def nodule_free_test(fold: int) -> np.ndarray:
            if fold not in free_test:
                free_test.clear()
                free_test[fold] = read_resized(real, free_rows[groups[free_rows] == fold], config.size, labels=False)[0]
            return free_test[fold]

        ids = nodule_ids(real)
        slice_nodules = [ids[rows] for rows in nodule_rows(real)]  # in the order of each slice's boxes

        def train_and_test(fold: int, train: list[SliceSet], steps: int, seed: int) -> FoldRow:
            test = real_set.select((real_set.group == fold) & test_mask)
            test_nodules = [slice_nodules[i] for i in test.slice]
            return run_fold(initial, SliceSet.concat(train), test, config, device, steps, nodule_free_test(fold), test_nodules, seed)

        return fold_runner(real, synthetic, groups, config, real_set, syn_sets, train_and_test)

    return cross_validate("localize", real, synthetic, config, make_runner, out, progress)
