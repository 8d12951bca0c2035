"""Creating an empty store, built beside its path and renamed into place."""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lungforge.core.errors import OutputError, SchemaError
from lungforge.core.labels import labels_attr
from lungforge.store.handle import Store
from lungforge.store.schema import (
    ARRAY_ATTRS,
    INTEGRITY,
    MAX_SLICES,
    SCHEMA,
    SHARD,
    STORE_SCHEMAS,
    WINDOW_HU,
    WRITE_CONFIG,
    Kind,
    compressors,
    lungforge_version,
    meta_dtypes,
)
from lungforge.store.writing import writing

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr


def schema_of(path: Path) -> str | None:
    """The `schema` attribute of the Zarr group at `path` (None when there is no readable group)."""
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return None
    try:
        schema = json.loads(meta.read_text()).get("attributes", {}).get("schema")
    except (OSError, ValueError, AttributeError):
        return None
    return schema if isinstance(schema, str) else None


def is_store(path: Path) -> bool:
    """True if `path` holds a Zarr group with the lungforge slice-store schema attribute."""
    return schema_of(path) == SCHEMA


def new_store_attributes(schema: str, kind: str, params: dict[str, Any], extra_attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The attributes every new store starts with (slices or volumes): schema, kind, window,
    labels, creation time, a fresh store id, the version, the command's `params`, incomplete,
    the integrity scheme; then `extra_attrs` (e.g. a volume store's spacing)."""
    attrs = {
        "schema": schema,
        "kind": kind,
        "window": list(WINDOW_HU),
        "labels": labels_attr(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "store_id": uuid.uuid4().hex,
        "lungforge_version": lungforge_version(),
        "params": params,
        "complete": False,
        "integrity": INTEGRITY,
        **(extra_attrs or {}),
    }
    return attrs


def build_into_place(path: Path, overwrite: bool, build: Callable[[Path], None]) -> None:
    """Make a new store at `path` by calling `build(folder)` on a folder beside it and renaming
    that folder into place.

    Refuses to touch an existing path unless `overwrite`, and even then only replaces a path
    that is a lungforge store of any kind (never an unrelated directory). Callers hold the
    store's lock (:func:`lungforge.core.locks.hold_lock`), which a reader of the store holds
    shared, so a store being read is never replaced.
    """
    if path.exists():
        if not overwrite:
            raise SchemaError(f"{path}: already exists; pass --overwrite to replace it or --resume to continue it")
        if schema_of(path) not in STORE_SCHEMAS and not (path.is_dir() and not any(path.iterdir())):
            raise SchemaError(f"{path}: exists and is not a lungforge store; refusing to overwrite it")
    # Built beside the target and renamed into place, so a creation cut short (kill -9, disk
    # full) never leaves a half-made store at `path`. Writers hold the store's lock, so a
    # leftover build folder belongs to a dead run.
    for stale in path.parent.glob(f".{path.name}.creating-*"):
        shutil.rmtree(stale, ignore_errors=True)
    building = path.parent / f".{path.name}.creating-{os.getpid()}"
    try:
        with writing(path), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build(building)
            if path.exists():
                replaced = path.parent / f".{path.name}.replaced-{os.getpid()}"
                os.rename(path, replaced)
                os.rename(building, path)
                shutil.rmtree(replaced)
            else:
                os.rename(building, path)
    finally:
        shutil.rmtree(building, ignore_errors=True)


def create_store(
    path: str | os.PathLike,
    *,
    kind: Kind,
    height: int,
    width: int,
    capacity: int,
    params: dict[str, Any],
    extra_attrs: dict[str, Any] | None = None,
    overwrite: bool = False,
    shard_slices: int = SHARD,
) -> Store:
    """Create an empty store able to hold `capacity` slices of (height, width) pixels.

    `shard_slices` (default 64) is the number of slices per shard and per meta chunk; smaller
    values exist for tests. The store is built beside `path` and renamed into place
    (:func:`build_into_place`, which says what an existing `path` may be).
    """
    path = Path(path)
    if not 0 <= capacity <= MAX_SLICES:
        raise OutputError(f"{path}: a store holds at most {MAX_SLICES:,} slices, asked for {capacity:,}")
    build_into_place(path, overwrite, lambda folder: _build_empty(folder, kind, height, width, capacity, params, extra_attrs, shard_slices))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    return Store(path, group, "r+")


def _build_empty(
    path: Path,
    kind: Kind,
    height: int,
    width: int,
    capacity: int,
    params: dict[str, Any],
    extra_attrs: dict[str, Any] | None,
    shard_slices: int,
) -> None:
    group = zarr.open_group(
        str(path),
        mode="w",
        zarr_format=3,
        attributes=new_store_attributes(SCHEMA, kind, params, extra_attrs),
    )
    for name in ("image", "label"):
        group.create_array(
            name,
            shape=(max(capacity, 1), height, width),
            chunks=(1, height, width),
            shards=(shard_slices, height, width),
            dtype="uint8",
            fill_value=0,
            compressors=compressors(),
            config=WRITE_CONFIG,
            attributes=ARRAY_ATTRS[name],
        )
    for name, (dt, shape) in meta_dtypes(kind).items():
        group.create_array(
            f"meta/{name}",
            shape=(max(capacity, 1), *shape),
            chunks=(shard_slices, *shape),
            dtype=dt,
            fill_value=0,
            compressors=compressors(),
            config=WRITE_CONFIG,
            attributes=ARRAY_ATTRS[f"meta/{name}"],
        )
