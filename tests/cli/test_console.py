"""The CLI's two streams (lungforge.cli.console): result lines on stdout, whole and plain when piped."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungforge.cli.console import print_result, print_wrote


def test_result_line_is_never_wrapped_nor_coloured_on_a_pipe(capsys: pytest.CaptureFixture[str]) -> None:
    path = "/data/" + "x" * 150 + "/[red]store[/red].zarr"
    print_result(("ok", "green"), f" wrote {path}")
    out, err = capsys.readouterr()
    assert out == f"ok wrote {path}\n" and err == ""


def test_wrote_line_is_the_result_or_with_json_a_log(capsys: pytest.CaptureFixture[str]) -> None:
    print_wrote(Path("figures/curve.png"), json_out=False)
    assert capsys.readouterr() == ("wrote figures/curve.png\n", "")
    print_wrote(Path("figures/curve.png"), json_out=True)
    assert capsys.readouterr() == ("", "wrote figures/curve.png\n")
