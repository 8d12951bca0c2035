"""Is a generator helpful? Only when it beats A, `classic` and `blob` on the task's metric.

Beating A alone can be batch size, class balance, extra real backgrounds or plain augmentation;
beating `classic` (A's own nodules, classically augmented, as many as the first synthetic store's positives)
and `blob` (constant ellipses of the requested sizes in the same hosts) shows that the
generator's nodules carry something neither transformation nor shape and size alone give.

Each bar is a paired signed-rank test over the folds (p < :data:`HELPFUL_P`, mean difference
above 0); the verdict needs all three. Requiring every one of several tests is an
intersection–union test: it keeps the level HELPFUL_P without a multiplicity adjustment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lungforge.bench.protocol.control_names import CONTROL_NAMES
from lungforge.bench.protocol.fold_controls import FOLD_CONTROLS
from lungforge.bench.protocol.inputs import REFERENCE
from lungforge.bench.protocol.results import TaskResult, json_safe
from lungforge.bench.protocol.sources import SOURCES
from lungforge.bench.scoring.stats import Comparison, compare, nb_ratio

BARS = (REFERENCE, "classic", "blob")
"""The conditions a generator must beat to be called helpful."""
HELPFUL_P = 0.05


@dataclass(frozen=True)
class Verdict:
    """One generator on one task: its :func:`compare` with every bar {bar: comparison}, and
    `helpful` when it beats each one."""

    generator: str
    metric: str
    against: dict[str, Comparison]
    helpful: bool

    def to_dict(self) -> dict[str, Any]:
        """Per bar the JSON-safe `diff_mean`, `diff_ci95` and `p_signed_rank` of the comparison."""
        against = {
            bar: json_safe({"diff_mean": c.diff_mean, "diff_ci95": list(c.diff_ci95), "p_signed_rank": c.p["signed_rank"]})
            for bar, c in self.against.items()
        }
        return {"generator": self.generator, "metric": self.metric, "against": against, "helpful": self.helpful}


def beats(comparison: Comparison) -> bool:
    """Whether a comparison shows the condition ahead with paired signed-rank p < HELPFUL_P."""
    p, diff = comparison.p["signed_rank"], comparison.diff_mean
    return math.isfinite(p) and math.isfinite(diff) and p < HELPFUL_P and diff > 0


def verdicts(result: TaskResult, metric: str) -> list[Verdict]:
    """A :class:`Verdict` per generator condition of `result` (the conditions that are neither A nor a control)."""
    controls = {*CONTROL_NAMES, *FOLD_CONTROLS, REFERENCE, SOURCES}
    return [verdict_of(result, name, metric) for name in result.conditions if name not in controls]


def verdict_of(result: TaskResult, name: str, metric: str) -> Verdict:
    """The :class:`Verdict` of condition `name` (a generator, or a recipe that `bench` runs as a
    control, such as `paste` in a power study) against every bar of :data:`BARS`."""
    against = {bar: _against(result, name, bar, metric) for bar in BARS}
    return Verdict(name, metric, against, all(beats(c) for c in against.values()))


def _against(result: TaskResult, name: str, bar: str, metric: str) -> Comparison:
    """`name` against `bar` on `metric` over the folds."""
    values, reference = result.values(name, metric), result.values(bar, metric)
    return compare(values, reference, nb_ratio(result.config.folds), condition=name, reference_name=bar, metric=metric)


def verdict_sentence(task: str, verdict: Verdict) -> str:
    """One line for the report: helpful or not, and each bar's difference and paired p."""
    parts = []
    for bar, c in verdict.against.items():
        diff = f"{100 * c.diff_mean:+.2f} pts" if math.isfinite(c.diff_mean) else "n/a"
        p = f"{c.p['signed_rank']:.3g}" if math.isfinite(c.p["signed_rank"]) else "n/a"
        parts.append(f"vs {bar} {diff} (p {p})")
    word = "helpful" if verdict.helpful else "NOT shown helpful"
    return (
        f"{task}: {verdict.generator} is {word} on {verdict.metric} — "
        + "; ".join(parts)
        + f" (needs all three ahead, signed-rank p < {HELPFUL_P})."
    )
