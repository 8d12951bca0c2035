"""Why does a Faster R-CNN (not) learn the phantom's nodules? Anchors, proposals and losses, by detector.

    python benchmarks/localize_diagnosis.py --json                         # the demo phantom (20 scans, 128 px)
    python benchmarks/localize_diagnosis.py --steps 300 --detectors cpu    # one detector, longer

Phantom → prepare → the nodule slices of fold 0 / fold 1 (2 folds, as the demo) at --size px.
For each detector (`quick`: the quick preset's ResNet-18 FPN with the paper's anchor geometry;
`cpu`: :meth:`LocalizeConfig.cpu_preset`) it prints, per ground-truth box size (longest side in
px): the boxes, their mean best anchor IoU and how many have an anchor at or above the RPN's
positive IoU (torchvision's Matcher without its low-quality rescue, on the real anchor
generator's output for the real feature maps); then trains on fold 1 for --steps optimiser steps
(the bench's own `train_detector`) and prints the loss curve (mean of each torchvision loss over
windows of steps), the RPN's proposal recall on fold 0 (a test box counts when one of the kept
proposals has IoU ≥ 0.5 with it) and AP50 on the training and test slices, with CPU seconds.
docs/localization.md holds the findings.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torchvision.ops import box_iou

from lungforge.bench.protocol.detector_training import make_targets, predict, to_inputs, train_detector
from lungforge.bench.protocol.folds import real_groups
from lungforge.bench.protocol.inputs import open_real
from lungforge.bench.protocol.localize import LocalizeConfig, SliceSet, build_model, load_slices
from lungforge.bench.protocol.slices import read_resized
from lungforge.bench.scoring.metrics import detection_metrics
from lungforge.core.labels import LUNG_LABELS, NODULE
from lungforge.phantom.scans import make_phantom
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import Store

SIZE_BINS_PX = ((0, 1.5, "1"), (1.5, 3.5, "2-3"), (3.5, 7.5, "4-7"), (7.5, 1e9, "8+"))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def detector_config(name: str, size: int) -> LocalizeConfig:
    """The `quick` (demo's former) or `cpu` localization config at `size` px, 2 folds."""
    if name == "quick":
        return LocalizeConfig.quick_preset(size=size)
    return LocalizeConfig.cpu_preset(size=size)


@torch.no_grad()
def anchors_and_features(model: torch.nn.Module, images: np.ndarray) -> tuple[torch.Tensor, Any, Any]:
    """The anchors (A, 4) px of one slice (all slices share them), the transformed images and features."""
    model.eval()
    image_list, _ = model.transform(to_inputs(images, torch.device("cpu")))
    features = model.backbone(image_list.tensors)
    anchors = model.rpn.anchor_generator(image_list, list(features.values()))
    return anchors[0], image_list, features


def anchor_table(model: torch.nn.Module, slices: SliceSet) -> list[dict[str, Any]]:
    """Per size bin: boxes, mean best-anchor IoU, boxes with an anchor ≥ the RPN positive IoU, mean such anchors."""
    anchors, _, _ = anchors_and_features(model, slices.images[:1])
    threshold = model.rpn.proposal_matcher.high_threshold
    boxes = torch.from_numpy(np.concatenate(slices.boxes)).float()
    iou = box_iou(boxes, anchors)
    side = (boxes[:, 2:] - boxes[:, :2]).max(1).values
    rows = []
    for low, high, name in SIZE_BINS_PX:
        keep = (side > low) & (side <= high)
        if keep.any():
            matched = (iou[keep] >= threshold).sum(1)
            rows.append(
                {
                    "size_px": name,
                    "boxes": int(keep.sum()),
                    "best_iou": round(float(iou[keep].max(1).values.mean()), 3),
                    "matched": int((matched > 0).sum()),
                    "anchors_per_box": round(float(matched.float().mean()), 2),
                }
            )
    return rows


def look_alikes(real: Store, slices: SliceSet, size: int) -> list[dict[str, Any]]:
    """Per box-size bin: how many bright things in the same slice's lungs look at least as big as the nodule.

    Bright = above half-way from the lung's median intensity to the nodule's peak (per nodule); the
    nodule's own bright component's area (px) is compared with every other bright component inside
    the lungs (labels 1, 2, eroded by 1 px). A nodule with `rivals` ≥ 1 is not the most salient
    blob of its lungs; on one slice a detector cannot tell it from those vessels by size or brightness."""
    _, labels = read_resized(real, slices.slice, size)
    per_bin: dict[str, list[int]] = {name: [] for _, _, name in SIZE_BINS_PX}
    for image, label, boxes in zip(slices.images.astype(np.float32), labels, slices.boxes, strict=True):
        lungs = ndimage.binary_erosion(np.isin(label, LUNG_LABELS), iterations=1)
        nodule = label == NODULE
        if not nodule.any():
            continue
        level = float(np.median(image[lungs | nodule]))
        bright = image > level + 0.5 * (float(image[nodule].max()) - level)
        components, count = ndimage.label(bright & (lungs | nodule))
        areas = np.bincount(components.ravel(), minlength=count + 1)
        own = np.unique(components[nodule & bright])
        own = own[own > 0]
        others = np.setdiff1d(np.arange(1, count + 1), own)
        side = float((boxes[:, 2:] - boxes[:, :2]).max())
        name = next(n for low, high, n in SIZE_BINS_PX if low < side <= high)
        per_bin[name].append(int((areas[others] >= areas[own].max()).sum()))
    return [
        {"size_px": name, "nodules": len(r), "median_rivals": float(np.median(r)), "most_salient": sum(x == 0 for x in r)}
        for name, r in per_bin.items()
        if r
    ]


@torch.no_grad()
def proposal_recall(model: torch.nn.Module, slices: SliceSet, iou: float = 0.5) -> float:
    """Fraction of the boxes of `slices` with a kept RPN proposal at IoU ≥ `iou` (eval mode)."""
    found = total = 0
    for start in range(0, len(slices), 8):
        _, image_list, features = anchors_and_features(model, slices.images[start : start + 8])
        proposals, _ = model.rpn(image_list, features)
        for boxes, props in zip(slices.boxes[start : start + 8], proposals):
            total += boxes.shape[0]
            if boxes.shape[0] and props.shape[0]:
                found += int((box_iou(torch.from_numpy(boxes).float(), props).max(1).values >= iou).sum())
    return found / max(total, 1)


def test_ap50(model: torch.nn.Module, test: SliceSet) -> float:
    """AP50 of `model` on `test` (eval mode; the model is left in train mode)."""
    cpu = torch.device("cpu")
    ap = detection_metrics(predict(model, test.images, cpu), make_targets(test.boxes, cpu))["AP50"]
    model.train()
    return ap


def diagnose(name: str, slices: SliceSet, size: int, steps: int, window: int, eval_every: int = 0) -> dict[str, Any]:
    """Anchor table, loss curve, proposal recall and AP50 of detector `name` trained on fold 1, tested
    on fold 0; with `eval_every`, also the test AP50 every that many steps (batch-norm statistics of
    the moment, not re-estimated) with the training CPU seconds spent so far."""
    config = detector_config(name, size)
    model = build_model(config)
    table = anchor_table(model, slices)
    train, test = slices.select(slices.group == 1), slices.select(slices.group == 0)
    losses: list[dict[str, float]] = []
    ap_curve: list[dict[str, float]] = []
    started = cpu_seconds()
    evaluating = 0.0

    def on_step(step: int, step_losses: dict[str, float]) -> None:
        nonlocal evaluating
        losses.append(step_losses)
        if eval_every and step % eval_every == 0 and step < steps:
            before = cpu_seconds()
            ap_curve.append(
                {"steps": step, "AP50": round(test_ap50(model, test), 3), "train_cpu_s": round(before - started - evaluating, 1)}
            )
            evaluating += cpu_seconds() - before

    train_detector(model, train, config, torch.device("cpu"), steps, on_step=on_step)
    cpu = cpu_seconds() - started - evaluating
    curve = [
        {"steps": min(i + window, steps), **{k: round(float(np.mean([s[k] for s in losses[i : i + window]])), 4) for k in losses[0]}}
        for i in range(0, len(losses), window)
    ]
    cpu_targets = torch.device("cpu")
    ap = {
        part: detection_metrics(predict(model, s.images, cpu_targets), make_targets(s.boxes, cpu_targets))["AP50"]
        for part, s in (("train", train), ("test", test))
    }
    return {
        "detector": name,
        "rpn_fg_iou": model.rpn.proposal_matcher.high_threshold,
        "anchors": table,
        "steps": steps,
        "train_cpu_s": round(cpu, 1),
        "loss_curve": curve,
        "proposal_recall_test": round(proposal_recall(model, test), 3),
        "AP50_train": round(ap["train"], 3),
        "AP50_test": round(ap["test"], 3),
        "ap50_curve": [*ap_curve, {"steps": steps, "AP50": round(ap["test"], 3), "train_cpu_s": round(cpu, 1)}],
    }


def ap50_figure(results: list[dict[str, Any]], path: Path) -> Path:
    """Test AP50 against optimiser steps (bottom axis) of each detector, training CPU-s on a top axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for result in results:
        curve = result["ap50_curve"]
        ax.plot(
            [p["steps"] for p in curve],
            [p["AP50"] for p in curve],
            marker="o",
            label=f"{result['detector']} (final {curve[-1]['train_cpu_s']:.0f} CPU-s)",
        )
    ax.set(xlabel="optimiser steps (batch 4)", ylabel="AP50, test fold", ylim=(0, 1), title="A's AP50 against training steps, demo phantom")
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--size", type=int, default=128, help="Phantom and working size (px).")
    parser.add_argument("--steps", type=int, default=150, help="Optimiser steps on fold 1.")
    parser.add_argument("--window", type=int, default=25, help="Steps per point of the loss curve.")
    parser.add_argument("--detectors", default="quick,cpu", help="Comma-separated: quick, cpu.")
    parser.add_argument("--eval-every", type=int, default=0, help="Test AP50 every N steps (0: at the end only).")
    parser.add_argument("--figure", type=Path, default=None, help="Write the AP50-vs-steps figure (PNG) here.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="One JSON line per detector.")
    args = parser.parse_args()
    names = args.detectors.split(",")
    if not set(names) <= {"quick", "cpu"}:
        parser.error(f"--detectors: expected names among quick, cpu, got {args.detectors!r}")
    with tempfile.TemporaryDirectory() as tmp:
        make_phantom(Path(tmp) / "luna16", scans=args.scans, size=args.size, seed=args.seed)
        prepare(Path(tmp) / "luna16", Path(tmp) / "real.zarr", PrepareOptions(test_patients=0.2, seed=args.seed, workers=1))
        real = open_real(Path(tmp) / "real.zarr")
        slices = load_slices(real, real_groups(real, 2, "all"), args.size, 0.0, np.random.default_rng(args.seed))
        rivals = look_alikes(real, slices, args.size)
    print(f"{len(slices)} nodule slices, {sum(b.shape[0] for b in slices.boxes)} boxes at {args.size} px", file=sys.stderr)
    if args.json:
        print(json.dumps({"look_alikes": rivals}))
    else:
        print("bright components in the lungs at least as large as the nodule's own (per box size):")
        for row in rivals:
            print(
                f"  {row['size_px']:>3} px: {row['nodules']} nodules, median {row['median_rivals']:g} rivals, {row['most_salient']} the most salient"
            )
    results = []
    for name in names:
        result = diagnose(name, slices, args.size, args.steps, args.window, args.eval_every)
        results.append(result)
        if args.json:
            print(json.dumps(result))
            continue
        print(f"\n{name}: RPN positive IoU {result['rpn_fg_iou']}")
        for row in result["anchors"]:
            print(
                f"  boxes {row['size_px']:>3} px: {row['boxes']:3d}, best anchor IoU {row['best_iou']:.3f}, "
                f"matched {row['matched']}/{row['boxes']}, {row['anchors_per_box']} anchors per box"
            )
        for point in result["loss_curve"]:
            print("  step {steps:4d}: ".format(**point) + ", ".join(f"{k} {v:.4f}" for k, v in point.items() if k != "steps"))
        print(
            f"  {result['steps']} steps in {result['train_cpu_s']} CPU-s; proposal recall (test) {result['proposal_recall_test']:.3f}; "
            f"AP50 train {result['AP50_train']:.3f}, test {result['AP50_test']:.3f}"
        )
        for point in result["ap50_curve"][:-1]:
            print(f"  test AP50 after {point['steps']} steps ({point['train_cpu_s']} CPU-s): {point['AP50']:.3f}")
    if args.figure is not None:
        print(f"wrote {ap50_figure(results, args.figure)}", file=sys.stderr)


if __name__ == "__main__":
    main()
