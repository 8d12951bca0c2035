"""The zarr group of one open store, typed: its arrays, their content digests and the caches that
writes invalidate. Shared by the reading handle (:class:`lungforge.store.Store`) and its writer
(:class:`lungforge.store.writing.StoreWriter`)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, cast

import numpy as np

from lungforge.core.errors import SchemaError
from lungforge.store.content import array_digest, content_fingerprint, stored_blocks
from lungforge.store.schema import Kind, has_checksums, meta_dtypes, nodule_dtypes, optionalnodule_dtypes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr


class StoreArrays:
    """The zarr group of the store at `path` with its caches: whole meta columns (by name) and the
    content digests (dropped by every write)."""

    def __init__(self, path: Path, group: zarr.Group) -> None:
        self.path = path
        self.group = group
        self.meta_cache: dict[str, np.ndarray] = {}
        self._digests: dict[str, str] | None = None

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def kind(self) -> Kind:
        # open_store and create_store admit only "real" and "synthetic".
        return cast(Kind, self.group.attrs["kind"])

    @property
    def checked(self) -> bool:
        """True if the store was written with checksums and every chunk."""
        return has_checksums(self.attrs)

    def has(self, name: str) -> bool:
        """True if the group holds a node `name` (an array of the schema, e.g. `meta/done`)."""
        return name in self.group

    def array(self, name: str) -> zarr.Array:
        """The zarr array `name` (KeyError when absent; SchemaError when `name` is a group)."""
        node = self.group[name]
        if not isinstance(node, zarr.Array):
            raise SchemaError(f"{self.path}: {name} is a group, expected an array")
        return node

    @property
    def slices(self) -> int:
        """N, the slices the store holds (its capacity while it is written)."""
        return int(self.array("image").shape[0])

    @property
    def shard_slices(self) -> int:
        """Slices per shard: the unit a writer owns."""
        shards = self.array("image").shards
        return int(shards[0]) if shards else 1

    @property
    def shape_hw(self) -> tuple[int, int]:
        shape = self.array("image").shape
        return int(shape[1]), int(shape[2])

    def array_names(self) -> list[str]:
        """Every array of the schema present in the store: image, label, meta/*, series/uid, nodules/*."""
        names = ["image", "label", *(f"meta/{m}" for m in meta_dtypes(self.kind)), "series/uid"]
        names += [f"nodules/{m}" for m in (*nodule_dtypes(self.kind), *optionalnodule_dtypes(self.kind))]
        return [name for name in names if self.has(name)]

    def stored_blocks(self, name: str) -> list[tuple[str, tuple[slice, ...], bool]]:
        """(key, region, present) of every stored object of array `name` (see :func:`.content.stored_blocks`)."""
        return stored_blocks(self.path, name, self.array(name))

    def content_digests(self) -> dict[str, str]:
        """Per array of :meth:`array_names`, 16 hex digits of its content (cached until a write)."""
        if self._digests is None:
            self._digests = {name: array_digest(self.path, name, self.array(name), self.checked) for name in self.array_names()}
        return dict(self._digests)

    def fingerprint(self) -> str:
        """16 hex digits over the schema and :meth:`content_digests`."""
        return content_fingerprint(self.attrs.get("schema"), self.content_digests())

    def forget_content(self) -> None:
        """Drop the cached digests: the arrays are about to change."""
        self._digests = None
