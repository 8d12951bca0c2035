"""The per-fold controls `hosts` and `classic`: conditions built inside each fold from what it already holds.

`bench --controls` makes the control stores (`mislabeled`, `paste`, `blob`:
:mod:`lungforge.bench.protocol.controls`) and, with them, two conditions that no store can hold
because they depend on the fold:

- `hosts`: the host slices of the controls' layout that join the fold (`mislabeled`'s, which are
  `paste`'s and `blob`'s), unchanged and labelled nodule-free. What the synthetic slices' extra
  real backgrounds alone do to the detector.
- `classic`: the fold's own kept real nodule items (A's positive patches or nodule slices) under
  classical augmentation (:mod:`lungforge.bench.protocol.classic`), as many as the positives
  the run's first synthetic store that is no control store adds to that fold (the store whose
  layout request the control stores copy, and the default primary comparison; `paste` where
  the run has none), drawn from a generator seeded by (seed, fold, the condition's stream).
  What a few lines of flips, rotations and jitter add without any new image, at that
  generator's own positive count.

Every fold row of a fold control names the condition it was built from (`built_from`); its
`synthetic_positives` is the count it added.

A generator is helpful only when it beats A, `classic` and `blob` (docs/controls.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from lungforge.bench.protocol.control_names import CONTROL_NAMES
from lungforge.core.errors import InputError


class ControlSet(Protocol):
    """What a fold control needs of a task's item set (PatchSet, SliceSet)."""

    @property
    def positive(self) -> np.ndarray: ...

    def nodule_free(self) -> ControlSet: ...

    def classic(self, count: int, rng: np.random.Generator) -> ControlSet: ...


C = TypeVar("C", bound=ControlSet)


def hosts_items(reference: C, joined: C, rng: np.random.Generator) -> C:
    """`joined` (the source condition's items in the fold), every one labelled nodule-free."""
    return joined.nodule_free()  # type: ignore[return-value]


def classic_items(reference: C, joined: C, rng: np.random.Generator) -> C:
    """As many classic copies of `reference`'s positives as `joined` has positives."""
    return reference.classic(int(joined.positive.sum()), rng)  # type: ignore[return-value]


@dataclass(frozen=True)
class FoldControl:
    """A per-fold control: `items(reference, joined, rng)`, what it adds to A's training items
    from the items `joined` that its source condition adds to the fold (:meth:`built_from`).

    `source` is the control store it needs; with `matches_first_store` it starts from the run's
    first synthetic store that is no control store instead, where there is one."""

    source: str
    items: Callable[[ControlSet, ControlSet, np.random.Generator], ControlSet]
    matches_first_store: bool = False

    def built_from(self, synthetic_names: Sequence[str]) -> str:
        """The condition whose joined items this control starts from in a run of `synthetic_names`."""
        if self.matches_first_store:
            return next((name for name in synthetic_names if name not in CONTROL_NAMES), self.source)
        return self.source


FOLD_CONTROLS: dict[str, FoldControl] = {
    "hosts": FoldControl("mislabeled", hosts_items),
    "classic": FoldControl("paste", classic_items, matches_first_store=True),
}


def fold_control_names(synthetic_names: list[str], enabled: bool) -> tuple[str, ...]:
    """The fold controls a run adds (none unless `enabled`); InputError when a source store is missing."""
    if not enabled:
        return ()
    missing = sorted({c.source for c in FOLD_CONTROLS.values()} - set(synthetic_names))
    if missing:
        raise InputError(
            f"the fold controls {', '.join(FOLD_CONTROLS)} need the control stores {', '.join(missing)}: run bench all --controls"
        )
    taken = sorted(set(FOLD_CONTROLS) & set(synthetic_names))
    if taken:
        raise InputError(f"--synthetic name {taken[0]!r} is a control's name; rename it or drop --controls")
    return tuple(FOLD_CONTROLS)
