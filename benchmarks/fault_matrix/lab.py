"""The fault matrix's lab: what a row reports (`Outcome`, `Row`), the row registry (`fault`, `FAULTS`), the
temporary folder with the pristine phantom and stores (`Lab`), the checks for lost or mixed data, and `run_row`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600
UID_PREFIX = "1.3.6.1.4.1.14519.5.2.1.6279.6001."

# Run lungforge with Zarr chunk writes raising OSError(CODE): every one after the first AFTER,
# once the file ONCE exists ("-": from the start).
INJECT = """
import errno, os, sys
import zarr.storage._local as local
code, after, once, put, count = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], local._put, [0]
def failing_put(path, value, exclusive=False):
    if f"{os.sep}c{os.sep}" in str(path) and (once == "-" or os.path.exists(once)):
        count[0] += 1
        if count[0] > after:
            raise OSError(code, os.strerror(code), str(path))
    return put(path, value, exclusive=exclusive)
local._put = failing_put
sys.argv = ["lungforge", *sys.argv[4:]]
from lungforge.cli.main import run
run()
"""


@dataclass
class Call:
    """One finished `lungforge` call."""

    code: int
    stdout: str
    stderr: str


@dataclass
class Row:
    """One fault and what happened."""

    group: str
    fault: str
    expected: str
    code: str
    message: str
    traceback: bool
    lost: bool
    ok: bool
    note: str = ""


@dataclass
class Outcome:
    """What a fault function reports: the decisive call(s), and whether data were lost."""

    code: str
    stderr: str
    lost: bool
    note: str = ""
    extra_ok: bool = True


FaultFn = Callable[["Lab"], Outcome]
FAULTS: list[tuple[str, str, str, FaultFn]] = []


def fault(group: str, name: str, expected: str) -> Callable[[FaultFn], FaultFn]:
    """Register a fault row; `expected` is the exit code (or codes, e.g. "0/1") it should give."""

    def register(fn: FaultFn) -> FaultFn:
        FAULTS.append((group, name, expected, fn))
        return fn

    return register


class Lab:
    """The temporary folder with the pristine phantom and stores, and helpers to run lungforge."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
            "LUNGFORGE_HOME": str(root / "home"),
            "OMP_NUM_THREADS": "1",
            "COLUMNS": "200",
        }
        self.luna_path = root / "ph"
        self.real_path = root / "real.zarr"
        self.synth_path = root / "synth.zarr"
        self._n = 0

    # -- the pristine inputs, made on first use (kept from an earlier run with --keep) ------------
    @property
    def luna(self) -> Path:
        """A 6-scan, 64-px phantom."""
        if not (self.luna_path / "annotations.csv").is_file():
            self._setup("phantom", self.luna_path, "--scans", "6", "--size", "64", "--overwrite")
        return self.luna_path

    @property
    def real(self) -> Path:
        """The phantom prepared with 2 test patients."""
        if not store_complete(self.real_path):
            self._setup("prepare", self.luna, "--out", self.real_path, "--test-patients", "2", "--overwrite")
        return self.real_path

    @property
    def synth(self) -> Path:
        """A synthetic store from `real` (the shipped demo SPADE)."""
        if not store_complete(self.synth_path):
            self._setup(*augment_args(self, self.synth_path), "--overwrite")
        return self.synth_path

    def _setup(self, *args: object) -> None:
        call = self.cli(*args)
        if call.code != 0:
            raise SystemExit(f"setup failed: lungforge {' '.join(map(str, args))}\n{call.stderr}")

    # -- running -------------------------------------------------------------------------------
    def cli(self, *args: object, inject: tuple[int, int] | tuple[int, int, Path] | None = None) -> Call:
        """Run `lungforge ARGS`, with chunk writes failing as `inject` = (errno, after[, once]) says."""
        argv = [sys.executable, "-m", "lungforge"]
        if inject:
            argv = [sys.executable, "-c", INJECT, str(inject[0]), str(inject[1]), str(inject[2]) if len(inject) > 2 else "-"]
        proc = subprocess.run([*argv, *map(str, args)], capture_output=True, text=True, env=self.env, timeout=TIMEOUT_S, cwd=self.root)
        return Call(proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: object) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "lungforge", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.root,
        )

    def kill_when(self, condition: Callable[[], bool], *args: object) -> tuple[bool, Call]:
        """Start `lungforge ARGS`, SIGKILL it as soon as `condition()` holds; (killed?, its call)."""
        proc = self.start(*args)
        deadline = time.monotonic() + TIMEOUT_S
        killed = False
        while proc.poll() is None and time.monotonic() < deadline:
            if condition():
                proc.send_signal(signal.SIGKILL)
                killed = True
                break
            time.sleep(0.01)
        out, err = proc.communicate()
        return killed and proc.returncode == -signal.SIGKILL, Call(proc.returncode, out, err)

    # -- fixtures ------------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """A fresh path in the lab (not created)."""
        self._n += 1
        while any(self.root.glob(f"{self._n:03d}-*")):  # a kept folder from an earlier run
            self._n += 1
        return self.root / f"{self._n:03d}-{name}"

    def luna_copy(self) -> Path:
        """A private copy of the phantom LUNA16 folder to damage."""
        return Path(shutil.copytree(self.luna, self.path("luna16")))

    def store_copy(self, store: Path) -> Path:
        return Path(shutil.copytree(store, self.path(store.name)))

    def scans(self, luna: Path) -> list[Path]:
        """The scans' headers, sorted by (subset, uid) as prepare orders them."""
        return sorted(luna.glob("subset*/*.mhd"), key=lambda p: (p.parent.name, p.stem))

    def victim(self, luna: Path) -> Path:
        """The scan damaged by header and data faults: the third one (not the first)."""
        return self.scans(luna)[2]


