"""lungforge: synthetic, label-exact lung CT slices for training nodule detectors.

Public API (imported lazily so that `import lungforge` stays fast)::

    open_store, create_store, verify_store, SliceDataset, prepare, PrepareOptions, make_phantom
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "open_store": "lungforge.data.store",
    "create_store": "lungforge.data.store",
    "Store": "lungforge.data.store",
    "verify_store": "lungforge.data.verify",
    "SliceDataset": "lungforge.data.dataset",
    "collate_slices": "lungforge.data.dataset",
    "prepare": "lungforge.data.prepare",
    "PrepareOptions": "lungforge.data.prepare",
    "make_phantom": "lungforge.data.phantom",
    "LungforgeError": "lungforge.errors",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lungforge' has no attribute {name!r}")
