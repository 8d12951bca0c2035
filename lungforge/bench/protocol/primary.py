"""The primary comparison of a benchmark run (`--primary COND@K`), checked before it trains
against the conditions the run compares with A and its learning-curve points; `bench detect`,
`bench localize` and `bench all` (CLI and Python API alike) take it from here."""

from __future__ import annotations

from lungforge.bench.protocol.crossval import ALL, compared_conditions, point_label
from lungforge.bench.protocol.fold_options import FoldConfig
from lungforge.bench.scoring.summary import PrimarySpec, parse_primary
from lungforge.store import Store

POSITIVE_CONTROL = "paste"
"""The default primary comparison of a run whose only synthetic stores are the controls."""


def primary_comparison(
    text: str | None,
    real: Store,
    synthetic: dict[str, Store],
    config: FoldConfig,
    points: list[int | None] | None,
    controls_to_make: tuple[str, ...] = (),
) -> PrimarySpec | None:
    """The run's primary comparison: `text` (`COND@K`, or `COND` at the smallest K) among the
    conditions it compares with A (:func:`~lungforge.bench.protocol.crossval.compared_conditions`,
    `controls_to_make` included) and its learning-curve `points` (None: no curve, K "all").
    None `text`: the first synthetic store, else the positive control, at the smallest K (None
    without either). :class:`~lungforge.bench.scoring.summary.PrimaryError` (a ConfigError, field
    "primary") naming the bad part."""
    conditions = compared_conditions(real, synthetic, config, controls_to_make)
    labels = [point_label(k) for k in points] if points is not None else [ALL]
    if text is None:
        first = next(iter(synthetic), POSITIVE_CONTROL if POSITIVE_CONTROL in controls_to_make else None)
        return None if first is None else PrimarySpec(first, labels[0])
    return parse_primary(text, conditions, labels)
