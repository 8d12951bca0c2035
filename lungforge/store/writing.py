"""Writing a store: whole-shard blocks, meta columns, commit records and finalising (:class:`StoreWriter`)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.core.errors import OutputError, SchemaError
from lungforge.store.arrays import StoreArrays
from lungforge.store.content import attribute_digests, stored_attributes, stored_blocks
from lungforge.store.schema import ARRAY_ATTRS, WRITE_CONFIG, Kind, compressors, meta_dtypes, nodule_dtypes, optionalnodule_dtypes

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing the store at `path` into one line naming the store and the cause.

    Writers commit in an order that keeps a failed write resumable (prepare's commit records,
    augment's `meta/done` last), so the message can promise that a rerun continues.
    """
    try:
        yield
    except OSError as exc:
        name = str(exc.filename or "")
        inside = (
            f" {os.path.relpath(name, path)}" if name.startswith(str(path) + os.sep) else f" {name}" if name not in ("", str(path)) else ""
        )
        raise OutputError(
            f"{path}: cannot write{inside} ({exc.strerror or exc}); what is written is kept: "
            "free space or fix permissions, then rerun with --resume"
        ) from None


def replace_array(group: zarr.Group, name: str, data: np.ndarray, chunk: int, attributes: dict[str, Any] | None = None) -> None:
    """Write `data` as array `name` of `group` (replacing it), `chunk` rows per chunk, with
    `attributes` (default: the slice schema's :data:`ARRAY_ATTRS` of `name`)."""
    if name in group:
        del group[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = group.create_array(
            name,
            shape=data.shape,
            chunks=(chunk, *data.shape[1:]),
            dtype=data.dtype if data.dtype.kind != "U" else str,
            compressors=compressors(),
            config=WRITE_CONFIG,
            attributes=ARRAY_ATTRS.get(name, {}) if attributes is None else attributes,
        )
    if data.size:
        arr[...] = data


def save_record(path: Path, name: str, arrays: dict[str, np.ndarray]) -> None:
    """Atomically save the commit record `parts/<name>.npz` of the store at `path` (written to a
    temporary file, synced, then renamed): a record is there whole or not at all."""
    parts = path / "parts"
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=True, **arrays)
    tmp = parts / f".{name}.npz.tmp"
    with writing(path):
        parts.mkdir(exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, parts / f"{name}.npz")


