"""Open the Zarr v3 group of a lungforge store and check its schema, shared by slice and volume stores."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lungforge.core.errors import SchemaError
from lungforge.store.schema import SCHEMA, VOLUME_SCHEMA

if TYPE_CHECKING:
    import zarr

OTHER_KIND = {
    SCHEMA: (VOLUME_SCHEMA, "a store of 3-D volumes: read it with lungforge.store.open_volume_store"),
    VOLUME_SCHEMA: (SCHEMA, "a store of 2-D slices: read it with lungforge.store.open_store"),
}
"""Expected schema → (the other lungforge schema, the hint given when a store of that one is opened)."""


def open_schema_group(path: Path, mode: Literal["r", "r+"], schema: str) -> tuple[zarr.Group, dict[str, Any]]:
    """The Zarr v3 group at `path` and its attributes; SchemaError naming `path` when it is missing,
    not a Zarr v3 group, unreadable, or of another schema than `schema` (with a hint when it is the
    other kind of lungforge store)."""
    import zarr

    if not path.exists():
        raise SchemaError(f"{path}: no such store")
    if not (path / "zarr.json").is_file():
        raise SchemaError(f"{path}: not a Zarr v3 group (no zarr.json)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group = zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as exc:  # zarr raises several types for unreadable metadata
        raise SchemaError(f"{path}: unreadable Zarr group ({exc})") from None
    attrs = dict(group.attrs)
    if attrs.get("schema") != schema:
        other, hint = OTHER_KIND[schema]
        note = f" ({hint})" if attrs.get("schema") == other else ""
        raise SchemaError(f"{path}: schema is {attrs.get('schema')!r}, expected {schema!r}{note}")
    return group, attrs


def require_array(path: Path, group: zarr.Group, name: str) -> None:
    """SchemaError when array `name` of the store at `path` is missing or its metadata unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group[name]
    except KeyError:
        raise SchemaError(f"{path}: missing array {name}") from None
    except Exception as exc:  # zarr raises several types for unreadable metadata (truncated zarr.json: JSONDecodeError)
        raise SchemaError(f"{path}: unreadable metadata {name}/zarr.json ({exc})") from None
