"""Which synthetic slices a benchmark condition trains on: one selection rule for every condition.

`augment --retries` re-draws a slice whose nodules look too faint and keeps the best draw, but
only for generators whose image depends on the seed: SDM gets best-of-N, SPADE without a noise
input and the model-free controls never do. Judging them on what each store happens to hold
compares selection procedures, not generators. So `bench` applies one rule to every store:

- `first-draw` (default): only slices whose image is the generator's first and only draw
  (`meta/attempts` == 1); every condition is then judged on one draw per slice. A store made
  with `--retries > 0` loses the slices it re-drew (those whose first draw looked too faint), a
  filter the stores made with `--retries 0` do not get: make every store with `--retries 0`
  (the README's recipe), and the rule keeps all of them.
- `all`: every slice as written, re-drawn or not.

Unverified slices (`meta/verified` False: a nodule below the visibility threshold) are kept by
both rules (the negative control consists of them) and their share is reported.
"""

from __future__ import annotations

from typing import Any, get_args

import numpy as np

from lungforge.core.choices import Selection
from lungforge.store import Store

SELECTIONS: tuple[Selection, ...] = get_args(Selection)


def selected(store: Store, rule: Selection) -> np.ndarray:
    """(N,) bool: the slices of synthetic `store` that `rule` keeps."""
    if rule not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {rule!r}")
    if rule == "all":
        return np.ones(len(store), bool)
    return store.meta("attempts") == 1


def selection_summary(store: Store, rule: Selection) -> dict[str, Any]:
    """What `rule` does to `store`: slices in the store and used, nodule slices used, the share
    of the store's slices that were re-drawn (attempts > 1) and that are unverified, and the
    store's --retries."""
    used = selected(store, rule)
    attempts = store.meta("attempts")
    n = max(len(store), 1)
    return {
        "rule": rule,
        "slices": len(store),
        "used": int(used.sum()),
        "nodule_slices_used": int((used & store.meta("has_nodule")).sum()),
        "resampled_share": float((attempts > 1).sum() / n),
        "unverified_share": float((~store.meta("verified")).sum() / n),
        "retries": store.attrs.get("params", {}).get("retries"),
        "generator": store.attrs.get("generator", {}).get("kind"),
    }
