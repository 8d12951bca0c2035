"""Small file operations shared by writers: atomic replacement, content hashes, and failed writes named."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lungforge.errors import OutputError


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



@contextmanager
def named_write(path: Path, advice: str) -> Iterator[None]:
    """An OSError inside (full disk, file size limit, read-only folder) becomes one OutputError
    naming `path`, the cause and `advice` (what is kept, how to go on): the error of a failed
    `write()` carries no file name, so alone it says only "File too large"."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); {advice}") from None
