"""An options dataclass as the JSON-ready `params` attribute a store keeps of the command that made it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


def json_params(options: Any) -> dict[str, Any]:
    """Every field of the dataclass instance `options`: paths as strings, tuples as lists, the rest as is."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        out[field.name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
    return out
