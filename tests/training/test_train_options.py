"""TrainOptions refuses a bad value itself, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungforge.core.errors import ConfigError
from lungforge.training.options import TrainOptions


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("steps", 0),
        ("batch_size", 0),
        ("window", 0),
        ("workers", -1),
        ("lr", 0.0),
        ("ema_decay", 1.0),
        ("precision", "fp8"),
        ("guidance", float("nan")),
        ("guidance", -1.0),
        ("guidance", 1e308),
        ("steps", 10**20),
        ("sample_steps", 1001),
        ("edit_margin_px", -1),
    ],
)
def test_bad_value_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{field} "):
        TrainOptions(data=Path("real.zarr"), out=Path("run"), **{field: value})
