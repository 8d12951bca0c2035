"""Lock files that keep two lungforge processes from writing one store or registry at once.

`filelock`'s FileLock is an OS lock (flock on POSIX): the kernel drops it when its holder dies,
so a lock file left behind by a killed run is never mistaken for a live writer (stale-lock safe).
A store's lock file sits *beside* it (`synth.zarr.lock` for `synth.zarr`), because an
`--overwrite` deletes the store directory itself while the lock is held. Lock files stay after
release (removing them would race with a waiting process); they are empty and harmless.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from lungforge.errors import LockError


def lock_path(path: Path) -> Path:
    """The lock file guarding `path`: `<path>.lock` in the same directory."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextmanager
def hold_lock(path: Path, what: str, timeout_s: float = 0.0, lock_file: Path | None = None) -> Iterator[Path]:
    """Hold the lock of `path` for the block; LockError if another process holds it after `timeout_s`.

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
        raise LockError(f"{path}: another lungforge process is writing this {what} (lock {lock} is held{waited}); wait for it to finish") from None
    except OSError as exc:
        raise LockError(f"{lock}: cannot create the lock file for {path} ({exc.strerror or exc})") from None
    try:
        yield lock
    finally:
        file_lock.release()
