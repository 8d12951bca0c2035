"""Per-fold result files that let an interrupted benchmark resume where it stopped.

Layout under `<out>/<task>/`: `run.json` (the arguments of the run) and one
`<condition>-fold<k>.json` per finished fold, written atomically as each fold ends. A rerun with
the same arguments skips finished folds; a rerun with different arguments into the same folder is
refused, so results from two protocols never mix.

The files are standard JSON: a metric undefined in a fold (NaN, e.g. the recall of a size class
the fold's test set lacks) is written as `null` and read back as NaN, so a resumed run scores
exactly what an uninterrupted one does. A write that fails (full disk) names its file; the folds
finished before it stay, and a rerun resumes from them.

A fold's result stays a plain JSON dict here and in :class:`~lungforge.bench.protocol.results.TaskResult`
(its `folds`): it is what the file holds and what a resumed run reads back, with the task's
metric names as keys.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from lungforge.bench.protocol.results import FoldRow, json_safe
from lungforge.core.errors import InputError
from lungforge.core.fileio import atomic_write_bytes, named_write
from lungforge.store import Store

RESUME_ADVICE = "the folds already finished are kept: free space, then rerun with the same arguments to resume"
"""What a bench write that failed (full disk) tells the user."""


def _write_json(path: Path, payload: Any) -> None:
    """`payload` as standard JSON (NaN and inf as null), written atomically; a failed write names `path`."""
    text = json.dumps(json_safe(payload), indent=2, sort_keys=True, allow_nan=False)
    with named_write(path, RESUME_ADVICE):
        atomic_write_bytes(path, text.encode())


def read_row(path: Path) -> FoldRow:
    """A fold file's result, its `null` values (undefined metrics) read back as NaN."""
    return {key: math.nan if value is None else value for key, value in json.loads(path.read_text()).items()}


class FoldLog:
    """Finished folds of one task; in memory only when `directory` is None. `write_run`: this
    process records the run's arguments (one rank of a torchrun job does)."""

    def __init__(self, directory: Path | None, task: str, run: dict[str, Any], write_run: bool = True):
        self.directory = None if directory is None else Path(directory) / task
        self._memory: dict[tuple[str, int], dict[str, Any]] = {}
        if self.directory is None:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        run_file = self.directory / "run.json"
        run = json.loads(json.dumps(run, sort_keys=True))
        if run_file.is_file():
            previous = json.loads(run_file.read_text())
            if previous != run:
                changed = sorted(k for k in set(previous) | set(run) if previous.get(k) != run.get(k))
                raise InputError(
                    f"{self.directory}: holds folds of a run with other arguments ({', '.join(changed)} differ); "
                    "rerun with the same arguments to resume, or use another --out"
                )
        elif write_run:
            _write_json(run_file, run)

    @staticmethod
    def _file(directory: Path, condition: str, fold: int) -> Path:
        return directory / f"{condition}-fold{fold}.json"

    def get(self, condition: str, fold: int) -> dict[str, Any] | None:
        """The saved result of (condition, fold), or None if that fold has not finished."""
        if (condition, fold) in self._memory:
            return self._memory[(condition, fold)]
        if self.directory is not None and self._file(self.directory, condition, fold).is_file():
            result = read_row(self._file(self.directory, condition, fold))
            self._memory[(condition, fold)] = result
            return result
        return None

    def remember(self, condition: str, fold: int, result: dict[str, Any]) -> None:
        """Hold a fold another process finished (and saved) in memory."""
        self._memory[(condition, fold)] = result

    def put(self, condition: str, fold: int, result: dict[str, Any]) -> None:
        """Record a finished fold (on disk atomically when there is a directory)."""
        self._memory[(condition, fold)] = result
        if self.directory is not None:
            _write_json(self._file(self.directory, condition, fold), result)


def run_signature(task: str, config: Any, real: Store, synthetic: dict[str, Store]) -> dict[str, Any]:
    """What identifies a benchmark run for resuming: task, options and store fingerprints."""
    return {
        "task": task,
        "config": dataclasses.asdict(config),
        "real": real.fingerprint(),
        "synthetic": {name: store.fingerprint() for name, store in synthetic.items()},
    }
