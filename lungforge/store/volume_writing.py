"""Writing a volume store: creating it, one scan's volumes at a time, commit records, finishing.

A scan's `volumes/<i>` group is removed and written anew by :meth:`VolumeWriter.write_scan`, and
its commit record (`parts/`) is saved only after both arrays are whole, so a run killed at any
moment leaves each scan either recorded and complete or unrecorded (redone on resume).
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.core.errors import SchemaError
from lungforge.store.create import build_into_place, new_store_attributes
from lungforge.store.schema import VOLUME_SCHEMA, WRITE_CONFIG, compressors
from lungforge.store.volume_schema import (
    CHUNK_VOXELS,
    INSERTED_COLUMNS,
    NODULE_COLUMNS,
    SCAN_COLUMNS,
    SLAB_SLICES,
    VOLUME_ARRAY_ATTRS,
    VOLUME_DTYPES,
)
from lungforge.store.volumes import VolumeStore, open_volume_store
from lungforge.store.writing import load_records, replace_array, require_written, save_record, seal, writing

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr


def create_volume_store(
    path: str | os.PathLike,
    *,
    spacing_mm: float,
    params: dict[str, Any],
    extra_attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> VolumeWriter:
    """Create an empty volume store of volumes at `spacing_mm` (isotropic), built beside `path`
    and renamed into place (:func:`lungforge.store.create.build_into_place`). Callers hold the
    store's lock."""
    path = Path(path)

    def build(folder: Path) -> None:
        zarr.open_group(
            str(folder),
            mode="w",
            zarr_format=3,
            attributes=new_store_attributes(
                VOLUME_SCHEMA, "real", params, extra_attrs={"spacing_mm": float(spacing_mm), **(extra_attrs or {})}
            ),
        )

    build_into_place(path, overwrite, build)
    return resume_volume_store(path)


def resume_volume_store(path: str | os.PathLike) -> VolumeWriter:
    """The writer of the (complete or interrupted) volume store at `path`."""
    return VolumeWriter(open_volume_store(path, mode="r+", require_complete=False))


class VolumeWriter:
    """The writing side of one volume store (opened "r+"); `store` reads what is written."""

    def __init__(self, store: VolumeStore) -> None:
        if store.mode != "r+":
            raise SchemaError(f"{store.path}: store opened read-only")
        self.store = store
        self.path = store.path

    @property
    def attrs(self) -> dict[str, Any]:
        return self.store.attrs

    def records(self) -> dict[str, dict[str, np.ndarray]]:
        """The commit records saved so far, by name, sorted by name."""
        return load_records(self.path)

    def save_record(self, name: str, record: dict[str, np.ndarray]) -> None:
        """Atomically save the commit record `parts/<name>.npz`."""
        save_record(self.path, name, record)

    def drop_volumes_from(self, first: int) -> None:
        """Remove `volumes/<i>` for every i ≥ `first`: scans written without a commit record."""
        folder = self.path / "volumes"
        if not folder.is_dir():
            return
        with writing(self.path):
            for entry in folder.iterdir():
                if entry.is_dir() and entry.name.isdigit() and int(entry.name) >= first:
                    shutil.rmtree(entry)

    def write_scan(self, i: int, image: np.ndarray, label: np.ndarray) -> None:
        """Write scan `i`'s HU (Z, Y, X) int16 and labels (Z, Y, X) uint8 as `volumes/<i>/image|label`
        (replacing a partial group left by an interrupted run), every chunk written."""
        if image.shape != label.shape or image.ndim != 3:
            raise ValueError(f"image {image.shape} and label {label.shape} must be equal (Z, Y, X) shapes")
        z, y, x = image.shape
        shard = (SLAB_SLICES, _whole_chunks(y), _whole_chunks(x))
        shutil.rmtree(self.path / "volumes" / str(i), ignore_errors=True)
        with writing(self.path), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, data in (("image", image), ("label", label)):
                array = self.store.group.create_array(
                    f"volumes/{i}/{name}",
                    shape=(z, y, x),
                    chunks=(CHUNK_VOXELS,) * 3,
                    shards=shard,
                    dtype=VOLUME_DTYPES[name],
                    fill_value=0,
                    compressors=compressors(),
                    config=WRITE_CONFIG,
                    attributes=VOLUME_ARRAY_ATTRS[name],
                )
                array[...] = np.asarray(data, dtype=VOLUME_DTYPES[name])
                require_written(self.path, f"volumes/{i}/{name}", array)

    def finalize(
        self,
        uids: list[str],
        scans: dict[str, np.ndarray],
        nodules: dict[str, np.ndarray],
        attrs: dict[str, Any],
        inserted: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Write the scan table (`uids` and the `scans` columns, one row per written volume), the
        nodule table and, for a synthetic store, the `inserted` table; add `attrs`, record the
        content digests and mark the store complete."""
        group = self.store.group
        tables = {"scans/uid": np.asarray(uids, dtype=str)}
        tables |= {f"scans/{name}": np.asarray(scans[name], dtype=c.dtype).reshape(-1, *c.shape) for name, c in SCAN_COLUMNS.items()}
        tables |= {f"nodules/{name}": np.asarray(nodules[name], dtype=c.dtype).reshape(-1, *c.shape) for name, c in NODULE_COLUMNS.items()}
        if (inserted is not None) != self.store.synthetic:
            raise ValueError(f"the inserted table belongs to synthetic stores alone (this store's kind is {self.attrs.get('kind')!r})")
        if inserted is not None:
            tables |= {
                f"inserted/{name}": np.asarray(inserted[name], dtype=c.dtype).reshape(-1, *c.shape) for name, c in INSERTED_COLUMNS.items()
            }
        for prefix in ("nodules/", "inserted/"):
            rows = {name: table.shape[0] for name, table in tables.items() if name.startswith(prefix)}
            if len(set(rows.values())) > 1:
                raise ValueError(f"{prefix[:-1]} table columns must have equal rows, got {rows}")
        with writing(self.path):
            for name, table in tables.items():
                replace_array(group, name, table, chunk=max(1, table.shape[0]), attributes=VOLUME_ARRAY_ATTRS[name])
            reader = VolumeStore(self.path, group, "r+")
            for name in reader.array_names():
                require_written(self.path, name, reader.zarray(name))
            seal(self.path, group, reader.content_digests(), reader.fingerprint(), attrs)
        shutil.rmtree(self.path / "parts", ignore_errors=True)


def _whole_chunks(n: int) -> int:
    """`n` voxels rounded up to whole chunks."""
    return max(1, math.ceil(n / CHUNK_VOXELS)) * CHUNK_VOXELS
