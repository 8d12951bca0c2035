"""An open store: reading arrays and tables, content fingerprints and the stored objects."""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.core.errors import SchemaError
from lungforge.core.locks import ReadLock
from lungforge.store.chunks import CheckedArray
from lungforge.store.content import array_digest, attribute_digests, changed_attributes, stored_attributes, stored_blocks
from lungforge.store.schema import Kind, digests_attributes, has_checksums, meta_dtypes, nodule_dtypes, optionalnodule_dtypes
from lungforge.store.writing import StoreWriting

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr


class Store(StoreWriting):
    """An open lungforge slice store. Read with :attr:`image`, :attr:`label`, :meth:`meta`."""

    def __init__(self, path: Path, group: zarr.Group, mode: str, read_lock: ReadLock | None = None):
        self.path = path
        self._group = group
        self.mode = mode
        self._meta_cache: dict[str, np.ndarray] = {}
        self._digests: dict[str, str] | None = None
        self._read_lock = read_lock

    def close(self) -> None:
        """Release the shared lock taken by ``open_store(..., lock_for_reading=True)`` (idempotent)."""
        if self._read_lock is not None:
            self._read_lock.release()

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self._group.attrs)

    @property
    def kind(self) -> Kind:
        return self._group.attrs["kind"]

    @property
    def image(self) -> CheckedArray:
        """(N, H, W) uint8 windowed CT, indexable like a numpy array."""
        return self.array("image")

    @property
    def label(self) -> CheckedArray:
        """(N, H, W) uint8 label maps (ids of :mod:`lungforge.core.labels`)."""
        return self.array("label")

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @property
    def shard_slices(self) -> int:
        """Slices per shard: the unit a writer owns."""
        return int(self.image.shards[0]) if self.image.shards else 1

    @property
    def shape_hw(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[2])

    def meta(self, name: str) -> np.ndarray:
        """A whole `meta/<name>` column as numpy (cached; columns are small)."""
        if name not in self._meta_cache:
            try:
                self._meta_cache[name] = np.asarray(self.array(f"meta/{name}")[...])
            except KeyError:
                raise SchemaError(f"{self.path}: no array meta/{name}") from None
        return self._meta_cache[name]

    def has_meta(self, name: str) -> bool:
        return f"meta/{name}" in self._group

    @property
    def series_uids(self) -> list[str]:
        return [str(u) for u in self.array("series/uid")[...]]

    def nodules(self) -> dict[str, np.ndarray]:
        """The nodule table: `slice` (M,), `bbox` (M, 4) x0,y0,x1,y1 px, `diameter_mm` (M,), ..."""
        table = {}
        for name in nodule_dtypes(self.kind):
            table[name] = np.asarray(self.array(f"nodules/{name}")[...])
        for name in optionalnodule_dtypes(self.kind):
            if f"nodules/{name}" in self._group:
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
        payload = json.dumps({"schema": self.attrs.get("schema"), "arrays": self.content_digests()}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def content_digests(self) -> dict[str, str]:
        """Per array of :meth:`array_names`, 16 hex digits of sha256 over its shape, dtype and chunks'
        crc32c checksums (or, in a store without checksums, its stored bytes)."""
        if self._digests is None:
            self._digests = {name: array_digest(self.path, name, self._group[name], self.checked) for name in self.array_names()}
        return dict(self._digests)

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
        return has_checksums(self.attrs)

    def recorded_attribute_digests(self) -> dict[str, str] | None:
        """The attribute digests :meth:`finalize` recorded in `content` (None for stores finished
        before they were recorded)."""
        recorded = self.attrs.get("content")
        attributes = recorded.get("attributes") if isinstance(recorded, dict) else None
        return dict(attributes) if isinstance(attributes, dict) else None

    def attribute_problem(self) -> str | None:
        """Why this finished store's group attributes cannot be trusted, in words; None when they can.

        Reads only `zarr.json`. A store with checksums must hold its `content` record; one whose
        `integrity` promises attribute digests must hold them, and every attribute must match its
        digest. Stores from before checksums (no `integrity`) or before attribute digests (a
        `content` record without them and an `integrity` that does not promise them) have
        nothing to compare.
        """
        attrs = stored_attributes(self.path)
        content = attrs.get("content")
        if not isinstance(content, dict) or not isinstance(content.get("arrays"), dict):
            if not has_checksums(attrs):
                return None
            return (
                "has no `content` record (the digests lungforge records when it finishes a store written with checksums): "
                "it was removed or edited; make the store again"
            )
        recorded = content.get("attributes")
        if not isinstance(recorded, dict):
            if not digests_attributes(attrs):
                return None
            return (
                "its `content` record lacks the attribute digests that its `integrity` attribute promises: "
                "they were removed or edited; make the store again"
            )
        changed = changed_attributes(recorded, attribute_digests(attrs))
        if changed:
            return (
                f"attributes changed after the store was finished: {', '.join(changed)} "
                "(edited, or copied in from another store); make the store again"
            )
        return None

    def array_names(self) -> list[str]:
        """Every array of the schema present in the store: image, label, meta/*, series/uid, nodules/*."""
        names = ["image", "label", *(f"meta/{m}" for m in meta_dtypes(self.kind)), "series/uid"]
        names += [f"nodules/{m}" for m in (*nodule_dtypes(self.kind), *optionalnodule_dtypes(self.kind))]
        return [name for name in names if name in self._group]

    def array(self, name: str) -> CheckedArray:
        """A read view of the array `name` (see :meth:`array_names`)."""
        return CheckedArray(self.path, name, self._group[name])

    def stored_blocks(self, name: str) -> list[tuple[str, tuple[slice, ...], bool]]:
        """(key, region, present) of every stored object of array `name`: its shards, or its chunks
        when it has no shards. `region` is the index region the object holds, clipped to the shape."""
        return stored_blocks(self.path, name, self._group[name])
