"""A volume store (`lungforge.volumes/1`): each scan as one 3-D volume, opened and read.

Layout (docs/store-format.md, "Volume stores")::

    <store>.zarr/  attrs: schema, kind, spacing_mm, window, labels, orientation, params, inputs,
                   integrity, content, complete, skipped, lost_nodules, ...
      volumes/<i>/image   (Z_i, Y_i, X_i) int16 HU, chunks 64³, shards (64, Y_i↑64, X_i↑64), zstd + crc32c
      volumes/<i>/label   (Z_i, Y_i, X_i) uint8 label ids, chunked as image
      scans/<name>        (S, ...) one row per scan i: uid, split, fold, origin_mm, direction, source_spacing_mm
      nodules/<name>      (M, ...) one row per annotated nodule: scan, center_mm, center_voxel, ...
      parts/              per-scan commit records while a writer runs

One group per scan, because scans differ in shape: a padded (S, Zmax, Ymax, Xmax) array would
spend most of its voxels on padding and make every scan's shape a side table. A scan has one
writer, which writes its two arrays whole and then its commit record, so resume redoes exactly
the scans without a record. The integrity rules are the slice store's (:mod:`lungforge.store`):
crc32c per chunk, every chunk written, a `content` record of array and attribute digests that
:func:`open_volume_store` checks (attributes, and every array's chunk checksums against the
recorded digests: chunks lost, rewritten or swapped in), and every read refuses a chunk that
fails its checksum.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lungforge.core.errors import CorruptStoreError, SchemaError
from lungforge.core.labels import labels_attr
from lungforge.core.locks import ReadLock
from lungforge.luna16.scans import index_to_world, world_to_index
from lungforge.store.chunks import CheckedArray, StrictChunks
from lungforge.store.content import array_digest, attribute_problem, content_fingerprint, stored_blocks
from lungforge.store.schema import SPLIT_IDS, VOLUME_SCHEMA, has_checksums
from lungforge.store.volume_schema import INSERTED_COLUMNS, NODULE_COLUMNS, SCAN_COLUMNS, VOLUME_DTYPES
from lungforge.store.zarr_group import open_schema_group, require_array

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr
    from zarr.storage import LocalStore

SPLIT_NAMES = {v: k for k, v in SPLIT_IDS.items()}


def volume_arrays(scans: int, synthetic: bool = False) -> list[str]:
    """Every array of a complete volume store of `scans` scans, in digest order (`synthetic`: a
    store of kind "synthetic", which adds the `inserted/*` table)."""
    names = ["scans/uid", *(f"scans/{c}" for c in SCAN_COLUMNS), *(f"nodules/{c}" for c in NODULE_COLUMNS)]
    names += [f"inserted/{c}" for c in INSERTED_COLUMNS] if synthetic else []
    return names + [f"volumes/{i}/{a}" for i in range(scans) for a in VOLUME_DTYPES]


class VolumeStore:
    """An open volume store: per scan `i` (0 ≤ i < len(store)) its HU and label volumes, geometry,
    split and fold; the nodule table; axial slices for the 2-D pipeline.

    Voxel index (z, y, x) of scan i sits at world mm (x, y, z) = origin_mm[i] + direction[i] ·
    (spacing_mm · (x, y, z)) (:meth:`index_to_world`), the orientation of the `orientation` attribute.
    """

    def __init__(self, path: Path, group: zarr.Group, mode: str, read_lock: ReadLock | None = None) -> None:
        self.path = path
        self.group = group
        self.mode = mode
        self._read_lock = read_lock
        self._columns: dict[str, np.ndarray] = {}
        self._digests: dict[str, str] | None = None

    def close(self) -> None:
        """Release the shared lock taken by ``open_volume_store(..., lock_for_reading=True)`` (idempotent)."""
        if self._read_lock is not None:
            self._read_lock.release()

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def spacing_mm(self) -> float:
        """The isotropic voxel spacing of every volume, mm."""
        return float(self.attrs["spacing_mm"])

    @property
    def window_hu(self) -> tuple[float, float]:
        """The HU window of the 2-D pipeline (its uint8 slices), recorded for slices read from here."""
        lo, hi = self.attrs["window"]
        return float(lo), float(hi)

    def __len__(self) -> int:
        return int(self.zarray("scans/uid").shape[0])

    def zarray(self, name: str) -> zarr.Array:
        """The zarr array `name` (KeyError when absent; SchemaError when `name` is a group)."""
        node = self.group[name]
        if not isinstance(node, zarr.Array):
            raise SchemaError(f"{self.path}: {name} is a group, expected an array")
        return node

    def array(self, name: str) -> CheckedArray:
        """A read view of array `name` (e.g. `volumes/0/image`, `scans/fold`); damage raises CorruptStoreError."""
        return CheckedArray(self.path, name, self.zarray(name))

    def _column(self, name: str) -> np.ndarray:
        if name not in self._columns:
            self._columns[name] = np.asarray(self.array(name)[...])
        return self._columns[name]

    @property
    def uids(self) -> list[str]:
        """(S,) LUNA16 seriesuid of each scan."""
        return [str(u) for u in self._column("scans/uid")]

    @property
    def split(self) -> np.ndarray:
        """(S,) uint8: 0 train, 1 test (SPLIT_IDS), by patient as in the slice store."""
        return self._column("scans/split")

    @property
    def fold(self) -> np.ndarray:
        """(S,) int8 LUNA16 subset number 0..9."""
        return self._column("scans/fold")

    @property
    def origin_mm(self) -> np.ndarray:
        """(S, 3) float64 world x, y, z in mm of voxel (0, 0, 0) of each volume."""
        return self._column("scans/origin_mm")

    @property
    def direction(self) -> np.ndarray:
        """(S, 3, 3) float64: columns are the world directions of each volume's x, y, z index axes."""
        return self._column("scans/direction")

    def shape(self, i: int) -> tuple[int, int, int]:
        """(Z, Y, X) voxels of volume `i`."""
        z, y, x = self.zarray(f"volumes/{i}/image").shape
        return int(z), int(y), int(x)

    def image(self, i: int) -> CheckedArray:
        """(Z, Y, X) int16 HU of scan `i`, indexable like a numpy array (chunks 64³)."""
        return self.array(f"volumes/{i}/image")

    def label(self, i: int) -> CheckedArray:
        """(Z, Y, X) uint8 label ids (:mod:`lungforge.core.labels`) of scan `i`."""
        return self.array(f"volumes/{i}/label")

    def read(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The whole volume `i`: HU (Z, Y, X) int16 and labels (Z, Y, X) uint8."""
        return np.asarray(self.image(i)[...]), np.asarray(self.label(i)[...])

    def axial(self, i: int, z: int | slice | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Axial slices `z` of volume `i`: HU (K, Y, X) int16 and labels (K, Y, X) uint8 (an int
        `z` gives K = 1). For the 2-D pipeline's uint8 images, window the HU with `window_hu`
        (:func:`lungforge.preparation.masks.window_to_uint8`)."""
        if isinstance(z, int | np.integer):
            z = slice(int(z), int(z) + 1)
        if isinstance(z, slice):
            return np.asarray(self.image(i)[z]), np.asarray(self.label(i)[z])
        index = np.asarray(z, dtype=np.int64)
        return np.asarray(self.image(i).oindex[index, :, :]), np.asarray(self.label(i).oindex[index, :, :])

    def index_to_world(self, i: int, index_zyx: np.ndarray) -> np.ndarray:
        """(N, 3) continuous voxel indices (z, y, x) of volume `i` → (N, 3) world x, y, z in mm."""
        index = np.asarray(index_zyx, dtype=np.float64).reshape(-1, 3)[:, ::-1]
        return index_to_world(index, self.origin_mm[i], np.full(3, self.spacing_mm), self.direction[i])

    def world_to_index(self, i: int, points_mm: np.ndarray) -> np.ndarray:
        """(N, 3) world x, y, z in mm → (N, 3) continuous voxel indices (z, y, x) of volume `i`."""
        points = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
        return world_to_index(points, self.origin_mm[i], np.full(3, self.spacing_mm), self.direction[i])[:, ::-1]

    def nodules(self) -> dict[str, np.ndarray]:
        """The nodule table, one row per annotated nodule: `scan` (M,), `center_mm` (M, 3) x, y, z
        world mm, `center_voxel` (M, 3) z, y, x voxels, `diameter_mm` (M,), `annotation` (M,) line
        of annotations.csv, `voxels` (M,), `bbox` (M, 6) z0, y0, x0, z1, y1, x1 (half-open, -1 when empty)."""
        return {name: self._column(f"nodules/{name}") for name in NODULE_COLUMNS}

    def split_name(self, i: int) -> str:
        """ "train" or "test": the split of scan `i`."""
        return SPLIT_NAMES[int(self.split[i])]

    # -- integrity ---------------------------------------------------------------------------
    @property
    def checked(self) -> bool:
        """True if the store was written with checksums and every chunk."""
        return has_checksums(self.attrs)

    @property
    def synthetic(self) -> bool:
        """True for a store of inserted nodules (kind "synthetic", with the `inserted/*` table)."""
        return self.attrs.get("kind") == "synthetic"

    def inserted(self) -> dict[str, np.ndarray]:
        """The inserted-nodule table of a synthetic store (columns of
        :data:`~lungforge.store.volume_schema.INSERTED_COLUMNS`; `nodule` is the row of :meth:`nodules`)."""
        if not self.synthetic:
            raise SchemaError(f"{self.path}: a {self.attrs.get('kind')!r} volume store has no inserted nodules")
        return {name: self._column(f"inserted/{name}") for name in INSERTED_COLUMNS}

    def array_names(self) -> list[str]:
        """Every array of the schema present in the store."""
        return [name for name in volume_arrays(len(self), self.synthetic) if name in self.group]

    def stored_blocks(self, name: str) -> list[tuple[str, tuple[slice, ...], bool]]:
        """(key, region, present) of every stored shard or chunk of array `name`."""
        return stored_blocks(self.path, name, self.zarray(name))

    def content_digests(self) -> dict[str, str]:
        """Per array, 16 hex digits over its shape, dtype and chunk crc32c checksums (cached)."""
        if self._digests is None:
            self._digests = {name: array_digest(self.path, name, self.zarray(name), self.checked) for name in self.array_names()}
        return dict(self._digests)

    def fingerprint(self) -> str:
        """16 hex digits identifying the store's content (its schema and :meth:`content_digests`)."""
        return content_fingerprint(self.attrs.get("schema"), self.content_digests())

    def recorded_digests(self) -> dict[str, str] | None:
        """The digests recorded when the store was finished (None while it is written)."""
        recorded = self.attrs.get("content")
        return dict(recorded["arrays"]) if isinstance(recorded, dict) and isinstance(recorded.get("arrays"), dict) else None

    def recorded_attribute_digests(self) -> dict[str, str] | None:
        """The attribute digests recorded when the store was finished (None while it is written)."""
        recorded = self.attrs.get("content")
        attributes = recorded.get("attributes") if isinstance(recorded, dict) else None
        return dict(attributes) if isinstance(attributes, dict) else None

    def content_problem(self) -> str | None:
        """Which arrays' chunk checksums differ from the digests recorded when the store was
        finished (chunks lost, rewritten or swapped in), in words; None when all agree."""
        recorded = self.recorded_digests() or {}
        now = self.content_digests()
        changed = sorted(name for name in set(recorded) | set(now) if recorded.get(name) != now.get(name))
        if not changed:
            return None
        more = f" and {len(changed) - 3} more" if len(changed) > 3 else ""
        return (
            f"{', '.join(changed[:3])}{more} differ from the content recorded when the store was finished "
            f"(chunks lost, rewritten or swapped in); run `lungforge info {self.path} --verify`"
        )


def open_volume_store(
    path: str | os.PathLike,
    mode: Literal["r", "r+"] = "r",
    require_complete: bool = True,
    *,
    lock_for_reading: bool = False,
    check_content: bool = True,
) -> VolumeStore:
    """Open and validate a volume store; SchemaError (one line) naming what is wrong.

    A complete store opened read-only is checked against its `content` record: its attributes
    and, with `check_content`, every array's chunk checksums (read from the shard indexes, a few
    bytes per chunk; CorruptStoreError when they differ). `lock_for_reading`: hold the store's
    lock shared until :meth:`VolumeStore.close`.
    """
    path = Path(path)
    read_lock = ReadLock(path) if lock_for_reading and path.exists() else None
    try:
        return _open(path, mode, require_complete, check_content, read_lock)
    except BaseException:
        if read_lock is not None:
            read_lock.release()
        raise


def _open(path: Path, mode: Literal["r", "r+"], require_complete: bool, check_content: bool, read_lock: ReadLock | None) -> VolumeStore:
    group, attrs = open_schema_group(path, mode, VOLUME_SCHEMA)
    if attrs.get("labels") != labels_attr():
        raise SchemaError(f"{path}: label set {attrs.get('labels')} differs from lungforge's {labels_attr()}")
    if require_complete and not attrs.get("complete", False):
        raise SchemaError(f"{path}: store is incomplete (an interrupted run); finish it with --resume")
    if not attrs.get("complete", False):
        return VolumeStore(path, group, mode, read_lock)
    problem = attribute_problem(path)
    if problem is not None:
        raise SchemaError(f"{path}: {problem}")
    try:
        scans = int(VolumeStore(path, group, mode).zarray("scans/uid").shape[0])
    except Exception:  # a missing array or unreadable metadata
        raise SchemaError(f"{path}: missing or unreadable array scans/uid") from None
    for name in volume_arrays(scans, attrs.get("kind") == "synthetic"):
        require_array(path, group, name)
    if mode == "r" and has_checksums(attrs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group = zarr.open_group(store=StrictChunks(LocalStore(str(path), read_only=True), path), mode="r", zarr_format=3)
    store = VolumeStore(path, group, mode, read_lock)
    _check_shapes(store, scans)
    if check_content and mode == "r" and store.checked:
        problem = store.content_problem()
        if problem is not None:
            raise CorruptStoreError(f"{path}: {problem}")
    return store


def _check_shapes(store: VolumeStore, scans: int) -> None:
    """SchemaError when a table's rows or a volume's shape or dtype break the schema."""
    for name in ("scans/uid", *(f"scans/{c}" for c in SCAN_COLUMNS)):
        shape = store.zarray(name).shape
        expected = (scans, *SCAN_COLUMNS[name.split("/")[1]].shape) if name != "scans/uid" else (scans,)
        if tuple(shape) != expected:
            raise SchemaError(f"{store.path}: {name} has shape {tuple(shape)}, expected {expected}")
    for table, columns in (("nodules", NODULE_COLUMNS), ("inserted", INSERTED_COLUMNS if store.synthetic else {})):
        rows = {store.zarray(f"{table}/{c}").shape[0] for c in columns}
        if len(rows) > 1:
            raise SchemaError(f"{store.path}: {table}/* columns have different row counts {sorted(rows)}")
    for i in range(scans):
        image, label = store.zarray(f"volumes/{i}/image"), store.zarray(f"volumes/{i}/label")
        if image.shape != label.shape or len(image.shape) != 3 or str(image.dtype) != "int16" or str(label.dtype) != "uint8":
            raise SchemaError(
                f"{store.path}: volumes/{i}: image {image.shape} {image.dtype} and label {label.shape} {label.dtype} "
                "must be equal (Z, Y, X) int16 and uint8"
            )
