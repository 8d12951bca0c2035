"""Fault rows of issue 27: a command's result on stdout, progress/logs/warnings on stderr (item 9); attributes
under the recorded digests and tight boxes (items 1-2, 10)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .lab import Call, Lab, Outcome, fault, first_line, store_complete
from .rows_issue19_stores import cli_env, misregistered


# --- branch stdout: issue 27.9, a command's result on stdout, progress/logs/warnings on stderr (group round3-stdout) ---
def _on_stdout(call: Call, result: str, logs: str = "") -> Outcome:
    """ok when `result` is on stdout and not on stderr, and `logs` (if given) on stderr and not on stdout."""
    placed = result in call.stdout and result not in call.stderr and (not logs or (logs in call.stderr and logs not in call.stdout))
    note = f"stdout {len(call.stdout.splitlines())} lines, stderr {len(call.stderr.splitlines())}"
    return Outcome(str(call.code), call.stderr, False, note if placed else f"{note}: {result!r} or {logs!r} on the wrong stream", placed)


@fault("round3-stdout", "info STORE | less: the report on stdout (27.9)", "0")
def _(lab: Lab) -> Outcome:
    return _on_stdout(lab.cli("info", lab.real), "nodule diameters: ")


@fault("round3-stdout", "weights list | grep demo: one line per entry (27.9)", "0")
def _(lab: Lab) -> Outcome:
    call = lab.cli("weights", "list")
    outcome = _on_stdout(call, "demo-spade-tiny")
    # one row whose NAME cell is the entry (other rows, e.g. an entry imported from its file, may mention it)
    one_line = sum(line.strip("│ ").startswith("demo-spade-tiny ") for line in call.stdout.splitlines()) == 1
    return Outcome(outcome.code, outcome.stderr, False, outcome.note, outcome.extra_ok and one_line)


@fault("round3-stdout", "weights verify mismatch: the listing on stdout, one error line (27.9)", "1")
def _(lab: Lab) -> Outcome:
    call = cli_env(lab, misregistered(lab), "weights", "verify", "misreg")
    outcome = _on_stdout(call, "mismatch misreg")
    lines = [line for line in call.stderr.splitlines() if line.strip()]
    one_error = len(lines) == 1 and lines[0].startswith("error: ")
    return Outcome(outcome.code, outcome.stderr, False, outcome.note, outcome.extra_ok and one_error)


@fault("round3-stdout", "prepare, a scan skipped: summary on stdout, skip on stderr (27.9)", "3")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    victim = lab.victim(luna)
    victim.with_suffix(".raw").write_bytes(victim.with_suffix(".raw").read_bytes()[:100])
    call = lab.cli("prepare", luna, "--out", lab.path("real.zarr"), "--test-patients", "2")
    return _on_stdout(call, "1 scans skipped", victim.stem)


@fault("round3-stdout", "augment paste: report on stdout, progress on stderr (27.9)", "0")
def _(lab: Lab) -> Outcome:
    call = lab.cli(
        "augment", "--data", lab.real, "--weights", "paste", "--out", lab.path("paste.zarr"), "--nodules", "2", "--device", "cpu"
    )
    return _on_stdout(call, "written this run", "augment ━")


@fault("round3-stdout", "view and export: the path written on stdout (27.9)", "0 then 0")
def _(lab: Lab) -> Outcome:
    png, folder = lab.path("grid.png"), lab.path("export")
    view = _on_stdout(lab.cli("view", lab.real, "--out", png, "--limit", "2", "--tile", "16"), f"wrote 2 slices to {png}")
    export = _on_stdout(lab.cli("export", lab.real, "--format", "png", "--out", folder), f"as png to {folder}")
    return Outcome(
        f"{view.code} then {export.code}",
        view.stderr + export.stderr,
        False,
        f"{view.note}; {export.note}",
        view.extra_ok and export.extra_ok,
    )


@fault("round3-stdout", "info --json: the JSON alone on stdout (27.9)", "0")
def _(lab: Lab) -> Outcome:
    call = lab.cli("info", lab.real, "--json")
    try:
        alone = json.loads(call.stdout)["kind"] == "real" and not call.stderr
    except (ValueError, KeyError):
        alone = False
    return Outcome(str(call.code), call.stderr, False, "" if alone else "stdout is not the JSON alone", alone)


# --- branch provenance, group round3-provenance (issue 27, items 1-2, 10): attributes under the recorded digests, tight boxes ---
def _leaky_pair(lab: Lab) -> tuple[Path, Path]:
    """The phantom the demo weights were trained on (--seed 7: its patients are their training
    patients), prepared, and a demo SPADE store made from it, which `bench --real-split all`
    refuses for generator leakage; made once per lab."""
    luna, real, synth = lab.root / "ph-seed7", lab.root / "real-seed7.zarr", lab.root / "synth-seed7.zarr"
    if not (luna / "annotations.csv").is_file():
        lab._setup("phantom", luna, "--scans", "6", "--size", "64", "--seed", "7", "--overwrite")
    if not store_complete(real):
        lab._setup("prepare", luna, "--out", real, "--test-patients", "2", "--overwrite")
    if not store_complete(synth):
        lab._setup(
            "augment",
            "--data",
            real,
            "--weights",
            "demo-spade-tiny",
            "--out",
            synth,
            "--nodules",
            "4",
            "--nodule-free",
            "2",
            "--shape",
            "sphere",
            "--shard-size",
            "2",
            "--device",
            "cpu",
            "--overwrite",
        )
    return real, synth


def _edit_attrs(store: Path, edit: Callable[[dict], object]) -> None:
    """Edit the group attributes in `store`'s zarr.json by hand, as a text editor would."""
    meta = json.loads((store / "zarr.json").read_text())
    edit(meta["attributes"])
    (store / "zarr.json").write_text(json.dumps(meta))


