"""Export slices of a lungforge store to PNG (image | label colours) and NIfTI for inspection.

    python examples/export_store.py synth.zarr exported/ --max 16

Writes <out>/<index>.png for the first --max slices (nodule boxes drawn in red) and
<out>/image.nii.gz + <out>/label.nii.gz stacking them, with the in-plane spacing in mm.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import SimpleITK as sitk

from lungforge import open_store


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("store")
    parser.add_argument("out", type=Path)
    parser.add_argument("--max", type=int, default=16, help="number of slices to export")
    args = parser.parse_args()

    store = open_store(args.store)
    args.out.mkdir(parents=True, exist_ok=True)
    n = min(args.max, len(store))
    images, labels = np.asarray(store.image[:n]), np.asarray(store.label[:n])
    table = store.nodules()
    for i in range(n):
        fig, axes = plt.subplots(1, 2, figsize=(6, 3))
        axes[0].imshow(images[i], cmap="gray", vmin=0, vmax=255)
        axes[1].imshow(labels[i], cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
        for x0, y0, x1, y1 in table["bbox"][table["slice"] == i]:
            axes[0].add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color="red"))
        for ax in axes:
            ax.axis("off")
        fig.savefig(args.out / f"{i:05d}.png", dpi=80, bbox_inches="tight")
        plt.close(fig)
    spacing = store.meta("spacing")[0] if n else np.ones(2)
    for name, stack in (("image", images), ("label", labels)):
        volume = sitk.GetImageFromArray(stack)
        volume.SetSpacing((float(spacing[1]), float(spacing[0]), 1.0))
        sitk.WriteImage(volume, str(args.out / f"{name}.nii.gz"))
    print(f"exported {n} slices to {args.out}")


if __name__ == "__main__":
    main()