# -- checks ------------------------------------------------------------------------------------
def store_complete(store: Path) -> bool:
    """True for a finished store (its root zarr.json says complete)."""
    try:
        return bool(json.loads((store / "zarr.json").read_text())["attributes"].get("complete"))
    except (OSError, ValueError, KeyError):
        return False


def digest(path: Path) -> str:
    """SHA-256 over a folder's relative file names and bytes (lock files, empty by design, aside)."""
    h = hashlib.sha256()
    for file in sorted(p for p in Path(path).rglob("*") if p.is_file() and p.suffix != ".lock"):
        h.update(str(file.relative_to(path)).encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def store_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """Every array of a finished store, or None when it cannot be opened as one."""
    from lungforge.core.errors import LungforgeError
    from lungforge.store import open_store

    try:
        store = open_store(path)
        out = {"image": store.image[...], "label": store.label[...], "uids": np.asarray(store.series_uids)}
        for name in (
            "series",
            "z",
            "spacing",
            "split",
            "fold",
            "has_nodule",
            *(("source", "seed", "verified") if store.kind == "synthetic" else ()),
        ):
            out[name] = store.meta(name)
        out.update({f"nodules/{k}": v for k, v in store.nodules().items()})
        return out
    except (LungforgeError, OSError, KeyError, ValueError):
        return None


def same_store(a: Path, b: Path) -> bool:
    x, y = store_arrays(a), store_arrays(b)
    return x is not None and y is not None and x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def series_of(path: Path) -> list[str] | None:
    arrays = store_arrays(path)
    return None if arrays is None else [str(u) for u in arrays["uids"]]


def traceback_in(text: str) -> bool:
    return "Traceback (most recent call last)" in text


def first_line(text: str) -> str:
    """The first line of a message: an `error:` line if any, else the first non-progress text."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip().strip("│╭╮╰╯─ ").strip()
        if not line or line == "Error" or "━" in raw or line.startswith(("Usage:", "Try '")):
            continue
        lines.append(line)
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or [""])[0]


def prepare_scan_fault(lab: Lab, damage: Callable[[Path, Path], None], victim_index: int = 2) -> Outcome:
    """Damage one scan of a phantom copy and prepare it; lost = the damaged scan was stored, or a
    good scan is missing from the store."""
    luna = lab.luna_copy()
    victim = lab.scans(luna)[victim_index]
    damage(luna, victim)
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    stored = series_of(out) or []
    good = [p.stem for p in lab.scans(luna) if p != victim]
    lost = victim.stem in stored or any(uid not in stored for uid in good)
    return Outcome(str(call.code), call.stderr, lost if call.code in (0, 3) else False)


def set_field(mhd: Path, key: str, value: str | None) -> None:
    """Set (or with None drop) one `key = value` line of a MetaImage header."""
    lines = mhd.read_text().splitlines()
    if value is None:
        lines = [line for line in lines if line.split("=")[0].strip() != key]
    elif any(line.split("=")[0].strip() == key for line in lines):
        lines = [f"{key} = {value}" if line.split("=")[0].strip() == key else line for line in lines]
    else:
        lines.insert(len(lines) - 1, f"{key} = {value}")
    mhd.write_text("\n".join(lines) + "\n")


def header_fault(group: str, name: str, key: str, value: str | None, expected: str = "3") -> None:
    fault(group, name, expected)(lambda lab: prepare_scan_fault(lab, lambda luna, v: set_field(v, key, value)))


def unchanged(lab: Lab, store: Path, *args: object) -> Outcome:
    """Run a command against a copy of `store` (ARGS may hold the placeholder "STORE"); lost = it changed."""
    copy = lab.store_copy(store)
    before = digest(copy)
    call = lab.cli(*[copy if a == "STORE" else a for a in args])
    return Outcome(str(call.code), call.stderr, digest(copy) != before)


def usage(lab: Lab, *args: object) -> Outcome:
    call = lab.cli(*args)
    return Outcome(str(call.code), call.stderr, False)


def augment_args(lab: Lab, out: Path) -> list[object]:
    """`lungforge augment` of `lab.real` into OUT with the shipped demo SPADE: 4 nodules, 2 nodule-free slices."""
    return [
        "augment",
        "--data",
        lab.real,
        "--weights",
        "demo-spade-tiny",
        "--out",
        out,
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
    ]


# -- running one row --------------------------------------------------------------------------------
def code_matches(code: str, expected: str) -> bool:
    """True when exit code(s) `code` are the `expected` ones ("0/1": either; "1 then 0": exactly that)."""
    return code in expected.split("/") or code == expected


def run_row(lab: Lab, group: str, name: str, expected: str, fn: FaultFn) -> Row:
    """Run one fault in `lab`; a row that raises is reported as failed, and `lab.real` changing counts as data lost."""
    real_before = digest(lab.real_path) if store_complete(lab.real_path) else None
    try:
        outcome = fn(lab)
    except Exception as exc:  # a broken row is reported, not fatal to the matrix
        outcome = Outcome("-", f"matrix error: {type(exc).__name__}: {exc}", False, extra_ok=False)
    lost = outcome.lost or (real_before is not None and digest(lab.real_path) != real_before)
    trace = traceback_in(outcome.stderr)
    ok = code_matches(outcome.code, expected)
    # shorter for the table: paths relative to the lab, LUNA16's common uid prefix elided
    message = first_line(outcome.stderr).replace(f"{lab.root}{os.sep}", "").replace(UID_PREFIX, "…")
    return Row(
        group, name, expected, outcome.code, message[:160], trace, lost, ok and not trace and not lost and outcome.extra_ok, outcome.note
    )
