"""Shared stderr console, progress bars and JSON output for the CLI (stdout carries JSON only)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err_console = Console(stderr=True)


class _Progress(Progress):
    """Rich's Progress that prints nothing when it showed nothing.

    Rich ends a bar on a non-terminal stderr with a newline even when the bar was never shown
    (an error before the first task), so the error line would follow an empty line.
    """

    def stop(self) -> None:
        if not self.live.is_started:
            return
        if self.tasks:
            super().stop()
        else:
            self.live.stop()


def progress(transient: bool = False) -> Progress:
    """A Rich progress bar on stderr with count, elapsed time and ETA."""
    return _Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )


def print_json(payload: Any) -> None:
    """Write `payload` as JSON alone on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def _default(obj: Any) -> Any:
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
