"""Refusing an output path that is an input, contains one or lies inside one (augment, export)."""

from __future__ import annotations

from pathlib import Path

from lungforge.core.errors import InputError


def refuse_overlap(out: Path, flag: str, path: Path, command: str) -> None:
    """InputError if `out` is `path`, contains it, or lies inside it (symlinks resolved).

    `flag` names the input in the message (`--data`, `STORE`); `command` the command refusing.
    """
    out_r, path_r = Path(out).resolve(), Path(path).resolve()
    if out_r == path_r:
        relation = "is"
    elif out_r in path_r.parents:
        relation = "contains"
    elif path_r in out_r.parents:
        relation = "is inside"
    else:
        return
    raise InputError(f"--out {out} {relation} {flag} {path}: {command} never writes over its inputs; choose another --out")
