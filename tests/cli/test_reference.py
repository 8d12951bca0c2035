"""docs/cli.md is the `--help` of every command as the code has it now."""

from __future__ import annotations

import difflib
from pathlib import Path

from lungforge.cli.reference import REGENERATE, render

PAGE = Path(__file__).parents[2] / "docs" / "cli.md"


def test_cli_reference_is_current() -> None:
    expected = render()
    actual = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    diff = "".join(difflib.unified_diff(actual.splitlines(True), expected.splitlines(True), "docs/cli.md", "generated", n=1))
    assert actual == expected, f"docs/cli.md is out of date; regenerate it with `{REGENERATE}`:\n{diff[:4000]}"


def test_cli_reference_covers_every_command() -> None:
    page = render()
    for command in ("lungforge augment", "lungforge bench all", "lungforge weights list", "lungforge train sdm"):
        assert f"\n## {command}\n" in page
    assert "Usage: lungforge bench localize [OPTIONS]" in page
    assert "\x1b[" not in page and "╭" not in page  # plain text: no colour codes, no rich panels
