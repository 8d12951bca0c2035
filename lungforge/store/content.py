"""Content digests of store arrays, read from chunk checksums, and of group attributes, from their
canonical JSON (see :mod:`lungforge.store`)."""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lungforge.core.errors import CorruptStoreError, SchemaError
from lungforge.store.schema import digests_attributes, has_checksums

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import zarr

MISSING_CHUNK = 2**64 - 1
"""Offset and length of an absent inner chunk in a shard index."""


def tail_bytes(path: Path, n: int) -> bytes:
    """The last `n` bytes of file `path`."""
    with open(path, "rb", buffering=0) as fh:
        fh.seek(-n, os.SEEK_END)
        return fh.read(n)


def shard_checksums(path: Path, key: str, arr: zarr.Array) -> bytes:
    """The crc32c of each inner chunk of the shard file `path` (`key`) that lies inside the array,
    in chunk order (b"none" for an absent one), read from the shard index at the file's end.

    Inner chunks past the array's end (left from before a store was shrunk) are not content.
    """
    chunks, shape, shards = tuple(arr.chunks), tuple(arr.shape), arr.shards
    if shards is None:
        raise ValueError(f"{key}: its array has no shards")
    per_shard = tuple(s // c for s, c in zip(shards, chunks))
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
            out += b"none" if offset == MISSING_CHUNK else os.pread(fd, 4, offset + nbytes - 4)
    finally:
        os.close(fd)
    return bytes(out)


def stored_blocks(path: Path, name: str, arr: zarr.Array) -> list[tuple[str, tuple[slice, ...], bool]]:
    """(key, region, present) of every stored object of array `name` of the store at `path`: its
    shards, or its chunks when it has no shards. `region` is the index region the object holds,
    clipped to the shape."""
    grid = arr.shards or arr.chunks
    counts = [-(-size // step) for size, step in zip(arr.shape, grid)]
    out = []
    for coords in np.ndindex(*counts):
        key = f"{name}/{arr.metadata.encode_chunk_key(coords)}"
        region = tuple(slice(c * g, min((c + 1) * g, size)) for c, g, size in zip(coords, grid, arr.shape))
        out.append((key, region, (path / key).is_file()))
    return out


def array_digest(path: Path, name: str, arr: zarr.Array, checked: bool) -> str:
    """16 hex digits of sha256 over the shape, dtype and chunk crc32c checksums of array `name`
    (`checked`: the store has checksums; otherwise its stored bytes are hashed)."""
    digest = hashlib.sha256(json.dumps({"shape": list(arr.shape), "dtype": str(arr.dtype)}).encode())
    for key, _, present in stored_blocks(path, name, arr):
        digest.update(key.encode())
        try:
            if not present:
                digest.update(b"missing")
            elif not checked:
                digest.update(hashlib.sha256((path / key).read_bytes()).digest())
            elif arr.shards:
                digest.update(shard_checksums(path / key, key, arr))
            else:
                digest.update(tail_bytes(path / key, 4))
        except (OSError, ValueError):
            raise CorruptStoreError(
                f"{path}: {key} is damaged (its chunk checksums cannot be read); run `lungforge info {path} --verify`"
            ) from None
    return digest.hexdigest()[:16]


def stored_attributes(path: Path) -> dict[str, Any]:
    """The group attributes of the store at `path` as its `zarr.json` holds them (parsed JSON, so
    values read the same after a round trip: lists, str keys, "NaN" where zarr wrote it)."""
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise SchemaError(f"{path}: unreadable zarr.json ({exc})") from None
    if not isinstance(attrs, dict):
        raise SchemaError(f"{path}: zarr.json attributes are {type(attrs).__name__}, expected an object")
    return attrs


def attribute_digests(attrs: dict[str, Any]) -> dict[str, str]:
    """Per group attribute except `content` (which holds these digests), 16 hex digits of sha256
    over its canonical JSON (sorted keys, no spaces)."""
    return {
        name: hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()[:16]
        for name, value in attrs.items()
        if name != "content"
    }


def changed_attributes(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """The attributes whose digests differ between `recorded` and `now`, sorted, each with how:
    `name` (changed), `name (added)`, `name (removed)`."""
    out = []
    for name in sorted(set(recorded) | set(now)):
        if name not in now:
            out.append(f"{name} (removed)")
        elif name not in recorded:
            out.append(f"{name} (added)")
        elif recorded[name] != now[name]:
            out.append(name)
    return out


def content_fingerprint(schema: Any, digests: dict[str, str]) -> str:
    """16 hex digits over a store's schema name and its per-array content `digests`."""
    payload = json.dumps({"schema": schema, "arrays": digests}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def attribute_problem(path: Path) -> str | None:
    """Why the group attributes of the finished store at `path` cannot be trusted, in words; None when they can.

    Reads only `zarr.json`. A store with checksums must hold its `content` record; one whose
    `integrity` promises attribute digests must hold them, and every attribute must match its
    digest. Stores from before checksums (no `integrity`) or before attribute digests (a
    `content` record without them and an `integrity` that does not promise them) have
    nothing to compare.
    """
    attrs = stored_attributes(path)
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
