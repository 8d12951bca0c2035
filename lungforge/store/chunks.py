"""Reads that refuse damage: a missing or checksum-failing chunk raises CorruptStoreError."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Any

from lungforge.core.errors import CorruptStoreError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr
    from zarr.abc.store import ByteRequest
    from zarr.core.buffer import Buffer, BufferPrototype
    from zarr.core.sync import sync as _zarr_sync
    from zarr.storage import LocalStore, WrapperStore


def _is_chunk_key(key: str) -> bool:
    """True for a chunk key (`image/c/0/0/0`, `meta/done/c/3`), False for metadata (`zarr.json`)."""
    return "/c/" in f"/{key}" and not key.endswith("zarr.json")


class StrictChunks(WrapperStore[LocalStore]):
    """A view of a complete store's files in which a missing chunk is an error, not the fill value."""

    def __init__(self, store: LocalStore, root: Path) -> None:
        super().__init__(store)
        self._root = root

    def _with_store(self, store: LocalStore) -> StrictChunks:
        return type(self)(store, self._root)

    def _missing(self, key: str) -> CorruptStoreError:
        return CorruptStoreError(f"{self._root}: chunk {key} is missing (deleted or lost); run `lungforge info {self._root} --verify`")

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        value = await self._store.get(key, prototype, byte_range)
        if value is None and _is_chunk_key(key):
            raise self._missing(key)
        return value

    async def get_partial_values(self, prototype: BufferPrototype, key_ranges: Any) -> list[Buffer | None]:
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


def checked_read(path: Path, name: str, read: Any, selection: Any) -> Any:
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
        f"{p.start or 0}:{'' if p.stop is None else p.stop}" if isinstance(p, slice) else "..." if p is Ellipsis else str(p) for p in parts
    )


class CheckedArray:
    """A read view of one store array: indexing (``a[i]``, ``a.oindex[...]``) as zarr's, but a
    damaged chunk raises :class:`CorruptStoreError`; other attributes are the zarr array's."""

    def __init__(self, path: Path, name: str, array: zarr.Array) -> None:
        self._path, self._name, self._array = path, name, array

    def __getitem__(self, selection: Any) -> Any:
        return checked_read(self._path, self._name, self._array.__getitem__, selection)

    @property
    def oindex(self) -> _CheckedOIndex:
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
        return checked_read(p._path, p._name, p._array.oindex.__getitem__, selection)
