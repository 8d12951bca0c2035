"""`prepare --workers 2` killed with SIGKILL leaves no process behind (issue 13, item 12)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process tree from /proc")


def _parents() -> dict[int, int]:
    """pid -> parent pid of every live (not zombie) process."""
    out = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if entry.name.isdigit() and state != "Z":
            out[int(entry.name)] = int(ppid)
    return out


def _descendants(pid: int) -> set[int]:
    parents = _parents()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _wait_for(condition, timeout_s: float) -> bool:
    """Poll `condition()` until it holds or `timeout_s` passes (processes give no event to wait on)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def test_workers_exit_when_prepare_is_killed(phantom_dir: Path, tmp_path: Path) -> None:
    luna = phantom_dir
    proc = subprocess.Popen(
        [sys.executable, "-m", "lungforge", "prepare", str(luna), "--out", str(tmp_path / "real.zarr"), "--workers", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # forkserver + 2 workers below the prepare process
        assert _wait_for(lambda: len(_descendants(proc.pid)) >= 3, 60), "the worker pool never started"
        children = _descendants(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        alive = lambda: children & set(_parents())  # noqa: E731
        assert _wait_for(lambda: not alive(), 20), f"processes {sorted(alive())} outlived their killed parent"
    finally:
        for pid in _descendants(proc.pid) | (children if "children" in locals() else set()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
