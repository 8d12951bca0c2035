"""The preparation recipe for one scan: display orientation, lungs, nodule masks, kept slices,
label maps and nodule boxes (docs/prepare.md)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from lungforge.core.choices import Lungs
from lungforge.core.errors import ScanError
from lungforge.core.labels import LEFT_LUNG, RIGHT_LUNG, SegValues
from lungforge.luna16 import scans as luna16
from lungforge.luna16.metaimage import Geometry, read_geometry
from lungforge.luna16.orientation import Reorientation
from lungforge.preparation.input_checks import geometry_difference, hu_problem
from lungforge.preparation.masks import (
    auto_lung_labels,
    body_mask,
    compose_labels,
    nodule_mask,
    seg_to_labels,
    window_to_uint8,
)
from lungforge.preparation.options import PrepareOptions

BoxRow = tuple[int, tuple[float, float, float, float], float, int]
"""(slice index among the kept slices, (x0, y0, x1, y1) px, diameter mm, the scan's annotation
index) of one nodule box."""


@dataclass
class ScanSlices:
    """The kept slices of one scan: images/labels (K, H, W) uint8 and their metadata."""

    uid: str
    image: np.ndarray
    label: np.ndarray
    z: np.ndarray
    has_nodule: np.ndarray
    spacing_rc_mm: tuple[float, float]
    nodule_rows: list[BoxRow] = field(default_factory=list)
    lost: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Nodule:
    """An annotated nodule in display voxels: its mask within `box` and the slices it touches."""

    annotation: luna16.Annotation
    box: tuple[slice, slice, slice]
    mask: np.ndarray
    touched: np.ndarray
    centre_z: int


def process_scan(root: Path, ref: luna16.ScanRef, annotations: list[luna16.Annotation], options: PrepareOptions) -> ScanSlices:
    """Run the recipe on one scan. Raises :class:`ScanError` naming the file and the problem.

    The scan (and its seg mask) is turned into the display orientation first, so slices, label
    maps, boxes and spacing all follow it whatever the file's direction.
    """
    volume, lungs, lung_present = read_scan(root, ref, options.lungs, options.seg_values)
    nodules = _locate_nodules(volume, ref, annotations)
    kept, free_kept = _choose_slices(nodules, lung_present, options, ref.uid)
    image, label, nodule_px, per_nodule = _label_slices(volume.hu, lungs, kept, nodules, options)
    del lungs
    rows, labelled = _nodule_boxes(per_nodule, nodules)
    has_nodule = cast(np.ndarray, nodule_px.any(axis=(1, 2)))
    # A nodule slice whose nodule vanished under the threshold is neither a nodule slice nor
    # nodule-free: drop it (its nodule is reported as lost below).
    keep_mask = has_nodule | np.isin(kept, free_kept)
    if not keep_mask.all():
        remap = np.cumsum(keep_mask) - 1
        rows = [(int(remap[k]), b, d, a) for k, b, d, a in rows if keep_mask[k]]
        image, label, kept, has_nodule = image[keep_mask], label[keep_mask], kept[keep_mask], has_nodule[keep_mask]
    rows.sort(key=lambda row: row[0])
    lost = [
        {
            "series": ref.uid,
            "center_mm": [round(float(v), 2) for v in n.annotation.center_mm],
            "diameter_mm": round(n.annotation.diameter_mm, 2),
            "reason": _loss_reason(n.mask, n.touched, n.centre_z, options.nodule_slices),
        }
        for n, done in zip(nodules, labelled)
        if not done
    ]
    if annotations and kept.size == 0:
        reasons = "; ".join(f"{n['diameter_mm']} mm: {n['reason']}" for n in lost)
        raise ScanError(f"{ref.mhd}: its {len(annotations)} annotated nodules yield no slice ({reasons})")
    return ScanSlices(
        uid=ref.uid,
        image=image,
        label=label,
        z=kept.astype(np.int32),
        has_nodule=has_nodule,
        spacing_rc_mm=(float(volume.spacing_mm[1]), float(volume.spacing_mm[0])),
        nodule_rows=rows,
        lost=lost,
    )


def read_scan(root: Path, ref: luna16.ScanRef, lungs_from: Lungs, seg_values: SegValues) -> tuple[luna16.Volume, np.ndarray, np.ndarray]:
    """The scan in display orientation, its (Z, Y, X) lung labels (seg-file values for
    `lungs_from` "seg", lungforge ids for "auto") and which slices (Z,) hold lung. ScanError
    naming the file for a bad scan or seg mask, or when no lung is found."""
    volume = luna16.read_volume(ref.mhd)
    problem = hu_problem(volume.hu)
    if problem:
        raise ScanError(f"{ref.mhd}: {problem}")
    turn = Reorientation.from_direction(volume.direction, str(ref.mhd))
    seg_path = root / luna16.SEG_DIR / f"{ref.uid}.mhd"
    seg: np.ndarray | None = None
    if lungs_from == "seg":
        seg = luna16.read_seg(root, ref.uid)
        if seg is None:
            raise ScanError(f"{seg_path}: no seg mask for this scan (use --lungs auto to segment classically)")
        scan_geometry = Geometry(volume.hu.shape, volume.origin_mm, volume.spacing_mm, volume.direction)
        difference = geometry_difference(scan_geometry, read_geometry(seg_path))
        if difference:
            raise ScanError(f"{seg_path}: {difference}")
    volume = _display(volume, turn)
    if seg is not None:
        lungs = _contiguous(turn.apply(seg))
        lung_values = (seg_values.left, seg_values.right)
    else:
        lungs = auto_lung_labels(
            volume.hu,
            body_mask(window_to_uint8(volume.hu)),
            volume.spacing_mm,
            left_is_high_x=bool(volume.direction[0, 0] > 0),
            superior_is_high_z=bool(volume.direction[2, 2] > 0),
        )
        lung_values = (LEFT_LUNG, RIGHT_LUNG)
    lung_present = _slices_holding(lungs, lung_values)
    if not lung_present.any():
        if lungs_from == "seg":
            raise ScanError(f"{seg_path}: no voxel holds the lung values left={lung_values[0]} right={lung_values[1]} (check --seg-values)")
        raise ScanError(f"{ref.mhd}: --lungs auto found no lung (no air region of ≥ 30 mm² inside the body on any slice)")
    return volume, lungs, lung_present


def _locate_nodules(volume: luna16.Volume, ref: luna16.ScanRef, annotations: list[luna16.Annotation]) -> list[_Nodule]:
    """Each annotation's nodule mask in display voxels (ScanError for a centre outside the volume)."""
    if not annotations:
        return []
    hu = volume.hu
    nodules = []
    for ann, centre in zip(annotations, nodule_centres(volume, ref, annotations)):
        box, mask = nodule_mask(hu, centre, ann.diameter_mm, volume.spacing_mm, volume.direction)
        touched = box[0].start + np.flatnonzero(mask.any(axis=(1, 2)))
        centre_z = int(np.clip(np.rint(centre[2]), 0, hu.shape[0] - 1))
        nodules.append(_Nodule(ann, box, mask, touched, centre_z))
    return nodules


