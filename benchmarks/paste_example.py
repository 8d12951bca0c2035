"""Paste, looked at and measured on phantom data: phantom → prepare → augment --weights paste.

    python benchmarks/paste_example.py --out /tmp/paste-example          # 20 scans at 128 px, ~30 s
    python benchmarks/paste_example.py --out DIR --scans 4 --size 64 --nodules 4 --examples 2

Writes DIR/paste_example.png (per pasted nodule: its real source nodule, the target slice before,
after, after with the label outlined, and the change ×3) and DIR/nodule_gallery.png (real and
paste, the detector's 16-px field at 128 px), and prints one JSON line: the augment summary's
diameter error and visible share, and the mean gradient (HU per pixel) across real nodule
borders, across the pasted nodules' borders and across the paste's seams (from the changed
pixels to the untouched lung beside them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.augment.visibility import hu_from_uint8
from lungforge.bench.reporting.figures import _pyplot
from lungforge.bench.reporting.gallery import NoduleCrop, crop_tile, nodule_gallery, square_window
from lungforge.core.labels import LUNG_LABELS, NODULE
from lungforge.data.resize import resize_images_uint8
from lungforge.phantom.scans import make_phantom
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import Store, open_store

CROP_PX = 24


def steps_hu(hu: np.ndarray, inside: np.ndarray, outside: np.ndarray) -> np.ndarray:
    """|HU(p) − HU(q)| over 4-neighbour pairs, p in `inside`, q in `outside` (HU per pixel)."""
    head, tail, every = slice(1, None), slice(None, -1), slice(None)
    out = []
    for a, b in (((every, head), (every, tail)), ((head, every), (tail, every))):
        for p, q in ((a, b), (b, a)):
            edge = inside[p] & outside[q]
            out.append(np.abs(hu[p][edge] - hu[q][edge]))
    return np.concatenate(out)


def border_gradient_hu(store: Store) -> float:
    """Mean over nodules of the gradient across their borders (nodule pixel → lung neighbour)."""
    values = []
    for i in np.flatnonzero(store.meta("has_nodule")):
        image, label = store.read(int(i))
        lung = np.isin(label, LUNG_LABELS)
        pieces, count = ndimage.label(label == NODULE, structure=np.ones((3, 3), bool))
        for k in range(1, count + 1):
            steps = steps_hu(hu_from_uint8(image), pieces == k, lung)
            if steps.size:
                values.append(steps.mean())
    return float(np.mean(values))


def seam_gradient_hu(store: Store, real: Store) -> float:
    """Mean over pasted slices of the gradient from the changed pixels to the untouched lung beside them."""
    values = []
    for i in np.flatnonzero(store.meta("has_nodule")):
        image, label = store.read(int(i))
        before = resize_images_uint8(np.asarray(real.image[int(store.meta("source")[i])])[None], store.shape_hw[0])[0]
        changed = image != before
        steps = steps_hu(hu_from_uint8(image), changed, ~changed & np.isin(label, LUNG_LABELS))
        if steps.size:
            values.append(steps.mean())
    return float(np.mean(values))


def example_figure(real: Store, paste: Store, path: Path, examples: int) -> Path:
    """Rows: pasted nodules from smallest to largest; columns: source, before, after, outlined, change ×3."""
    plt = _pyplot()
    real_table, table = real.nodules(), paste.nodules()
    order = np.argsort(table["diameter_mm"], kind="stable")
    picks = order[np.unique(np.round(np.linspace(0, order.size - 1, min(examples, order.size))).astype(int))]
    fig, axes = plt.subplots(len(picks), 5, figsize=(7.5, 1.6 * len(picks)), squeeze=False)
    empty = np.zeros((CROP_PX, CROP_PX), bool)
    for r, k in enumerate(picks):
        i = int(table["slice"][k])
        image, label = paste.read(i)
        before = np.asarray(real.image[int(paste.meta("source")[i])])
        x0, y0, x1, y1 = table["bbox"][k]
        top, left = round((y0 + y1 - CROP_PX) / 2), round((x0 + x1 - CROP_PX) / 2)
        row = int(table["shape_source"][k])
        source_image, source_label = real.read(int(real_table["slice"][row]))
        sx0, sy0, sx1, sy1 = real_table["bbox"][row]
        s_top, s_left = round((sy0 + sy1 - CROP_PX) / 2), round((sx0 + sx1 - CROP_PX) / 2)
        after = square_window(image, top, left, CROP_PX)
        change = np.abs(after.astype(int) - square_window(before, top, left, CROP_PX))
        panels = [
            (
                NoduleCrop(
                    square_window(source_image, s_top, s_left, CROP_PX),
                    square_window(source_label, s_top, s_left, CROP_PX) == NODULE,
                    0,
                    0.0,
                ),
                f"source row {row}",
            ),
            (NoduleCrop(square_window(before, top, left, CROP_PX), empty, 0, 0.0), "target before"),
            (NoduleCrop(after, empty, 0, 0.0), f"pasted, {table['diameter_mm'][k]:.1f} mm"),
            (NoduleCrop(after, square_window(label, top, left, CROP_PX) == NODULE, 0, 0.0), "pasted, label outlined"),
            (NoduleCrop(np.clip(3 * change, 0, 255).astype(np.uint8), empty, 0, 0.0), "|after − before| × 3"),
        ]
        for c, (crop, name) in enumerate(panels):
            axes[r, c].imshow(crop_tile(crop, outline=crop.nodule.any()), interpolation="nearest")
            axes[r, c].set_title(name, fontsize=6)
            axes[r, c].axis("off")
    fig.suptitle(f"paste at {paste.shape_hw[0]} px, {CROP_PX}-px crops", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="new directory for the data, stores and figures")
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--size", type=int, default=128, help="phantom size in pixels")
    parser.add_argument("--nodules", type=int, default=32, help="pasted nodule slices")
    parser.add_argument("--examples", type=int, default=6, help="rows of paste_example.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=False)
    make_phantom(args.out / "luna16", scans=args.scans, size=args.size, seed=args.seed)
    prepare(args.out / "luna16", args.out / "real.zarr", PrepareOptions(test_patients=0.2, seed=args.seed))
    report = augment(
        AugmentOptions(
            data=args.out / "real.zarr",
            weights="paste",
            out=args.out / "paste.zarr",
            nodules=args.nodules,
            shape="real",
            device="cpu",
            seed=args.seed,
            retries=0,
        )
    )
    real, paste = open_store(args.out / "real.zarr"), open_store(args.out / "paste.zarr")
    example_figure(real, paste, args.out / "paste_example.png", args.examples)
    nodule_gallery(real, {"paste": paste}, args.out / "nodule_gallery.png", f"phantom at {args.size} px", 16 / 128)
    print(
        json.dumps(
            {
                "diameter_error_pct_mean": report.diameter_error_pct_mean,
                "visible_first_draw": report.verified_first_try,
                "real_border_gradient_hu": border_gradient_hu(real),
                "pasted_border_gradient_hu": border_gradient_hu(paste),
                "seam_gradient_hu": seam_gradient_hu(paste, real),
                "figures": [str(args.out / "paste_example.png"), str(args.out / "nodule_gallery.png")],
            }
        )
    )


if __name__ == "__main__":
    main()
