"""lungforge: synthetic, label-exact lung CT slices for training nodule detectors.

Public API (imported lazily so that `import lungforge` stays fast)::

    open_store, create_store, verify_store, SliceDataset, prepare, PrepareOptions, make_phantom
"""

from __future__ import annotations

from typing import Any

from lungforge.core.version import __version__

_EXPORTS = {
    "open_store": "lungforge.store",
    "create_store": "lungforge.store",
    "Store": "lungforge.store",
    "verify_store": "lungforge.store.verify",
    "SliceDataset": "lungforge.data.dataset",
    "collate_slices": "lungforge.data.dataset",
    "prepare": "lungforge.preparation.pipeline",
    "PrepareOptions": "lungforge.preparation.pipeline",
    "make_phantom": "lungforge.phantom.scans",
    "LungforgeError": "lungforge.core.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lungforge' has no attribute {name!r}")
