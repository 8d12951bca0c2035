"""Opening a store and checking it follows the schema."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Literal

import numpy as np

from lungforge.core.errors import SchemaError
from lungforge.core.labels import labels_attr
from lungforge.core.locks import ReadLock
from lungforge.store.chunks import StrictChunks
from lungforge.store.handle import Store
from lungforge.store.schema import SCHEMA, has_checksums, meta_dtypes, nodule_dtypes
from lungforge.store.zarr_group import open_schema_group, require_array

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr
    from zarr.storage import LocalStore


def open_store(
    path: str | os.PathLike, mode: Literal["r", "r+"] = "r", require_complete: bool = True, *, lock_for_reading: bool = False
) -> Store:
    """Open and validate a lungforge store; raise :class:`SchemaError` naming what is wrong.

    `lock_for_reading`: take the store's lock shared before opening and hold it until
    :meth:`Store.close` (or the process ends), so that no lungforge writer replaces or rewrites
    the store while it is read (LockError now if one is writing it).
    """
    path = Path(path)
    read_lock = ReadLock(path) if lock_for_reading and path.exists() else None
    try:
        return _open_store(path, mode, require_complete, read_lock)
    except BaseException:
        if read_lock is not None:
            read_lock.release()
        raise


def _open_store(path: Path, mode: Literal["r", "r+"], require_complete: bool, read_lock: ReadLock | None) -> Store:
    group, attrs = open_schema_group(path, mode, SCHEMA)
    kind = attrs.get("kind")
    if kind not in ("real", "synthetic"):
        raise SchemaError(f"{path}: kind is {kind!r}, expected 'real' or 'synthetic'")
    if attrs.get("labels") != labels_attr():
        raise SchemaError(f"{path}: label set {attrs.get('labels')} differs from lungforge's {labels_attr()}")
    if require_complete and not attrs.get("complete", False):
        raise SchemaError(f"{path}: store is incomplete (an interrupted run); finish it with --resume")
    required = ["image", "label"] + [f"meta/{m}" for m in meta_dtypes(kind)]
    if require_complete:
        required += ["series/uid"] + [f"nodules/{m}" for m in nodule_dtypes(kind)]
    for name in required:
        require_array(path, group, name)
    if attrs.get("complete"):
        problem = Store(path, group, mode).attribute_problem()
        if problem is not None:
            raise SchemaError(f"{path}: {problem}")
    if mode == "r" and attrs.get("complete") and has_checksums(attrs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            strict = StrictChunks(LocalStore(str(path), read_only=True), path)
            group = zarr.open_group(store=strict, mode="r", zarr_format=3)
    store = Store(path, group, mode, read_lock)
    n = len(store)
    if store.label.shape != store.image.shape or store.image.dtype != np.uint8:
        raise SchemaError(
            f"{path}: image {store.image.shape} {store.image.dtype} and label {store.label.shape} must be equal (N, H, W) uint8"
        )
    for m in meta_dtypes(kind):
        rows = store.array(f"meta/{m}").shape[0]
        if rows != n:
            raise SchemaError(f"{path}: meta/{m} has {rows} rows, expected {n}")
    return store
