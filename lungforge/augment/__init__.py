"""Synthetic nodule layouts and synthetic-slice production (`lungforge augment`).

Public API (imported lazily, so `lungforge.augment.layout` does not pull in torch)::

    augment(AugmentOptions(...)) -> AugmentReport, load_inputs, Synthesizer, SamplePlanner, sample_seed
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "augment": "lungforge.augment.generate",
    "load_inputs": "lungforge.augment.generate",
    "AugmentOptions": "lungforge.augment.options",
    "AugmentReport": "lungforge.augment.summary",
    "PlannedSample": "lungforge.augment.plan",
    "SamplePlanner": "lungforge.augment.plan",
    "SourceMaps": "lungforge.augment.plan",
    "sample_seed": "lungforge.augment.plan",
    "SamplingSettings": "lungforge.augment.synthesizer",
    "Synthesizer": "lungforge.augment.synthesizer",
    "write_preview": "lungforge.augment.preview",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lungforge.augment' has no attribute {name!r}")
