"""The worker processes of `lungforge prepare`: one scan per task, results in scan order."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

from lungforge.core.errors import ScanError
from lungforge.luna16 import scans as luna16
from lungforge.preparation.options import PrepareOptions, VolumeOptions
from lungforge.preparation.scan_recipe import ScanSlices, display_shape, process_scan
from lungforge.preparation.volume_recipe import ScanVolume, process_scan_volume

Task = TypeVar("Task", bound=tuple)
Result = TypeVar("Result")


def slice_work(args: tuple[Path, luna16.ScanRef, list[luna16.Annotation], PrepareOptions, tuple[int, int]]) -> ScanSlices | ScanError:
    """One scan's slices (the store's in-plane size `shape_hw` required), or why it is skipped."""
    root, ref, annotations, options, shape_hw = args
    try:
        (_, height, width), _ = display_shape(ref.mhd)
        if (height, width) != shape_hw:
            raise ScanError(
                f"{ref.mhd}: in-plane size {height}×{width} differs from the store's {shape_hw[0]}×{shape_hw[1]} (the size of most scans)"
            )
        return process_scan(root, ref, annotations, options)
    except ScanError as exc:
        return exc
    except MemoryError:
        return ScanError(f"{ref.mhd}: out of memory while processing")


def volume_work(args: tuple[Path, luna16.ScanRef, list[luna16.Annotation], VolumeOptions]) -> ScanVolume | ScanError:
    """One scan as a volume, or why it is skipped."""
    root, ref, annotations, options = args
    try:
        return process_scan_volume(root, ref, annotations, options)
    except ScanError as exc:
        return exc
    except MemoryError:
        return ScanError(f"{ref.mhd}: out of memory while processing")


def _exit_with_parent() -> None:
    """Worker initializer: exit as soon as the prepare process is gone, even after `kill -9`.

    multiprocessing keeps a pipe open to every worker as its parent's sentinel (also under the
    forkserver, which itself exits with the parent); a daemon thread waits for its EOF.
    """
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_after, args=(parent,), name="lungforge-parent-watch", daemon=True).start()


def _exit_after(parent: multiprocessing.process.BaseProcess) -> None:
    parent.join()
    os._exit(1)


def _worker_context() -> multiprocessing.context.BaseContext:
    """Never fork this process (its OpenMP and zarr threads can deadlock a forked child): fork
    from a clean server that has imported the recipe once, or spawn where there is none."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])
        return ctx
    return multiprocessing.get_context("spawn")


def worker_pool(workers: int) -> contextlib.AbstractContextManager[ProcessPoolExecutor | None]:
    """A pool of `workers` processes, started now so their start-up overlaps the main process's
    set-up (headers, store creation); None (work in this process) for `workers <= 1`."""
    if workers <= 1:
        return contextlib.nullcontext(None)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(), initializer=_exit_with_parent)
    for _ in range(workers):
        pool.submit(int)
    return pool


def ordered_results(tasks: list[Task], pool: ProcessPoolExecutor | None, workers: int, work: Callable[[Task], Result]) -> Iterator[Result]:
    """`work(task)` of every task (`work` a module-level function: :func:`slice_work`,
    :func:`volume_work`), in task order, at most 2·workers scans in flight (bounded memory)."""
    if pool is None:
        for task in tasks:
            yield work(task)
        return
    pending: deque[Future[Result]] = deque()
    it = iter(tasks)
    for task in it:
        pending.append(pool.submit(work, task))
        if len(pending) >= 2 * workers:
            break
    while pending:
        result = pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(work, nxt))
        yield result
