"""Small file operations shared by writers: atomic replacement and content hashes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in `chunk_bytes` pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file beside it and `os.replace`."""
    with temp_beside(path) as tmp:
        tmp.write_bytes(data)
        os.replace(tmp, path)


@contextmanager
def temp_beside(path: Path) -> Iterator[Path]:
    """A temporary file in the directory of `path` (so `os.replace` is atomic), removed unless renamed."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    os.chmod(tmp, 0o644)
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)

