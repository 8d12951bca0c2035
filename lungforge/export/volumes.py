"""The scans a volume export writes: selection by split and nodules, whole-volume reads, and each
nodule's box in voxels and in world millimetres."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lungforge.core.choices import ExportSplit
from lungforge.luna16.scans import index_to_world
from lungforge.store import SPLIT_IDS, VolumeStore


@dataclass(frozen=True, eq=False)
class ExportVolume:
    """One scan as exported: its whole HU and label volumes, its place in the world, its nodules.

    `image` (Z, Y, X) int16 HU and `label` (Z, Y, X) uint8 label ids; voxel index (z, y, x) sits
    at world x, y, z mm = `origin_mm` + `direction` · (`spacing_mm` · (x, y, z)), in the store's
    world (LPS: ITK and MetaImage, as LUNA16's annotations.csv). `boxes_voxel` (K, 6) z0, y0, x0,
    z1, y1, x1 are the tight half-open voxel boxes of each nodule's mask (-1 where the mask is
    empty: :attr:`lost`); `centers_mm` (K, 3) and `diameters_mm` (K,) the annotations.
    """

    index: int
    case: str
    split: str
    fold: int
    series_uid: str
    image: np.ndarray
    label: np.ndarray
    spacing_mm: float
    origin_mm: np.ndarray
    direction: np.ndarray
    boxes_voxel: np.ndarray
    centers_mm: np.ndarray
    diameters_mm: np.ndarray

    @property
    def lost(self) -> np.ndarray:
        """(K,) bool: nodules with no voxel at the store's spacing."""
        return self.boxes_voxel[:, 0] < 0

    def index_to_world(self, index_zyx: np.ndarray) -> np.ndarray:
        """(N, 3) continuous voxel indices z, y, x → (N, 3) world x, y, z mm."""
        index = np.asarray(index_zyx, dtype=np.float64).reshape(-1, 3)[:, ::-1]
        return index_to_world(index, self.origin_mm, np.full(3, self.spacing_mm), self.direction)

    def world_boxes(self) -> np.ndarray:
        """(K, 6) world boxes cx, cy, cz, w, h, d in mm (MONAI's "cccwhd"), axis-aligned in the world.

        A nodule with voxels gets the box of their full extent (voxel faces, half a voxel beyond
        the outermost voxel centres), as the world bounds of the eight corners, so a flipped
        direction gives the same box. A nodule with no voxel gets the annotation: its centre and
        a cube of its diameter.
        """
        boxes = np.zeros((len(self.boxes_voxel), 6), dtype=np.float64)
        for k, (box, centre, diameter) in enumerate(zip(self.boxes_voxel, self.centers_mm, self.diameters_mm)):
            if box[0] < 0:
                boxes[k] = (*centre, diameter, diameter, diameter)
                continue
            lo, hi = box[:3].astype(np.float64) - 0.5, box[3:].astype(np.float64) - 0.5
            corners = np.array(list(itertools.product(*zip(lo, hi))))  # the 8 corners, z, y, x
            world = self.index_to_world(corners)
            low, high = world.min(axis=0), world.max(axis=0)
            boxes[k] = (*((low + high) / 2), *(high - low))
        return boxes


def select_scans(store: VolumeStore, split: ExportSplit, nodule_only: bool) -> np.ndarray:
    """Scans to export, ascending: the chosen split(s), optionally only scans with an annotated nodule."""
    keep = np.ones(len(store), dtype=bool)
    if split != "all":
        keep &= store.split == SPLIT_IDS[split]
    if nodule_only:
        keep &= np.isin(np.arange(len(store)), store.nodules()["scan"])
    return np.flatnonzero(keep)


def case_names(count: int) -> list[str]:
    """Case ids of scans 0..count-1: `lungforge_<i>`, zero-padded to one width (at least 3 digits),
    so ids never clash and sort in scan order."""
    width = max(3, len(str(max(count - 1, 0))))
    return [f"lungforge_{i:0{width}d}" for i in range(count)]


def iter_volumes(store: VolumeStore, indices: np.ndarray) -> Iterator[ExportVolume]:
    """Yield the scans `indices` (ascending), one whole volume at a time."""
    table = store.nodules()
    names = case_names(len(store))
    uids, origin, direction = store.uids, store.origin_mm, store.direction
    for i in indices.tolist():
        rows = np.flatnonzero(table["scan"] == i)
        image, label = store.read(i)
        yield ExportVolume(
            index=i,
            case=names[i],
            split=store.split_name(i),
            fold=int(store.fold[i]),
            series_uid=uids[i],
            image=image,
            label=label,
            spacing_mm=store.spacing_mm,
            origin_mm=origin[i].astype(np.float64),
            direction=direction[i].astype(np.float64),
            boxes_voxel=table["bbox"][rows].astype(np.int64).reshape(-1, 6),
            centers_mm=table["center_mm"][rows].astype(np.float64).reshape(-1, 3),
            diameters_mm=table["diameter_mm"][rows].astype(np.float64),
        )
