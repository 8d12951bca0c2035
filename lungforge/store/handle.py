"""An open store: reading arrays and tables, content fingerprints and the stored objects; writes go
to its :class:`~lungforge.store.writing.StoreWriter`."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.core.errors import SchemaError
from lungforge.core.locks import ReadLock
from lungforge.store.arrays import StoreArrays
from lungforge.store.chunks import CheckedArray
from lungforge.store.content import attribute_problem
from lungforge.store.schema import Kind, nodule_dtypes, optionalnodule_dtypes
from lungforge.store.writing import StoreWriter

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr


class Store:
    """An open lungforge slice store. Read with :attr:`image`, :attr:`label`, :meth:`meta`; write
    (mode "r+") with :meth:`write_block`, :meth:`write_meta`, :meth:`save_part`, :meth:`finalize`."""

    def __init__(self, path: Path, group: zarr.Group, mode: str, read_lock: ReadLock | None = None):
        self.path = path
        self.mode = mode
        self._arrays = StoreArrays(path, group)
        self.writer = StoreWriter(self._arrays, mode)
        self._read_lock = read_lock

    def close(self) -> None:
        """Release the shared lock taken by ``open_store(..., lock_for_reading=True)`` (idempotent)."""
        if self._read_lock is not None:
            self._read_lock.release()

    @property
    def attrs(self) -> dict[str, Any]:
        return self._arrays.attrs

    @property
    def kind(self) -> Kind:
        return self._arrays.kind

    @property
    def image(self) -> CheckedArray:
        """(N, H, W) uint8 windowed CT, indexable like a numpy array."""
        return self.array("image")

    @property
    def label(self) -> CheckedArray:
        """(N, H, W) uint8 label maps (ids of :mod:`lungforge.core.labels`)."""
        return self.array("label")

    def __len__(self) -> int:
        return self._arrays.slices

    @property
    def shard_slices(self) -> int:
        """Slices per shard: the unit a writer owns."""
        return self._arrays.shard_slices

    @property
    def shape_hw(self) -> tuple[int, int]:
        return self._arrays.shape_hw

    def meta(self, name: str) -> np.ndarray:
        """A whole `meta/<name>` column as numpy (cached; columns are small)."""
        cache = self._arrays.meta_cache
        if name not in cache:
            try:
                cache[name] = np.asarray(self.array(f"meta/{name}")[...])
            except KeyError:
                raise SchemaError(f"{self.path}: no array meta/{name}") from None
        return cache[name]

    def has_meta(self, name: str) -> bool:
        return self._arrays.has(f"meta/{name}")

    @property
    def series_uids(self) -> list[str]:
        return [str(u) for u in self.array("series/uid")[...]]

    def nodules(self) -> dict[str, np.ndarray]:
        """The nodule table: `slice` (M,), `bbox` (M, 4) x0,y0,x1,y1 px, `diameter_mm` (M,), ..."""
        table = {}
        for name in nodule_dtypes(self.kind):
            table[name] = np.asarray(self.array(f"nodules/{name}")[...])
        for name in optionalnodule_dtypes(self.kind):
            if self._arrays.has(f"nodules/{name}"):
                table[name] = np.asarray(self.array(f"nodules/{name}")[...])
        return table

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and label of slice `index`, each (H, W) uint8."""
        return np.asarray(self.image[index]), np.asarray(self.label[index])

    def input_fingerprint(self) -> str | None:
        """Fingerprint of the real store a synthetic store was made from (None if not recorded)."""
        recorded = self.attrs.get("input")
        return recorded.get("fingerprint") if isinstance(recorded, dict) else None

    def fingerprint(self) -> str:
        """16 hex digits identifying the store's content (every array, see the module docstring).

        Equal content gives equal fingerprints; any rewritten chunk changes it. Computed once per
        open store (a reader holds the store's lock, so it cannot change meanwhile).
        """
        return self._arrays.fingerprint()

    def content_digests(self) -> dict[str, str]:
        """Per array of :meth:`array_names`, 16 hex digits of sha256 over its shape, dtype and chunks'
        crc32c checksums (or, in a store without checksums, its stored bytes)."""
        return self._arrays.content_digests()

    def recorded_digests(self) -> dict[str, str] | None:
        """The digests :meth:`finalize` recorded (None for stores finished before they were recorded)."""
        recorded = self.attrs.get("content")
        return dict(recorded["arrays"]) if isinstance(recorded, dict) and isinstance(recorded.get("arrays"), dict) else None

    def legacy_fingerprint(self) -> str:
        """The fingerprint lungforge recorded before fingerprints hashed content (schema, size,
        series, creation time, store id), used only to explain a refusal of stores made then."""
        payload = json.dumps(
            {
                "schema": self.attrs.get("schema"),
                "n": len(self),
                "hw": self.shape_hw,
                "series": self.series_uids,
                "created": self.attrs.get("created"),
                "store_id": self.attrs.get("store_id"),
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    # -- integrity ---------------------------------------------------------------------------
    @property
    def checked(self) -> bool:
        """True if the store was written with checksums and every chunk (see module docstring)."""
        return self._arrays.checked

    def recorded_attribute_digests(self) -> dict[str, str] | None:
        """The attribute digests :meth:`finalize` recorded in `content` (None for stores finished
        before they were recorded)."""
        recorded = self.attrs.get("content")
        attributes = recorded.get("attributes") if isinstance(recorded, dict) else None
        return dict(attributes) if isinstance(attributes, dict) else None

    def attribute_problem(self) -> str | None:
        """Why this finished store's group attributes cannot be trusted, in words; None when they can
        (:func:`lungforge.store.content.attribute_problem`)."""
        return attribute_problem(self.path)

    def array_names(self) -> list[str]:
        """Every array of the schema present in the store: image, label, meta/*, series/uid, nodules/*."""
        return self._arrays.array_names()

    def array(self, name: str) -> CheckedArray:
        """A read view of the array `name` (see :meth:`array_names`)."""
        return CheckedArray(self.path, name, self._arrays.array(name))

    def stored_blocks(self, name: str) -> list[tuple[str, tuple[slice, ...], bool]]:
        """(key, region, present) of every stored object of array `name`: its shards, or its chunks
        when it has no shards. `region` is the index region the object holds, clipped to the shape."""
        return self._arrays.stored_blocks(name)

    # -- writing (mode "r+"), by the store's writer ------------------------------------------
    def write_block(self, start: int, image: np.ndarray, label: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        """Write slices [start, start+n) and their meta columns (:meth:`StoreWriter.write_block`)."""
        self.writer.write_block(start, image, label, meta)

    def write_slices(self, start: int, image: np.ndarray, label: np.ndarray) -> None:
        """Write image/label (n, H, W) uint8 at slices [start, start+n) (:meth:`StoreWriter.write_slices`)."""
        self.writer.write_slices(start, image, label)

    def write_meta(self, start: int, meta: dict[str, np.ndarray]) -> None:
        """Write meta columns for slices [start, start+n); `done` last (:meth:`StoreWriter.write_meta`)."""
        self.writer.write_meta(start, meta)

    def save_part(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Atomically save the commit record `parts/<name>.npz` (:meth:`StoreWriter.save_part`)."""
        self.writer.save_part(name, arrays)

    def load_parts(self) -> dict[str, dict[str, np.ndarray]]:
        """All commit records, by name, sorted by name."""
        return self.writer.load_parts()

    def clear_parts(self) -> None:
        self.writer.clear_parts()

    def finalize(self, n: int, series_uids: list[str], nodules: dict[str, np.ndarray], attrs: dict[str, Any] | None = None) -> None:
        """Shrink to `n` slices, write the tables, record the digests, mark complete (:meth:`StoreWriter.finalize`)."""
        self.writer.finalize(n, series_uids, nodules, attrs)