def load_records(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """All commit records of the store at `path`, by name, sorted by name."""
    parts = path / "parts"
    out: dict[str, dict[str, np.ndarray]] = {}
    if parts.is_dir():
        for file in sorted(parts.glob("*.npz")):
            with np.load(file, allow_pickle=False) as data:
                out[file.stem] = {k: data[k] for k in data.files}
    return out


def require_written(path: Path, name: str, array: zarr.Array) -> None:
    """SchemaError when a chunk (or shard) of array `name` of the store at `path` was never written."""
    lost = [key for key, _, present in stored_blocks(path, name, array) if not present]
    if lost:
        raise SchemaError(f"{path}: {len(lost)} chunks of {name} were never written (first {lost[0]}); the store stays incomplete")


def seal(path: Path, group: zarr.Group, digests: dict[str, str], fingerprint: str, attrs: dict[str, Any]) -> None:
    """Add `attrs` to the group of the store at `path`, record its `content` (the arrays'
    `digests`, the store's `fingerprint` and the digest of every group attribute) and mark it
    complete (the caller then drops its commit records)."""
    content: dict[str, Any] = {"fingerprint": fingerprint, "arrays": digests}
    # The attributes are digested as zarr.json holds them (zarr's JSON, e.g. "NaN" for
    # nan), which is what a reader sees; `complete` flips with the record in one write.
    group.attrs.update(attrs)
    content["attributes"] = attribute_digests({**stored_attributes(path), "complete": True})
    group.attrs.update({"content": content, "complete": True})


class StoreWriter:
    """The writing side of one open store: `arrays` is the store's group, shared with its reader;
    `mode` is the mode it was opened with (every write refuses "r")."""

    def __init__(self, arrays: StoreArrays, mode: str) -> None:
        self.arrays = arrays
        self.mode = mode

    @property
    def path(self) -> Path:
        return self.arrays.path

    def _require_writable(self) -> None:
        if self.mode == "r":
            raise SchemaError(f"{self.path}: store opened read-only")

    def _writable(self, name: str) -> zarr.Array:
        # Every chunk is written, even all-fill ones, so that a missing chunk always means loss.
        return self.arrays.array(name).with_config(WRITE_CONFIG)

    def write_block(self, start: int, image: np.ndarray, label: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        """Write slices [start, start+n) of image/label (n, H, W) uint8 and their meta columns.

        `start` must be a multiple of the store's slices per shard so the writer owns whole shards;
        only the final block of a store may be shorter than a shard. Meta columns left out of
        `meta` are written as zeros, except `done`, which a writer sets last (see :meth:`write_meta`).
        """
        self.write_slices(start, image, label)
        n = image.shape[0]
        defaults = {name: np.zeros((n, *shape), dtype=dt) for name, (dt, shape) in meta_dtypes(self.arrays.kind).items() if name != "done"}
        self.write_meta(start, {**defaults, **meta})

    def write_slices(self, start: int, image: np.ndarray, label: np.ndarray) -> None:
        """Write (and compress) image/label (n, H, W) uint8 at slices [start, start+n), whole shards.

        Safe to call from several processes at once for disjoint blocks: each owns its shard
        files. Meta columns are chunked more coarsely and belong to one writer process.
        """
        self._require_writable()
        shard_slices, shape_hw, capacity = self.arrays.shard_slices, self.arrays.shape_hw, self.arrays.slices
        if start % shard_slices:
            raise ValueError(f"block start must be a multiple of {shard_slices}, got {start}")
        n = image.shape[0]
        if image.shape != label.shape or image.shape[1:] != shape_hw:
            raise ValueError(f"block shape mismatch: image {image.shape}, label {label.shape}, store {shape_hw}")
        if start + n > capacity:
            raise ValueError(f"block [{start}, {start + n}) exceeds store capacity {capacity}")
        self.arrays.forget_content()
        with writing(self.path):
            self._writable("image")[start : start + n] = image
            self._writable("label")[start : start + n] = label

    def write_meta(self, start: int, meta: dict[str, np.ndarray]) -> None:
        """Write meta columns for slices [start, start+n). `done` should be written last."""
        self._require_writable()
        self.arrays.forget_content()
        dtypes = meta_dtypes(self.arrays.kind)
        for name, values in meta.items():
            if name not in dtypes:
                raise ValueError(f"unknown meta column {name!r}; expected one of {sorted(dtypes)}")
            arr = np.asarray(values, dtype=dtypes[name][0])
            with writing(self.path):
                self._writable(f"meta/{name}")[start : start + arr.shape[0]] = arr
            self.arrays.meta_cache.pop(name, None)

    def save_part(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Atomically save a commit record `parts/<name>.npz` (:func:`save_record`)."""
        self._require_writable()
        save_record(self.path, name, arrays)

    def load_parts(self) -> dict[str, dict[str, np.ndarray]]:
        """All commit records, by name, sorted by name."""
        return load_records(self.path)

    def clear_parts(self) -> None:
        shutil.rmtree(self.path / "parts", ignore_errors=True)

    def finalize(
        self,
        n: int,
        series_uids: list[str],
        nodules: dict[str, np.ndarray],
        attrs: dict[str, Any] | None = None,
    ) -> None:
        """Shrink the store to `n` slices, write the series and nodule tables, add `attrs`, record the
        `content` digests (every array and every other attribute) and mark the store complete."""
        self._require_writable()
        arrays, group, kind = self.arrays, self.arrays.group, self.arrays.kind
        h, w = arrays.shape_hw
        columns = _nodule_columns(kind, nodules)
        with writing(self.path):
            for name in ("image", "label"):
                arrays.array(name).resize((n, h, w))
            for name, (_, shape) in meta_dtypes(kind).items():
                arrays.array(f"meta/{name}").resize((n, *shape))
            uids = np.asarray(series_uids, dtype=str)
            replace_array(group, "series/uid", uids, chunk=max(1, len(uids)))
            for name, arr in columns.items():
                replace_array(group, f"nodules/{name}", arr, chunk=max(1, arr.shape[0]))
            if arrays.checked:
                for name in arrays.array_names():
                    require_written(self.path, name, arrays.array(name))
            arrays.forget_content()  # resized and replaced arrays above
            seal(self.path, group, arrays.content_digests(), arrays.fingerprint(), attrs or {})
        arrays.meta_cache.clear()
        self.clear_parts()


def _nodule_columns(kind: Kind, nodules: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The nodule table `nodules` as the schema's dtypes and shapes, every required column, equal rows."""
    columns = {}
    for name, (dt, shape) in nodule_dtypes(kind).items():
        if name not in nodules:
            raise ValueError(f"nodule table lacks column {name!r}")
        columns[name] = np.asarray(nodules[name], dtype=dt).reshape(-1, *shape)
    for name, (dt, shape) in optionalnodule_dtypes(kind).items():
        if name in nodules:
            columns[name] = np.asarray(nodules[name], dtype=dt).reshape(-1, *shape)
    rows = {name: arr.shape[0] for name, arr in columns.items()}
    if len(set(rows.values())) > 1:
        raise ValueError(f"nodule table columns must have equal rows, got {rows}")
    return columns
