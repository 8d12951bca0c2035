"""The CLI's two streams: a command's result on stdout (its table or report, or with `--json` the
JSON alone); progress bars, logs, notes, warnings and errors on stderr."""

from __future__ import annotations

import json
import sys
from pathlib import Path
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
"""Progress bars, logs, notes, warnings and error lines."""
out_console = Console()
"""A command's human result: tables and reports (no colours when stdout is not a terminal)."""


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


def print_result(*parts: str | tuple[str, str]) -> None:
    """One result line on stdout, never wrapped, so a path in it stays whole for scripts.

    `parts` are plain text or (text, style) pairs (as `rich.text.Text.assemble` takes them): no
    markup is parsed, so a `[` in a path prints as it is.
    """
    from rich.text import Text

    out_console.print(Text.assemble(*parts), soft_wrap=True, highlight=False)


def print_wrote(path: Path, json_out: bool) -> None:
    """A `wrote PATH` line for a file that the JSON does not name: the result on stdout, or with
    `--json` (stdout holds the JSON alone) a log line on stderr."""
    if json_out:
        err_console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
    else:
        print_result(f"wrote {path}")


def print_json(payload: Any) -> None:
    """Write `payload` as JSON alone on stdout."""
    sys.stdout.write(json.dumps(payload, indent=2, default=_default) + "\n")
    sys.stdout.flush()


def _default(obj: Any) -> Any:
    import dataclasses

    import numpy as np

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
