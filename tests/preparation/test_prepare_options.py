"""PrepareOptions refuses a bad value itself (not only the CLI), naming the field."""

from __future__ import annotations

import pytest

from lungforge.core.errors import ConfigError
from lungforge.preparation.options import PrepareOptions


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lungs", "lobes"),
        ("nodule_slices", "middle"),
        ("keep_nodule_free", 1.5),
        ("keep_nodule_free", float("nan")),
        ("test_patients", 1.5),
        ("test_patients", -2),
        ("test_patients", float("inf")),
        ("limit", 0),
        ("workers", 0),
        ("seed", -1),
        ("seg_values", "3,4,5"),
    ],
)
def test_bad_value_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{field} ") as caught:
        PrepareOptions(**{field: value})
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)  # callers that catch ValueError keep working


def test_defaults_and_edge_values_are_accepted() -> None:
    PrepareOptions()
    PrepareOptions(lungs="auto", nodule_slices="all", keep_nodule_free=0.0, test_patients=0, limit=1, workers=3)
    PrepareOptions(keep_nodule_free=1.0, test_patients=0.99)
    PrepareOptions(test_patients=144)
