"""What `augment` asks of a generator, whichever draws the slices: a whole-slice model
(:class:`~lungforge.augment.synthesizer.Synthesizer`), an inpainting SDM
(:class:`~lungforge.augment.inpainter.Inpainter`) or a model-free control
(:class:`~lungforge.augment.controls.ControlGenerator`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from lungforge.augment.plan import PlannedSample, SamplePlanner
from lungforge.models.inpaint_window import Window


class SliceGenerator(Protocol):
    """Planned samples (B) + one seed each → (B, S, S) uint8 slices; S = `image_size` pixels."""

    @property
    def image_size(self) -> int:
        """Output side S in pixels."""
        ...

    @property
    def seeded(self) -> bool:
        """Whether another seed gives another image (a retry can change the result)."""
        ...

    @property
    def sha256(self) -> str | None:
        """sha256 of the weights file (None: no weights); a resumed run must match it."""
        ...

    @property
    def first_call_seconds(self) -> float | None:
        """Seconds of the first `render` call (None before it)."""
        ...

    @property
    def window(self) -> int | None:
        """Side in pixels of the windows nodules are drawn in; None when drawn with the whole slice."""
        ...

    def provenance(self, weights: str) -> dict[str, Any]:
        """The output store's `generator` attribute block."""
        ...

    def render(self, samples: Sequence[PlannedSample], seeds: Sequence[int]) -> np.ndarray:
        """(B, S, S) uint8 images of `samples`, sample i drawn from `seeds[i]` alone."""
        ...

    def windows(self, sample: PlannedSample) -> list[Window]:
        """The window (x0, y0, x1, y1 pixels, half-open) each nodule of `sample` is drawn in; [] when `window` is None."""
        ...

    def check_room(self, planner: SamplePlanner, diameter_mm: tuple[float, float] | None, weights: str) -> None:
        """InputError (one line, before anything is written) when planned nodules cannot be drawn:
        those of sample 0, and the largest of a `diameter_mm` (min, max) range."""
        ...
