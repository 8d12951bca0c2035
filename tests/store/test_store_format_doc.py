"""docs/store-format.md documents every group attribute, array and array attribute a store carries.

The names come from the code, not from a list kept here: the stores `prepare`, `prepare --volumes`
and `augment` write (a phantom, and the `mislabeled` control on it), the schema's column tables
(columns only some stores have, e.g. `nodules/window` of inpainting output) and the attribute keys
that the writers put in a literal (attributes only some runs write, e.g. `lidc`). A volume
store's per-scan groups `volumes/0`, `volumes/1`, ... are documented once as `volumes/<index>`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import zarr

from lungforge.augment.generate import augment
from lungforge.augment.options import AugmentOptions
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.preparation.volume_pipeline import VolumeOptions, prepare_volumes
from lungforge.store import schema, volume_schema

ROOT = Path(__file__).parents[2]
DOC = (ROOT / "docs" / "store-format.md").read_text(encoding="utf-8")
WRITERS = [
    ROOT / "lungforge" / p
    for p in (
        "store/create.py",
        "store/writing.py",
        "store/volume_writing.py",
        "preparation/pipeline.py",
        "preparation/volume_pipeline.py",
        "augment",
    )
]
ATTRIBUTE_ARGUMENTS = {"attributes", "attrs", "extra_attrs"}


@pytest.fixture(scope="module")
def written(phantom_factory, tmp_path_factory) -> dict[str, zarr.Group]:
    """A real store prepared from a 4-scan phantom and a synthetic store made from it."""
    root = tmp_path_factory.mktemp("format")
    prepare(phantom_factory(scans=4, size=64, seed=0), root / "real.zarr", PrepareOptions(test_patients=0.25), shard_slices=8)
    options = AugmentOptions(data=root / "real.zarr", weights="mislabeled", out=root / "synth.zarr", nodules=2, nodule_free=1, device="cpu")
    augment(options)
    prepare_volumes(phantom_factory(scans=4, size=64, seed=0), root / "volumes.zarr", VolumeOptions(spacing_mm=4.0, test_patients=0.25))
    return {kind: zarr.open_group(str(root / f"{kind}.zarr"), mode="r") for kind in ("real", "synth", "volumes")}


def _arrays(group: zarr.Group, prefix: str = "") -> dict[str, Any]:
    """Array path → the array, over `group` and its subgroups."""
    found: dict[str, Any] = {}
    for name, member in group.members():
        path = f"{prefix}{name}"
        found |= _arrays(member, f"{path}/") if isinstance(member, zarr.Group) else {path: member}
    return {re.sub(r"^volumes/\d+/", "volumes/<index>/", name): array for name, array in found.items()}


def _literal_keys(node: ast.AST | None) -> set[str]:
    if isinstance(node, ast.Dict):
        return {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
    return set()


def _is_name(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _keys_of(node: ast.AST) -> set[str]:
    """Group attribute keys that one syntax node hands over."""
    if isinstance(node, ast.keyword) and node.arg in ATTRIBUTE_ARGUMENTS:
        return _literal_keys(node.value)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update":
        receiver = node.func.value
        if isinstance(receiver, ast.Attribute) and receiver.attr == "attrs":
            return {k for arg in node.args for k in _literal_keys(arg)}
    if isinstance(node, ast.Assign | ast.AnnAssign):
        keys: set[str] = set()
        for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
            if _is_name(target, "attrs"):
                keys |= _literal_keys(node.value)
            elif isinstance(target, ast.Subscript) and _is_name(target.value, "attrs") and isinstance(target.slice, ast.Constant):
                keys.add(str(target.slice.value))
        return keys
    return set()


def attribute_keys_in_writers() -> set[str]:
    """Keys of the dict literals the writers hand over as group attributes: `attributes=`, `attrs=`,
    `extra_attrs=` arguments, `attrs = {...}`, `attrs["key"] = ...` and `....attrs.update({...})`."""
    files = [f for w in WRITERS for f in ([w] if w.is_file() else sorted(w.rglob("*.py")))]
    return {key for path in files for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) for key in _keys_of(node)}


CODE_SPANS = re.findall(r"`([^`\n]+)`", DOC)
WORDS_IN_CODE = {word for span in CODE_SPANS for word in re.findall(r"[A-Za-z_][\w/]*", span)}


def undocumented(names: set[str], *, own_span: bool = True) -> list[str]:
    """The `names` the page does not show in backticks: each as a code span of its own, or
    (`own_span=False`, for fields and array attribute keys) as a word inside one."""
    shown = set(CODE_SPANS) if own_span else WORDS_IN_CODE
    return sorted(names - shown)


def test_the_writers_keys_are_found() -> None:
    keys = attribute_keys_in_writers()
    assert {"schema", "complete", "content", "verification", "lidc", "generator", "skipped", "spacing_mm"} <= keys


def test_every_group_attribute_is_documented(written) -> None:
    names = attribute_keys_in_writers() | {key for group in written.values() for key in group.attrs}
    missing = undocumented(names)
    assert not missing, f"group attributes missing from docs/store-format.md: {missing}"


def test_every_content_and_verification_field_is_documented(written) -> None:
    synth = written["synth"].attrs
    fields = set(synth["content"]) | set(synth["verification"]) | set(synth["integrity"]) | set(synth["input"])
    missing = undocumented(fields, own_span=False)
    assert not missing, f"fields missing from docs/store-format.md: {missing}"


def test_every_array_is_documented(written) -> None:
    optional = {f"nodules/{name}" for name in {**schema.INPAINT_NODULE_COLUMNS, **schema.NODULE_ID_COLUMNS}}
    volumes = {f"volumes/<index>/{name}" for name in volume_schema.VOLUME_DTYPES} | {
        name for name in volume_schema.VOLUME_ARRAY_ATTRS if "/" in name
    }
    names = {path for group in written.values() for path in _arrays(group)} | set(schema.ARRAY_ATTRS) | optional | volumes
    assert {"meta/verified", "nodules/window", "volumes/<index>/image", "nodules/center_voxel"} <= names
    missing = undocumented(names)
    assert not missing, f"arrays missing from docs/store-format.md: {missing}"


def test_every_array_attribute_is_documented(written) -> None:
    keys = {key for attrs in (*schema.ARRAY_ATTRS.values(), *volume_schema.VOLUME_ARRAY_ATTRS.values()) for key in attrs}
    keys |= {key for group in written.values() for array in _arrays(group).values() for key in array.attrs}
    missing = undocumented(keys, own_span=False)
    assert not missing, f"array attributes missing from docs/store-format.md: {missing}"