def nodule_centres(volume: luna16.Volume, ref: luna16.ScanRef, annotations: list[luna16.Annotation]) -> np.ndarray:
    """(N, 3) continuous x, y, z voxel indices of the annotations' centres in `volume`; ScanError
    naming annotations.csv and the series for a centre outside the volume."""
    centres = luna16.world_to_index(np.stack([a.center_mm for a in annotations]), volume.origin_mm, volume.spacing_mm, volume.direction)
    size_xyz = np.array(volume.hu.shape[::-1])
    for ann, centre in zip(annotations, centres):
        if np.any(centre < -0.5) or np.any(centre > size_xyz - 0.5):
            raise ScanError(
                f"annotations.csv: nodule of {ref.uid} at {np.round(ann.center_mm, 1).tolist()} mm lies outside "
                f"the volume (voxel {np.round(centre, 1).tolist()}, size {size_xyz.tolist()})"
            )
    return centres


def _choose_slices(nodules: list[_Nodule], lung_present: np.ndarray, options: PrepareOptions, uid: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept slice indices (K,) int64, the nodule-free ones among them): the nodule slices
    (`options.nodule_slices`) holding lung, plus a seeded `keep_nodule_free` share of the lung
    slices no nodule touches."""
    n_z = lung_present.shape[0]
    touched_any = np.zeros(n_z, dtype=bool)
    wanted = np.zeros(n_z, dtype=bool)
    for n in nodules:
        touched_any[n.touched] = True
        touched_any[n.centre_z] = True
        if options.nodule_slices == "center":
            wanted[n.centre_z] = True
        else:
            wanted[n.touched] = True
    nodule_z = np.flatnonzero(wanted & lung_present)
    free = np.flatnonzero(lung_present & ~touched_any)
    n_keep = round(options.keep_nodule_free * free.size)
    free_kept = np.sort(_scan_rng(options.seed, uid).choice(free, size=n_keep, replace=False)) if n_keep else free[:0]
    return np.union1d(nodule_z, free_kept).astype(np.int64), free_kept


def _label_slices(
    hu: np.ndarray, lungs: np.ndarray, kept: np.ndarray, nodules: list[_Nodule], options: PrepareOptions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[float, np.ndarray, np.ndarray]]]:
    """Windowed images and label maps (K, H, W) uint8 of the kept slices, their nodule pixels
    (K, H, W) bool, and per nodule (diameter mm, rows of `kept` it crosses, its mask there)."""
    image = window_to_uint8(hu[kept])
    nodule_px = np.zeros(image.shape, dtype=bool)
    per_nodule: list[tuple[float, np.ndarray, np.ndarray]] = []
    for n in nodules:
        box = n.box
        z_local = np.flatnonzero((kept >= box[0].start) & (kept < box[0].stop))
        sub = n.mask[kept[z_local] - box[0].start]
        nodule_px[
            z_local[:, None, None], np.arange(box[1].start, box[1].stop)[None, :, None], np.arange(box[2].start, box[2].stop)[None, None, :]
        ] |= sub
        per_nodule.append((n.annotation.diameter_mm, z_local, sub))
    lungs_kept = seg_to_labels(lungs[kept], options.seg_values) if options.lungs == "seg" else lungs[kept]
    label = compose_labels(body_mask(image), lungs_kept, nodule_px)
    return image, label, nodule_px, per_nodule


def _nodule_boxes(per_nodule: list[tuple[float, np.ndarray, np.ndarray]], nodules: list[_Nodule]) -> tuple[list[BoxRow], np.ndarray]:
    """One box row per nodule per kept slice its mask crosses, and (N,) bool: which nodules got one."""
    rows: list[BoxRow] = []
    labelled = np.zeros(len(nodules), dtype=bool)
    for j, ((diameter, z_local, sub), n) in enumerate(zip(per_nodule, nodules)):
        box = n.box
        for k, plane in zip(z_local, sub):
            if not plane.any():
                continue
            r = np.flatnonzero(plane.any(axis=1))
            c = np.flatnonzero(plane.any(axis=0))
            bbox = (
                float(box[2].start + c[0]),
                float(box[1].start + r[0]),
                float(box[2].start + c[-1] + 1),
                float(box[1].start + r[-1] + 1),
            )
            rows.append((int(k), bbox, float(diameter), j))
            labelled[j] = True
    return rows, labelled


def _scan_rng(seed: int, uid: str) -> np.random.Generator:
    """A generator that depends only on the seed and the scan (not on order or workers)."""
    return np.random.default_rng([seed, zlib.crc32(uid.encode())])


def _contiguous(array: np.ndarray) -> np.ndarray:
    return array if array.flags.c_contiguous else np.ascontiguousarray(array)


def _display(volume: luna16.Volume, turn: Reorientation) -> luna16.Volume:
    """`volume` in the display orientation (the same object when it already is)."""
    if turn.is_identity:
        return volume
    origin, spacing, direction = turn.geometry(volume.hu.shape, volume.origin_mm, volume.spacing_mm, volume.direction)
    return luna16.Volume(hu=_contiguous(turn.apply(volume.hu)), origin_mm=origin, spacing_mm=spacing, direction=direction)


def display_shape(mhd: Path) -> tuple[tuple[int, int, int], bool]:
    """The (Z, Y, X) shape `mhd` is stored with in display orientation, from its header alone,
    and whether its file order differs from it (ScanError when the header is invalid)."""
    geometry = read_geometry(mhd)
    turn = Reorientation.from_direction(geometry.direction, str(mhd))
    return turn.shape(geometry.shape_zyx), not turn.is_identity


def _loss_reason(mask: np.ndarray, touched: np.ndarray, centre_z: int, mode: str) -> str:
    """Why an annotated nodule yields no labelled slice (for the summary and --json)."""
    if not mask.any():
        return "mask empty at this resolution (no voxel of its sphere is denser than the threshold)"
    if mode == "center" and centre_z not in touched:
        return f"mask misses its central slice z={centre_z}"
    if mode == "center":
        return f"no lung on its central slice z={centre_z}"
    return "no lung on any slice its mask touches"


def _slices_holding(volume: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """(Z,) bool: which axial slices of a (Z, Y, X) volume contain any of `values`."""
    present = np.zeros(volume.shape[0], dtype=bool)
    for value in values:
        present |= (volume == value).reshape(volume.shape[0], -1).any(axis=1)
    return present
