"""Small file operations shared by writers: atomic replacement, content hashes, and failed writes named."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

from lungforge.core.errors import OutputError

Writer = Callable[[Path], None]
"""Writes one file's content to the path it is given (a temporary file beside its target)."""


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


def replace_together(writes: Mapping[Path, Writer], errors: tuple[type[BaseException], ...] = (OSError,)) -> None:
    """Write every target of `writes` to a temporary file beside it, then rename them all in order.

    A write that fails with one of `errors` (a full disk: ENOSPC, EFBIG) leaves every target as it
    was and raises OutputError naming the file; the temporary files are removed.
    """
    staged: list[tuple[Path, Path]] = []
    with ExitStack() as stack:
        for path, write in writes.items():
            try:
                tmp = stack.enter_context(temp_beside(path))
                write(tmp)
            except errors as exc:
                kept = ", ".join(p.name for p in writes)
                raise OutputError(f"cannot write {path}: {write_failure(exc)}; {kept} left as they were") from None
            staged.append((tmp, path))
        for tmp, path in staged:
            os.replace(tmp, path)


def write_failure(exc: BaseException) -> str:
    """One line saying why a write failed: the OS's reason (e.g. No space left on device), else
    the first line of the library's message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


@contextmanager
def named_write(path: Path, advice: str) -> Iterator[None]:
    """An OSError inside (full disk, file size limit, read-only folder) becomes one OutputError
    naming `path`, the cause and `advice` (what is kept, how to go on): the error of a failed
    `write()` carries no file name, so alone it says only "File too large"."""
    try:
        yield
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); {advice}") from None
