"""Lock files that keep a lungforge writer from racing another writer or a reader of the same store.

`filelock`'s FileLock is an OS lock (flock on POSIX): the kernel drops it when its holder dies,
so a lock file left behind by a killed run is never mistaken for a live writer (stale-lock safe).
A store's lock file sits *beside* it (`synth.zarr.lock` for `synth.zarr`), because an
`--overwrite` deletes the store directory itself while the lock is held. The lock guards the
store's resolved path, so a symlink alias of a store shares its lock. Lock files stay after
release (removing them would race with a waiting process); they are empty and harmless.

Writers (`prepare`, `augment --out`) hold the lock exclusively (:func:`hold_lock`); readers
(`augment --data`, `bench`, `train`) hold it shared (:class:`ReadLock`, flock LOCK_SH on the same
file), so a store being read is never replaced or rewritten, and a store being written is never
read half-made. Neither side waits: the second comer gets a one-line LockError.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from lungforge.core.errors import LockError


def lock_path(path: Path) -> Path:
    """The lock file guarding `path`: `<resolved path>.lock` in the resolved path's directory."""
    path = Path(path).resolve()
    return path.with_name(path.name + ".lock")


def _readers_only(lock: Path) -> bool:
    """True when the holders of `lock` are readers (a shared lock can still be taken)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@contextmanager
def hold_lock(path: Path, what: str, timeout_s: float = 0.0, lock_file: Path | None = None) -> Iterator[Path]:
    """Hold the lock of `path` exclusively for the block; LockError if another process holds it
    (writing or reading) after `timeout_s`.

    `what` names the guarded thing in the error ("store", "weights registry", ...); `lock_file`
    defaults to :func:`lock_path` of `path`.
    """
    lock = lock_file if lock_file is not None else lock_path(path)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        file_lock = FileLock(lock, timeout=timeout_s)
        file_lock.acquire()
    except Timeout:
        waited = f" after waiting {timeout_s:g} s" if timeout_s > 0 else ""
        doing = "reading" if _readers_only(lock) else "writing"
        raise LockError(
            f"{path}: another lungforge process is {doing} this {what} (lock {lock} is held{waited}); wait for it to finish"
        ) from None
    except OSError as exc:
        raise LockError(f"{lock}: cannot create the lock file for {path} ({exc.strerror or exc})") from None
    try:
        yield lock
    finally:
        file_lock.release()


class ReadLock:
    """A shared lock on the store at `path`, held from construction until :meth:`release` (or exit).

    Raises LockError when a writer holds the store. A store in a folder this process cannot
    write, whose lock file does not exist yet, is read without a lock: no lungforge run of this
    user can replace it.
    """

    def __init__(self, path: Path, what: str = "store") -> None:
        self.path = Path(path)
        self.lock = lock_path(self.path)
        self._fd: int | None = None
        try:
            fd = os.open(self.lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EROFS, errno.EPERM):
                raise LockError(f"{self.lock}: cannot create the lock file for {path} ({exc.strerror or exc})") from None
            try:
                fd = os.open(self.lock, os.O_RDONLY)
            except OSError:
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise LockError(
                f"{path}: another lungforge process is writing this {what} (lock {self.lock} is held); wait for it to finish"
            ) from None
        self._fd = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the shared lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        self.release()
