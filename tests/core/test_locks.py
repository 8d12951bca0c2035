"""Store locks: writers exclusive, readers shared, on the resolved path (issue 19, items 1 and 6)."""

from __future__ import annotations

import errno
import os

import pytest

from lungforge.core.errors import LockError
from lungforge.core.locks import ReadLock, hold_lock, lock_path


def test_a_symlink_alias_shares_the_lock_of_its_target(tmp_path):
    target = tmp_path / "race.zarr"
    target.mkdir()
    alias = tmp_path / "alias.zarr"
    alias.symlink_to(target)
    assert lock_path(alias) == lock_path(target) == tmp_path.resolve() / "race.zarr.lock"
    with (
        hold_lock(target, "store"),
        pytest.raises(LockError, match=r"alias\.zarr: another lungforge process is writing this store"),
        hold_lock(alias, "store"),
    ):
        pass


def test_an_alias_of_a_store_not_made_yet_is_locked_as_its_target(tmp_path):
    alias = tmp_path / "alias.zarr"
    alias.symlink_to(tmp_path / "race.zarr")  # dangling until the first run creates race.zarr
    with hold_lock(tmp_path / "race.zarr", "store"), pytest.raises(LockError), hold_lock(alias, "store"):
        pass


def test_a_reader_keeps_writers_out_and_says_it_is_reading(tmp_path):
    store = tmp_path / "real.zarr"
    store.mkdir()
    reader = ReadLock(store)
    other_reader = ReadLock(store)  # readers share
    assert reader.held and other_reader.held
    with pytest.raises(LockError, match="another lungforge process is reading this store"), hold_lock(store, "store"):
        pass
    reader.release()
    other_reader.release()
    with hold_lock(store, "store"):  # free again once every reader let go
        pass


def test_a_writer_keeps_readers_out(tmp_path):
    store = tmp_path / "real.zarr"
    store.mkdir()
    with hold_lock(store, "store"), pytest.raises(LockError, match=r"real\.zarr: another lungforge process is writing this store") as info:
        ReadLock(store)
    assert "\n" not in str(info.value)
    ReadLock(store).release()


def test_a_store_in_a_read_only_folder_is_read_without_a_lock(tmp_path, monkeypatch):
    """No lock file can be made there, so there is nothing to share; reading must still work."""
    import lungforge.core.locks as locks

    (tmp_path / "real.zarr").mkdir()
    real_open = os.open

    def read_only_open(path, flags, *args):
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(locks.os, "open", read_only_open)
    lock = ReadLock(tmp_path / "real.zarr")
    assert not lock.held and not lock_path(tmp_path / "real.zarr").exists()
