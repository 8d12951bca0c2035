"""A finished store's group attributes are covered by its `content` record: readers refuse a store
whose attributes changed, or that lost the record (issue 27, item 1)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from lungforge.core.errors import SchemaError
from lungforge.store import CHECKSUMS, open_store
from lungforge.store.content import attribute_digests, stored_attributes
from lungforge.store.verify import verify_store


def edit_attributes(store: Path, edit) -> None:
    """Edit the group attributes in `store`'s zarr.json by hand (as a text editor or a script would)."""
    meta = json.loads((store / "zarr.json").read_text())
    edit(meta["attributes"])
    (store / "zarr.json").write_text(json.dumps(meta))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, store_builder, stores) -> Path:
    path = store_builder(
        tmp_path_factory.mktemp("prov") / "synth.zarr",
        "synthetic",
        seed=4,
        made_from=stores["real"],
        attrs={"generator": {"weights": "w", "kind": "spade", "model_free": False, "train_series": ["1.2.3.0"]}},
    )
    return path


@pytest.fixture()
def copy(synthetic, tmp_path) -> Path:
    return Path(shutil.copytree(synthetic, tmp_path / "copy.zarr"))


def test_finalize_records_a_digest_of_every_other_attribute(synthetic):
    attrs = stored_attributes(synthetic)
    recorded = attrs["content"]["attributes"]
    assert set(recorded) == set(attrs) - {"content"} and {"generator", "params", "input", "complete", "integrity"} <= set(recorded)
    assert recorded == attribute_digests(attrs) and open_store(synthetic).recorded_attribute_digests() == recorded


@pytest.mark.parametrize(
    "edit",
    [
        lambda a: a["generator"].update(train_series=[]),
        lambda a: a["generator"].update(model_free=True),
        lambda a: a["generator"].update(kind="paste"),
    ],
    ids=["train_series", "model_free", "kind"],
)
def test_an_edited_generator_block_is_refused_by_readers_and_verify(copy, edit):
    edit_attributes(copy, edit)
    message = f"{copy}: attributes changed after the store was finished: generator (edited, or copied in from another store)"
    with pytest.raises(SchemaError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        open_store(copy)
    with pytest.raises(SchemaError, match="attributes changed after the store was finished: generator"):
        verify_store(copy)


def test_every_changed_added_or_removed_attribute_is_named(copy):
    def edit(attrs):
        attrs["params"]["seed"] = 99
        attrs["input"]["fingerprint"] = "0" * 16
        attrs["note"] = "added by hand"
        del attrs["created"]

    edit_attributes(copy, edit)
    with pytest.raises(SchemaError, match=r"finished: created \(removed\), input, note \(added\), params \("):
        open_store(copy)


def test_a_reformatted_zarr_json_with_equal_values_still_opens(copy):
    meta = json.loads((copy / "zarr.json").read_text())
    meta["attributes"] = dict(reversed(list(meta["attributes"].items())))
    (copy / "zarr.json").write_text(json.dumps(meta, indent=4, sort_keys=True))
    assert open_store(copy).attribute_problem() is None


def test_a_store_without_its_content_record_is_refused(copy):
    edit_attributes(copy, lambda a: a.pop("content"))
    with pytest.raises(SchemaError, match=f"^{copy}: has no `content` record"):
        open_store(copy)
    with pytest.raises(SchemaError, match="has no `content` record"):
        verify_store(copy)


def test_a_content_record_stripped_of_its_attribute_digests_is_refused(copy):
    edit_attributes(copy, lambda a: a["content"].pop("attributes"))
    with pytest.raises(SchemaError, match="lacks the attribute digests that its `integrity` attribute promises"):
        open_store(copy)


def test_a_store_finished_before_attribute_digests_existed_opens_and_says_so(copy):
    def older(attrs):
        attrs["content"].pop("attributes")
        attrs["integrity"] = dict(CHECKSUMS)

    edit_attributes(copy, older)
    result = verify_store(copy)
    assert result.ok and result.content_recorded and not result.attributes_recorded


def test_a_store_written_before_checksums_needs_no_content_record(copy):
    edit_attributes(copy, lambda a: (a.pop("content"), a.pop("integrity")))
    assert not open_store(copy).checked and verify_store(copy).ok


def test_attributes_that_zarr_writes_in_its_own_json_are_digested_as_written(tmp_path, store_builder):
    path = store_builder(
        tmp_path / "nan.zarr", "real", n_series=2, attrs={"min_contrast_hu": math.nan, "window_hu": (-1000, 400), "ids": {2: "a", 10: "b"}}
    )
    assert open_store(path).attribute_problem() is None


def test_info_verify_refuses_an_edited_store_in_one_line(copy):
    from typer.testing import CliRunner

    from lungforge.cli.main import app

    intact = CliRunner().invoke(app, ["info", str(copy), "--verify"])
    assert intact.exit_code == 0 and "content and attributes as recorded" in intact.stdout, intact.output
    edit_attributes(copy, lambda a: a["generator"].update(model_free=True))
    result = CliRunner().invoke(app, ["info", str(copy), "--verify"])  # the LungforgeError is printed as one line by `run`
    assert result.exit_code == 1 and isinstance(result.exception, SchemaError), result.output
    assert str(result.exception).startswith(f"{copy}: attributes changed after the store was finished: generator"), result.exception
    assert "\n" not in str(result.exception)
