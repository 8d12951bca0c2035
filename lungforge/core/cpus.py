"""How many worker processes a command runs: at most one per CPU this process may use."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def capped_workers(asked: int) -> int:
    """`asked` worker processes, capped at one per available CPU (more would only wait)."""
    return min(asked, available_cpus())
