"""The CLI reference (docs/cli.md): every command's `--help`, rendered as Markdown.

`python -m lungforge.cli.reference > docs/cli.md` regenerates the page; tests/cli/test_reference.py
fails when the checked-in page differs. The help is rendered by click's plain formatter at a fixed
width (no colour, no terminal size, no rich panels), so the text is the same on every machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

from lungforge.cli.main import app

WIDTH = 100
"""Columns of the rendered help text."""
REGENERATE = "python -m lungforge.cli.reference > docs/cli.md"


def _help_pages(command: Any, path: list[str], parent: Any = None) -> Iterator[tuple[str, str]]:
    """(command line, help text) of `command` and of each subcommand below it, depth first, in
    the order `--help` lists them."""
    command.rich_markup_mode = None  # plain click formatting; the command objects are built fresh per call
    ctx = command.context_class(command, info_name=path[-1], parent=parent, terminal_width=WIDTH, max_content_width=WIDTH)
    yield " ".join(path), command.get_help(ctx)
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            yield from _help_pages(command.get_command(ctx, name), [*path, name], ctx)


def render() -> str:
    """docs/cli.md: a contents list, then one section per command holding its `--help` text."""
    pages = list(_help_pages(typer.main.get_command(app), ["lungforge"]))
    lines = [
        "# Command-line reference",
        "",
        "Every `lungforge` command's `--help`, generated from the code; do not edit by hand.",
        f"Regenerate with `{REGENERATE}` (tests/cli/test_reference.py checks it is current).",
        "Exit codes and output streams: [scripting.md](scripting.md).",
        "",
    ]
    lines += [f"- [`{name}`](#{name.replace(' ', '-')})" for name, _ in pages]
    for name, text in pages:
        lines += ["", f"## {name}", "", "```text", *(line.rstrip() for line in text.splitlines()), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
