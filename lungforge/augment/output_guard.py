"""Checks on `augment --out` made before anything is written: never over an input, never over real data."""

from __future__ import annotations

from pathlib import Path

from lungforge.augment.options import AugmentOptions
from lungforge.core.errors import SchemaError
from lungforge.core.output_paths import refuse_overlap
from lungforge.store import is_store, open_store


def check_output(options: AugmentOptions) -> None:
    """Refuse an --out that overlaps --data, exists without --resume/--overwrite, or is a real store."""
    refuse_overlap(options.out, "--data", options.data, "augment")
    if Path(options.weights).exists():
        refuse_overlap(options.out, "--weights", Path(options.weights), "augment")
    out = options.out
    if not out.exists():
        return
    if not (options.resume or options.overwrite):
        raise SchemaError(f"{out}: already exists; pass --resume to continue it or --overwrite to replace it")
    if options.overwrite and is_store(out) and open_store(out, require_complete=False).kind == "real":
        raise SchemaError(f"{out}: is a real store; augment never overwrites real data (choose another --out)")