def _generator_edit(lab: Lab, edit: Callable[[dict], object]) -> Outcome:
    """bench detect --real-split all of a leaking store, then of a copy whose generator block was edited by `edit`."""
    real, synth = _leaky_pair(lab)
    args = ["bench", "detect", "--real", real, "--quick", "--folds", "2", "--real-split", "all", "--device", "cpu"]
    honest = lab.cli(*args, "--synthetic", f"S={synth}")
    leak_refused = honest.code == 1 and "generator's weights saw" in honest.stderr
    copy = lab.store_copy(synth)
    _edit_attrs(copy, lambda a: edit(a["generator"]))
    call = lab.cli(*args, "--synthetic", f"S={copy}")
    named = "attributes changed after the store was finished: generator" in call.stderr
    note = "" if leak_refused else f"the unedited store was not refused for leakage (exit {honest.code})"
    return Outcome(
        str(call.code), call.stderr, False, note=note or ("" if call.code else "leakage check passed"), extra_ok=leak_refused and named
    )


@fault("round3-provenance", "generator.train_series edited to []: bench detect --real-split all (27.1)", "1")
def _(lab: Lab) -> Outcome:
    return _generator_edit(lab, lambda g: g.update(train_series=[]))


@fault("round3-provenance", "generator.model_free edited to true: bench detect --real-split all (27.1)", "1")
def _(lab: Lab) -> Outcome:
    return _generator_edit(lab, lambda g: g.update(model_free=True))


@fault("round3-provenance", "generator.train_series edited to []: info --verify (27.1)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(_leaky_pair(lab)[1])
    _edit_attrs(copy, lambda a: a["generator"].update(train_series=[]))
    call = lab.cli("info", copy, "--verify")
    return Outcome(str(call.code), call.stderr, False, extra_ok="generator" in first_line(call.stderr))


@fault("round3-provenance", "content record deleted: info --verify (27.1)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    _edit_attrs(copy, lambda a: a.pop("content"))
    call = lab.cli("info", copy, "--verify")
    return Outcome(str(call.code), call.stderr, False, extra_ok="no `content` record" in call.stderr)


@fault("round3-provenance", "content record deleted: augment --data (27.1)", "1")
def _(lab: Lab) -> Outcome:
    copy, out = lab.store_copy(lab.real), lab.path("s.zarr")
    _edit_attrs(copy, lambda a: a.pop("content"))
    call = lab.cli("augment", "--data", copy, "--weights", "paste", "--out", out, "--nodules", "2", "--device", "cpu")
    return Outcome(str(call.code), call.stderr, False, extra_ok="no `content` record" in call.stderr and not out.exists())


def _recorded_boxes(lab: Lab, edit: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], problem: str) -> Outcome:
    """info --verify of a copy of the seed-7 real store (nodules up to 3x3 px) whose nodule table `edit` rewrote and whose content record
    was then re-recorded (as a writer that wrote such boxes would leave it): only the boxes can tell,
    with a line holding `problem`."""
    import zarr

    from lungforge.store import open_store

    copy = lab.store_copy(_leaky_pair(lab)[0])
    table = edit(open_store(copy).nodules())
    for name, values in table.items():
        array = zarr.open_array(str(copy / "nodules" / name), mode="r+").with_config({"write_empty_chunks": True})
        array.resize(values.shape)
        array[...] = values
    store = open_store(copy)
    digests, fingerprint = store.content_digests(), store.fingerprint()
    _edit_attrs(copy, lambda a: a["content"].update(arrays=digests, fingerprint=fingerprint))
    call = lab.cli("info", copy, "--verify")
    return Outcome(str(call.code), call.stderr, False, extra_ok=problem in call.stderr)


@fault("round3-provenance", "largest box shrunk to its corner pixel, content re-recorded: info --verify (27.2)", "1")
def _(lab: Lab) -> Outcome:
    def shrink(table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        box = table["bbox"].copy()
        row = int(np.argmax((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])))
        box[row, 2:] = box[row, :2] + 1
        return {"bbox": box}

    return _recorded_boxes(lab, shrink, "boxes are not the tight box of the nodule they cover")


@fault("round3-provenance", "one nodule listed twice, content re-recorded: info --verify (27.2)", "1")
def _(lab: Lab) -> Outcome:
    return _recorded_boxes(
        lab, lambda table: {name: np.concatenate([values, values[:1]]) for name, values in table.items()}, "lie in more than one box"
    )
