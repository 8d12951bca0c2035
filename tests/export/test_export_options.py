"""ExportOptions refuses a bad value itself, naming the field."""

from __future__ import annotations

import pytest

from lungforge.core.errors import ConfigError
from lungforge.export.context import ExportOptions


@pytest.mark.parametrize(
    ("field", "value"),
    [("format", "tiff"), ("split", "val"), ("size", 4), ("dataset_id", 1000), ("dataset_name", "a b")],
)
def test_bad_value_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}") as caught:
        ExportOptions(**{"format": "png", field: value})
    assert caught.value.field == field


def test_dataset_id_of_another_format_is_refused() -> None:
    with pytest.raises(ConfigError, match="^dataset_id 7 applies to formats 'nnunet' and 'nnunet3d' only, got format 'coco'$") as caught:
        ExportOptions(format="coco", dataset_id=7)
    assert caught.value.field == "dataset_id"
