"""Train a nodule detector (torchvision Faster R-CNN) on real + synthetic lungforge stores.

    python examples/train_detector_mixed.py --real real.zarr --synthetic synth.zarr --steps 200

Reads both stores with `lungforge.SliceDataset` (train split of the real store, every slice of
the synthetic one), mixes them with a ConcatDataset and trains from scratch; prints the loss.
"""

from __future__ import annotations

import argparse
import json

import torch
from torch.utils.data import ConcatDataset, DataLoader
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from lungforge import SliceDataset, collate_slices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", required=True, help="real store (its train split is used)")
    parser.add_argument("--synthetic", nargs="*", default=[], help="synthetic stores (all slices)")
    parser.add_argument("--size", type=int, default=256, help="working size in pixels")
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    parts = [SliceDataset(args.real, size=args.size, split="train", nodule=True)]
    parts += [SliceDataset(path, size=args.size, split="all", nodule=True) for path in args.synthetic]
    data = ConcatDataset(parts)
    loader = DataLoader(
        data, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
        collate_fn=collate_slices, generator=torch.Generator().manual_seed(args.seed),
    )
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5)
    model = FasterRCNN(backbone, num_classes=2, min_size=args.size, max_size=args.size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    step, losses = 0, []
    while step < args.steps:
        for batch in loader:
            images = [img.expand(3, -1, -1) * 0.5 + 0.5 for img in batch["image"]]
            targets = [{"boxes": b, "labels": torch.ones(len(b), dtype=torch.int64)} for b in batch["boxes"]]
            loss = sum(model(images, targets).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss))
            step += 1
            if step >= args.steps:
                break
    print(json.dumps({"slices": len(data), "real": len(parts[0]), "steps": step, "first_loss": losses[0], "last_loss": losses[-1]}))


if __name__ == "__main__":
    main()
