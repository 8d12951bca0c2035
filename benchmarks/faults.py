"""The fault matrix (issue 13): hostile inputs, options, stores, kills and races, as a user meets them.

    python benchmarks/faults.py                 # table on stderr-free stdout, totals last
    python benchmarks/faults.py --json          # one JSON object: rows and totals
    python benchmarks/faults.py --only resume   # rows whose group or name contains "resume"

Builds a 6-scan, 64-px phantom, a real store and a synthetic store (the shipped demo SPADE) in a
temporary folder, each when a row first needs it, and runs every fault as a `lungforge` subprocess (full disks and read-only
folders are simulated by making Zarr chunk writes raise the OSError). Per row: the exit code and
the expected one, the first line of the message, whether a traceback was printed, and whether
data were lost or mixed (a store valid before is no longer byte-identical, a resumed store is not
array-identical to an undisturbed run, a damaged scan was stored, or good scans went missing).
A row passes when the exit code is the expected one, with no traceback and no data lost.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
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
        if not _complete(self.real_path):
            self._setup("prepare", self.luna, "--out", self.real_path, "--test-patients", "2", "--overwrite")
        return self.real_path

    @property
    def synth(self) -> Path:
        """A synthetic store from `real` (the shipped demo SPADE)."""
        if not _complete(self.synth_path):
            self._setup(*_augment_args(self, self.synth_path), "--overwrite")
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
def _complete(store: Path) -> bool:
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


# -- bad headers (prepare skips the scan, keeps the others, exits 3) -----------------------------
header_fault("header", "NDims missing", "NDims", None)
header_fault("header", "NDims = 2", "NDims", "2")
header_fault("header", "DimSize not integer", "DimSize", "64 64 x")
header_fault("header", "DimSize zero", "DimSize", "0 64 32")
header_fault("header", "ElementType missing", "ElementType", None)
header_fault("header", "ElementType unknown", "ElementType", "MET_FOO")
header_fault("header", "ElementType MET_UCHAR on int16 data (item 7)", "ElementType", "MET_UCHAR")
header_fault("header", "ElementNumberOfChannels = 3", "ElementNumberOfChannels", "3")
header_fault("header", "ElementDataFile missing", "ElementDataFile", None)
header_fault("header", "ElementDataFile = LIST", "ElementDataFile", "LIST")
header_fault("header", "HeaderSize beyond the file", "HeaderSize", "100000000")
header_fault("header", "CompressedData on raw data", "CompressedData", "True")
header_fault("header", "ElementSpacing zero", "ElementSpacing", "0 0 0")
header_fault("header", "TransformMatrix singular", "TransformMatrix", "0 0 0 0 0 0 0 0 0")


@fault("header", "not a MetaImage header (text)", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: v.write_text("this is not a header\n"))


@fault("header", "binary junk header", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: v.write_bytes(os.urandom(256)))


@fault("header", "ElementDataFile ../../x.bin (item 6)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        shutil.copy(v.with_suffix(".raw"), luna.parent / "x.bin")
        set_field(v, "ElementDataFile", "../../x.bin")

    return prepare_scan_fault(lab, damage)


@fault("header", "ElementDataFile absolute path (item 6)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        elsewhere = shutil.copy(v.with_suffix(".raw"), lab.path("elsewhere.raw"))
        set_field(v, "ElementDataFile", str(elsewhere))

    return prepare_scan_fault(lab, damage)


@fault("header", "ElementDataFile = another scan's .raw (item 6)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        other = lab.scans(luna)[0]
        shutil.copy(other.with_suffix(".raw"), v.parent / f"{other.stem}.raw")
        set_field(v, "ElementDataFile", f"{other.stem}.raw")

    return prepare_scan_fault(lab, damage)


@fault("header", "odd in-plane size in subset0 (item 8)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:  # same bytes, 32 x 128 instead of 64 x 64
        v.write_text(v.read_text().replace("DimSize = 64 64 ", "DimSize = 32 128 "))

    return prepare_scan_fault(lab, damage, victim_index=0)


# -- data files ---------------------------------------------------------------------------------
@fault("data", ".raw truncated", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: v.with_suffix(".raw").write_bytes(v.with_suffix(".raw").read_bytes()[:1000]))


@fault("data", ".raw missing", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: v.with_suffix(".raw").unlink())


@fault("data", ".raw with extra bytes (item 7)", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: open(v.with_suffix(".raw"), "ab").write(b"\0" * 4096))


@fault("data", "seg .zraw truncated", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        z = luna / "seg-lungs-LUNA16" / f"{v.stem}.zraw"
        z.write_bytes(z.read_bytes()[:200])

    return prepare_scan_fault(lab, damage)


@fault("data", "seg .zraw with stray bytes (item 7)", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: open(luna / "seg-lungs-LUNA16" / f"{v.stem}.zraw", "ab").write(b"\0" * 64))


@fault("data", "seg mask missing (--lungs seg)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        for f in (luna / "seg-lungs-LUNA16").glob(f"{v.stem}.*"):
            f.unlink()

    return prepare_scan_fault(lab, damage)


@fault("data", "NaN voxels (item 9)", "3")
def _(lab: Lab) -> Outcome:
    def damage(luna: Path, v: Path) -> None:
        import SimpleITK as sitk

        image = sitk.Cast(sitk.ReadImage(str(v)), sitk.sitkFloat32)
        array = sitk.GetArrayFromImage(image)
        array[array.shape[0] // 2, 5, 5] = np.nan
        bad = sitk.GetImageFromArray(array)
        bad.CopyInformation(image)
        sitk.WriteImage(bad, str(v))

    return prepare_scan_fault(lab, damage)


@fault("data", "series uid in two subsets (item 9)", "1")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    v = lab.victim(luna)
    (luna / "subset9").mkdir(exist_ok=True)
    for f in v.parent.glob(f"{v.stem}.*"):
        shutil.copy(f, luna / "subset9")
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out)
    return Outcome(str(call.code), call.stderr, (series_of(out) or []).count(v.stem) > 1)


@fault("data", "LUNA16 folder missing", "1")
def _(lab: Lab) -> Outcome:
    return usage(lab, "prepare", lab.path("nowhere"), "--out", lab.path("real.zarr"))


@fault("data", "no scans in the folder", "1")
def _(lab: Lab) -> Outcome:
    empty = lab.path("empty")
    (empty / "subset0").mkdir(parents=True)
    return usage(lab, "prepare", empty, "--out", lab.path("real.zarr"))


@fault("data", "wrong --seg-values (no lung anywhere)", "1/3")
def _(lab: Lab) -> Outcome:
    call = lab.cli("prepare", lab.luna, "--out", lab.path("real.zarr"), "--seg-values", "left=7,right=8,trachea=9")
    return Outcome(str(call.code), call.stderr, False)


# -- annotations --------------------------------------------------------------------------------
def annotation_fault(lab: Lab, edit: Callable[[Path, str], None]) -> Outcome:
    luna = lab.luna_copy()
    edit(luna / "annotations.csv", lab.victim(luna).stem)
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    return Outcome(str(call.code), call.stderr, False)


def append_row(row: str) -> Callable[[Path, str], None]:
    return lambda csv, uid: open(csv, "a").write(row.replace("UID", uid) + "\n")


for _name, _row in [
    ("diameter 5000 mm (item 9)", "UID,0,0,0,5000"),
    ("negative diameter", "UID,0,0,0,-4"),
    ("NaN coordinate", "UID,nan,0,0,6"),
    ("non-numeric coordinate", "UID,abc,0,0,6"),
    ("row with 3 fields", "UID,0,0"),
]:
    fault("annotations", _name, "1")(lambda lab, row=_row: annotation_fault(lab, append_row(row)))


@fault("annotations", "nodule outside the volume", "3")
def _(lab: Lab) -> Outcome:
    return prepare_scan_fault(lab, lambda luna, v: append_row("UID,5000,5000,5000,8")(luna / "annotations.csv", v.stem))


@fault("annotations", "annotations of absent series", "0")
def _(lab: Lab) -> Outcome:
    return annotation_fault(lab, append_row("1.2.3.absent,0,0,0,8"))


@fault("annotations", "annotations.csv missing", "1")
def _(lab: Lab) -> Outcome:
    return annotation_fault(lab, lambda csv, uid: csv.unlink())


@fault("annotations", "wrong header columns", "1")
def _(lab: Lab) -> Outcome:
    return annotation_fault(lab, lambda csv, uid: csv.write_text("uid,x,y,z,d\n" + "".join(csv.read_text().splitlines(True)[1:])))


@fault("annotations", "not UTF-8", "1")
def _(lab: Lab) -> Outcome:
    return annotation_fault(lab, lambda csv, uid: csv.write_bytes(b"\xff\xfe\x00garbage"))


# -- options (usage errors, exit 2, before anything is written) -----------------------------------
def _prepare_usage(*opts: str) -> FaultFn:
    return lambda lab: usage(lab, "prepare", lab.luna, "--out", lab.path("real.zarr"), *opts)


def _augment_usage(*opts: str) -> FaultFn:
    return lambda lab: usage(
        lab,
        "augment",
        "--data",
        lab.real,
        "--weights",
        "demo-spade-tiny",
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        *opts,
    )


for _name, _fn in [
    ("--seg-values left=3,right=3 (item 9)", _prepare_usage("--seg-values", "left=3,right=3")),
    ("--seg-values garbage", _prepare_usage("--seg-values", "lung")),
    ("--lungs xyz", _prepare_usage("--lungs", "xyz")),
    ("--nodule-slices xyz", _prepare_usage("--nodule-slices", "xyz")),
    ("--keep-nodule-free 1.5", _prepare_usage("--keep-nodule-free", "1.5")),
    ("--keep-nodule-free nan (item 11)", _prepare_usage("--keep-nodule-free", "nan")),
    ("--test-patients nan (item 11)", _prepare_usage("--test-patients", "nan")),
    ("--resume with --overwrite", _prepare_usage("--resume", "--overwrite")),
    ("augment --guidance inf (item 11)", _augment_usage("--guidance", "inf")),
    ("augment --min-contrast nan (item 11)", _augment_usage("--min-contrast", "nan")),
    ("augment --device tpu (item 13)", _augment_usage("--device", "tpu")),
    ("augment --diameter 30:3", _augment_usage("--diameter", "30:3")),
    ("augment --placement nowhere", _augment_usage("--placement", "nowhere")),
    ("augment --sampler euler", _augment_usage("--sampler", "euler")),
    (
        "augment nothing to generate",
        lambda lab: usage(lab, "augment", "--data", lab.real, "--weights", "demo-spade-tiny", "--out", lab.path("s.zarr")),
    ),
    ("train sdm --lr nan (item 11)", lambda lab: usage(lab, "train", "sdm", "--data", lab.real, "--out", lab.path("run"), "--lr", "nan")),
    (
        "train spade --device tpu (item 13)",
        lambda lab: usage(lab, "train", "spade", "--data", lab.real, "--out", lab.path("run"), "--device", "tpu"),
    ),
    ("bench detect --synthetic =x (item 13)", lambda lab: usage(lab, "bench", "detect", "--real", lab.real, "--synthetic", "=x")),
    (
        "bench localize --nodule-free-ratio inf (item 11)",
        lambda lab: usage(lab, "bench", "localize", "--real", lab.real, "--nodule-free-ratio", "inf"),
    ),
    (
        "bench fid --device tpu (item 13)",
        lambda lab: usage(lab, "bench", "fid", "--real", lab.real, "--synthetic", lab.synth, "--device", "tpu"),
    ),
]:
    fault("options", _name, "2")(_fn)


@fault("options", "--test-patients = all scans", "1")
def _(lab: Lab) -> Outcome:
    return usage(lab, "prepare", lab.luna, "--out", lab.path("real.zarr"), "--test-patients", "6")


@fault("options", "train --preset huge", "1/2")
def _(lab: Lab) -> Outcome:
    return usage(lab, "train", "sdm", "--data", lab.real, "--out", lab.path("run"), "--preset", "huge", "--device", "cpu")


@fault("messages", "weights name regex shown intact (item 13)", "1")
def _(lab: Lab) -> Outcome:
    from lungforge.models.catalog import NAME_PATTERN

    call = lab.cli("weights", "import", ROOT / "weights" / "demo-spade-tiny.safetensors", "--name", "BAD")
    return Outcome(
        str(call.code),
        call.stderr,
        False,
        extra_ok=NAME_PATTERN.pattern in call.stderr,
        note="regex intact" if NAME_PATTERN.pattern in call.stderr else "regex mangled",
    )


@fault("messages", "pickled Inception weights: one line (item 13)", "1")
def _(lab: Lab) -> Outcome:
    evil = lab.path("pt_inception.pth")
    subprocess.run(
        [sys.executable, "-c", f"import torch, collections\nclass X: pass\ntorch.save({{'a': X()}}, {str(evil)!r})"],
        check=True,
        env=lab.env,
    )
    call = lab.cli("bench", "fid", "--real", lab.real, "--synthetic", lab.synth, "--inception-weights", evil, "--device", "cpu")
    lines = [line for line in call.stderr.splitlines() if line.strip()]
    return Outcome(str(call.code), call.stderr, False, extra_ok=len(lines) == 1, note=f"{len(lines)} stderr lines")


# -- stores -------------------------------------------------------------------------------------
@fault("store", "info on a missing store", "1")
def _(lab: Lab) -> Outcome:
    return usage(lab, "info", lab.path("none.zarr"))


@fault("store", "info on a folder that is not a store", "1")
def _(lab: Lab) -> Outcome:
    folder = lab.path("folder")
    folder.mkdir()
    return usage(lab, "info", folder)


@fault("store", "corrupt zarr.json", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    (copy / "zarr.json").write_text("{not json")
    return usage(lab, "info", copy)


@fault("store", "deleted shard: info --verify (item 4)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    next((copy / "image").rglob("c/*/*/*")).unlink()
    return usage(lab, "info", copy, "--verify")


@fault("store", "4 bytes overwritten: info --verify (item 4)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    shard = next((copy / "image").rglob("c/*/*/*"))
    data = bytearray(shard.read_bytes())
    data[100:104] = b"\xde\xad\xbe\xef"
    shard.write_bytes(bytes(data))
    return usage(lab, "info", copy, "--verify")


@fault("store", "deleted shard read by bench (item 4)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    next((copy / "image").rglob("c/*/*/*")).unlink()
    return usage(lab, "bench", "fid", "--real", copy, "--synthetic", lab.synth, "--features", "random", "--device", "cpu")


@fault("store", "augment --data a synthetic store", "1")
def _(lab: Lab) -> Outcome:
    return unchanged(
        lab,
        lab.synth,
        "augment",
        "--data",
        "STORE",
        "--weights",
        "demo-spade-tiny",
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
    )


@fault("store", "augment --out = --data --overwrite (item 1)", "1/2")
def _(lab: Lab) -> Outcome:
    return unchanged(
        lab,
        lab.real,
        "augment",
        "--data",
        "STORE",
        "--weights",
        "demo-spade-tiny",
        "--out",
        "STORE",
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--overwrite",
        "--device",
        "cpu",
    )


@fault("store", "augment --out inside --data (item 1)", "1/2")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    before = digest(copy)
    call = lab.cli(
        "augment",
        "--data",
        copy,
        "--weights",
        "demo-spade-tiny",
        "--out",
        copy / "inner.zarr",
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
    )
    stray = sorted(p.name for p in copy.rglob("*.lock"))
    return Outcome(
        str(call.code), call.stderr, digest(copy) != before, note=f"lock file left inside --data: {', '.join(stray)}" if stray else ""
    )


@fault("store", "prepare --out an unrelated folder", "1")
def _(lab: Lab) -> Outcome:
    folder = lab.path("mine")
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    call = lab.cli("prepare", lab.luna, "--out", folder, "--overwrite")
    return Outcome(str(call.code), call.stderr, not (folder / "thesis.txt").is_file())


@fault("store", "prepare --out an existing store, no flag", "1")
def _(lab: Lab) -> Outcome:
    return unchanged(lab, lab.real, "prepare", lab.luna, "--out", "STORE", "--test-patients", "2")


@fault("store", "prepare --resume with other options", "1")
def _(lab: Lab) -> Outcome:
    return unchanged(lab, lab.real, "prepare", lab.luna, "--out", "STORE", "--test-patients", "2", "--seed", "1", "--resume")


# -- checkpoints ----------------------------------------------------------------------------------
def _checkpoint_fault(lab: Lab, edit: Callable[[dict], None] | None = None, raw: Callable[[Path], None] | None = None) -> Outcome:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = ROOT / "weights" / "demo-spade-tiny.safetensors"
    bad = lab.path("bad.safetensors")
    with safe_open(str(source), "pt") as fh:
        metadata = fh.metadata()
    if edit is not None:
        config = json.loads(metadata["lungforge_config"])
        edit(config)
        metadata["lungforge_config"] = json.dumps(config)
    save_file(load_file(source), str(bad), metadata=metadata)
    if raw is not None:
        raw(bad)
    out = lab.path("s.zarr")
    call = lab.cli("augment", "--data", lab.real, "--weights", bad, "--out", out, "--nodules", "2", "--shape", "sphere", "--device", "cpu")
    return Outcome(str(call.code), call.stderr, False)


@fault("checkpoint", "negative channel count (item 10)", "1")
def _(lab: Lab) -> Outcome:
    return _checkpoint_fault(lab, edit=lambda c: c["model_config"].update(ngf=-8))


@fault("checkpoint", "other label set", "1")
def _(lab: Lab) -> Outcome:
    return _checkpoint_fault(lab, edit=lambda c: c.update(labels={"0": "background"}))


@fault("checkpoint", "unknown config key", "1")
def _(lab: Lab) -> Outcome:
    return _checkpoint_fault(lab, edit=lambda c: c["model_config"].update(wings=2))


@fault("checkpoint", "truncated .safetensors", "1")
def _(lab: Lab) -> Outcome:
    return _checkpoint_fault(lab, raw=lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]))


@fault("checkpoint", "weights path missing", "1")
def _(lab: Lab) -> Outcome:
    return usage(
        lab,
        "augment",
        "--data",
        lab.real,
        "--weights",
        lab.path("none.safetensors"),
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
    )


@fault("checkpoint", "unknown registry name", "1")
def _(lab: Lab) -> Outcome:
    return usage(
        lab,
        "augment",
        "--data",
        lab.real,
        "--weights",
        "no-such-weights",
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
    )


# -- failed writes (item 10) ----------------------------------------------------------------------
@fault("writes", "prepare: read-only --out", "1")
def _(lab: Lab) -> Outcome:
    call = lab.cli("prepare", lab.luna, "--out", lab.path("ro.zarr"), "--test-patients", "2", inject=(errno.EROFS, 0))
    return Outcome(str(call.code), call.stderr, False)


@fault("writes", "prepare: disk full, then --resume", "1 then 0")
def _(lab: Lab) -> Outcome:
    out = lab.path("full.zarr")
    call = lab.cli("prepare", lab.luna, "--out", out, "--test-patients", "2", inject=(errno.ENOSPC, 4))
    again = lab.cli("prepare", lab.luna, "--out", out, "--test-patients", "2", "--resume")
    return Outcome(f"{call.code} then {again.code}", call.stderr + again.stderr, not same_store(out, lab.real))


@fault("writes", "augment: read-only --out", "1")
def _(lab: Lab) -> Outcome:
    call = lab.cli(
        "augment",
        "--data",
        lab.real,
        "--weights",
        "demo-spade-tiny",
        "--out",
        lab.path("ro.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--device",
        "cpu",
        inject=(errno.EROFS, 0),
    )
    return Outcome(str(call.code), call.stderr, False)


def _augment_args(lab: Lab, out: Path) -> list[object]:
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


@fault("writes", "augment: disk full, then --resume", "1 then 0")
def _(lab: Lab) -> Outcome:
    out = lab.path("full.zarr")
    call = lab.cli(*_augment_args(lab, out), inject=(errno.ENOSPC, 0, out / "parts" / "block-000001.npz"))
    again = lab.cli(*_augment_args(lab, out), "--resume")
    return Outcome(f"{call.code} then {again.code}", call.stderr + again.stderr, not same_store(out, lab.synth))


# -- kill -9 and resume -------------------------------------------------------------------------
@fault("kill", "prepare killed mid-write, --resume", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("killed.zarr")
    killed, _ = lab.kill_when(lambda: (out / "image" / "c").exists(), "prepare", lab.luna, "--out", out, "--test-patients", "2")
    again = lab.cli("prepare", lab.luna, "--out", out, "--test-patients", "2", "--resume")
    return Outcome(str(again.code), again.stderr, not same_store(out, lab.real), note="" if killed else "finished before the kill")


@fault("kill", "prepare --workers 2 killed: workers exit (item 12)", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("killed.zarr")
    proc = lab.start("prepare", lab.luna, "--out", out, "--test-patients", "2", "--workers", "2")
    children: set[int] = set()
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and len(children) < 3:
        children = _descendants(proc.pid)
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 20
    while children & _live_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    left = children & _live_pids()
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    again = lab.cli("prepare", lab.luna, "--out", out, "--test-patients", "2", "--resume")
    note = f"{len(left)} of {len(children)} child processes outlived the parent" if left else f"all {len(children)} child processes exited"
    return Outcome(str(again.code), again.stderr, not same_store(out, lab.real), note=note, extra_ok=not left and len(children) >= 3)


@fault("kill", "augment killed after a block, --resume", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("killed.zarr")
    killed, _ = lab.kill_when(lambda: (out / "parts" / "block-000000.npz").exists(), *_augment_args(lab, out))
    again = lab.cli(*_augment_args(lab, out), "--resume")
    return Outcome(str(again.code), again.stderr, not same_store(out, lab.synth), note="" if killed else "finished before the kill")


def _train_args(out: Path, real: Path) -> list[object]:
    return [
        "train",
        "spade",
        "--data",
        real,
        "--out",
        out,
        "--preset",
        "tiny",
        "--steps",
        "6",
        "--checkpoint-every",
        "2",
        "--batch-size",
        "2",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]


@fault("kill", "train killed after a checkpoint, --resume", "0")
def _(lab: Lab) -> Outcome:
    from safetensors.torch import load_file

    clean, out = lab.path("run-clean"), lab.path("run-killed")
    lab.cli(*_train_args(clean, lab.real))
    killed, _ = lab.kill_when(lambda: (out / "resume.pt").exists(), *_train_args(out, lab.real))
    again = lab.cli(*_train_args(out, lab.real), "--resume")
    try:
        a, b = load_file(clean / "model.safetensors"), load_file(out / "model.safetensors")
        lost = a.keys() != b.keys() or any(not np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    except Exception:  # a missing or unreadable checkpoint is data lost
        lost = True
    return Outcome(str(again.code), again.stderr, lost, note="" if killed else "finished before the kill")


def _bench_args(lab: Lab, out: Path) -> list[object]:
    return [
        "bench",
        "detect",
        "--real",
        lab.real,
        "--synthetic",
        f"S={lab.synth}",
        "--quick",
        "--out",
        out,
        "--device",
        "cpu",
        "--allow-empty-synthetic",
    ]  # the demo SPADE copies nodules a quick fold may not keep: this row is about the kill


def _fold_metrics(out: Path) -> dict[str, dict]:
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"} for p in sorted(out.rglob("*-fold*.json"))}


@fault("kill", "bench killed after a fold, rerun", "0")
def _(lab: Lab) -> Outcome:
    clean, out = lab.path("bench-clean"), lab.path("bench-killed")
    lab.cli(*_bench_args(lab, clean))
    killed, _ = lab.kill_when(lambda: any(out.rglob("A-fold0.json")), *_bench_args(lab, out))
    again = lab.cli(*_bench_args(lab, out))
    return Outcome(
        str(again.code),
        again.stderr,
        _fold_metrics(clean) != _fold_metrics(out) or not _fold_metrics(out),
        note="" if killed else "finished before the kill",
    )


# -- resumes must match their inputs (items 2, 3) --------------------------------------------------
def _big_luna(lab: Lab) -> Path:
    """A 16-scan phantom: more than one shard of slices, so a killed prepare has commit records."""
    luna = lab.path("luna16-big")
    lab.cli("phantom", luna, "--scans", "16", "--size", "64")
    return luna


def _killed_prepare(lab: Lab, luna: Path) -> Path:
    """A prepare of `luna` killed right after its first commit record."""
    out = lab.path("killed.zarr")
    lab.kill_when(lambda: any((out / "parts").glob("*.npz")), "prepare", luna, "--out", out, "--test-patients", "2")
    return out


@fault("resume", "prepare --resume after a scan was added (item 2)", "1")
def _(lab: Lab) -> Outcome:
    luna = _big_luna(lab)
    out = _killed_prepare(lab, luna)
    v = lab.scans(luna)[0]
    for f in v.parent.glob(f"{v.stem}.*"):
        shutil.copy(f, v.parent / f.name.replace(v.stem, "1.0.0.first"))
    seg = luna / "seg-lungs-LUNA16"
    for f in seg.glob(f"{v.stem}.*"):
        shutil.copy(f, seg / f.name.replace(v.stem, "1.0.0.first"))
    for mhd in (v.parent / "1.0.0.first.mhd", seg / "1.0.0.first.mhd"):
        set_field(mhd, "ElementDataFile", mhd.with_suffix(".raw" if mhd.parent == v.parent else ".zraw").name)
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2", "--resume")
    uids = series_of(out)
    mixed = call.code == 0 and (uids is None or len(set(uids)) != len(uids) or "1.0.0.first" not in uids)
    return Outcome(str(call.code), call.stderr, mixed)


@fault("resume", "prepare --resume after a scan was removed (item 2)", "1")
def _(lab: Lab) -> Outcome:
    luna = _big_luna(lab)
    out = _killed_prepare(lab, luna)
    v = lab.scans(luna)[-1]
    for f in v.parent.glob(f"{v.stem}.*"):
        f.unlink()
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2", "--resume")
    return Outcome(str(call.code), call.stderr, call.code == 0)


def _killed_augment(lab: Lab) -> Path:
    out = lab.path("killed.zarr")
    lab.kill_when(lambda: (out / "parts" / "block-000000.npz").exists(), *_augment_args(lab, out))
    return out


@fault("resume", "augment --resume with other --weights (item 3)", "1")
def _(lab: Lab) -> Outcome:
    out = _killed_augment(lab)
    args = [a if a != "demo-spade-tiny" else ROOT / "weights" / "demo-sdm-tiny.safetensors" for a in _augment_args(lab, out)]
    call = lab.cli(*args, "--resume")
    return Outcome(str(call.code), call.stderr, call.code == 0)


@fault("resume", "augment --resume with other --data (item 3)", "1")
def _(lab: Lab) -> Outcome:
    out = _killed_augment(lab)
    other = lab.path("other.zarr")
    lab.cli("prepare", lab.luna, "--out", other, "--test-patients", "2", "--seed", "5")
    args = [a if a != lab.real else other for a in _augment_args(lab, out)]
    call = lab.cli(*args, "--resume")
    return Outcome(str(call.code), call.stderr, call.code == 0)


# -- concurrent writers (item 5) -------------------------------------------------------------------
def _together(lab: Lab, *argvs: list[object]) -> list[Call]:
    procs = [lab.start(*argv) for argv in argvs]
    streams = [p.communicate() for p in procs]
    return [Call(p.returncode, out, err) for p, (out, err) in zip(procs, streams)]


@fault("concurrent", "two weights import of one name (item 5)", "0/1")
def _(lab: Lab) -> Outcome:
    calls = _together(
        lab, *[["weights", "import", ROOT / "weights" / f"demo-{k}-tiny.safetensors", "--name", "race"] for k in ("sdm", "spade")]
    )
    verify = lab.cli("weights", "verify", "race")
    codes = "/".join(str(c) for c in sorted(c.code for c in calls))
    return Outcome(codes, "".join(c.stderr for c in calls), verify.code != 0, note=f"verify exit {verify.code}")


@fault("concurrent", "two augment into one --out (item 5)", "0/1")
def _(lab: Lab) -> Outcome:
    out = lab.path("race.zarr")
    calls = _together(lab, _augment_args(lab, out), _augment_args(lab, out))
    codes = "/".join(str(c) for c in sorted(c.code for c in calls))
    return Outcome(codes, "".join(c.stderr for c in calls), not same_store(out, lab.synth))


@fault("concurrent", "two prepare into one --out (item 5)", "0/1")
def _(lab: Lab) -> Outcome:
    out = lab.path("race.zarr")
    args = ["prepare", lab.luna, "--out", out, "--test-patients", "2"]
    calls = _together(lab, args, args)
    codes = "/".join(str(c) for c in sorted(c.code for c in calls))
    return Outcome(codes, "".join(c.stderr for c in calls), not same_store(out, lab.real))


# -- process helpers ------------------------------------------------------------------------------
def _parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state != "Z":
            out[int(entry.name)] = int(ppid)
    return out


def _live_pids() -> set[int]:
    return set(_parents())


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


# --- issue 19: prepare inputs that disagree, one display orientation ---
header_fault("prepare-agree", "ElementType MET_USHORT on int16 data (19.3)", "ElementType", "MET_USHORT")
header_fault("prepare-agree", "BinaryDataByteOrderMSB = True on LE data (19.3)", "BinaryDataByteOrderMSB", "True")


def seg_header_fault(key: str, value: Callable[[str], str]) -> FaultFn:
    """Change one field of the victim's seg-mask header (VALUE maps the old value to the new)."""

    def damage(luna: Path, v: Path) -> None:
        seg = luna / "seg-lungs-LUNA16" / f"{v.stem}.mhd"
        old = next(line.split("=", 1)[1].strip() for line in seg.read_text().splitlines() if line.split("=")[0].strip() == key)
        set_field(seg, key, value(old))

    return lambda lab: prepare_scan_fault(lab, damage)


for _name, _key, _value in [
    ("seg origin 20 mm off its scan's (19.3)", "Offset", lambda old: " ".join(str(float(v) + 20) for v in old.split())),
    ("seg spacing differs from its scan's (19.3)", "ElementSpacing", lambda old: " ".join(str(float(v) * 1.5) for v in old.split())),
    (
        "seg mirrored: direction differs (19.3)",
        "TransformMatrix",
        lambda old: " ".join(str(-float(v) if i == 0 else float(v)) for i, v in enumerate(old.split())),
    ),
]:
    fault("prepare-agree", _name, "3")(seg_header_fault(_key, _value))


@fault("prepare-agree", "two series share one .raw (symlink) (19.3)", "3")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    first, victim = lab.scans(luna)[0], lab.victim(luna)
    victim.write_text(first.read_text().replace(f"{first.stem}.raw", f"{victim.stem}.raw"))
    victim.with_suffix(".raw").unlink()
    victim.with_suffix(".raw").symlink_to(first.with_suffix(".raw"))
    seg = luna / "seg-lungs-LUNA16"
    (seg / f"{victim.stem}.mhd").write_text((seg / f"{first.stem}.mhd").read_text().replace(first.stem, victim.stem))
    shutil.copy(seg / f"{first.stem}.zraw", seg / f"{victim.stem}.zraw")
    csv = luna / "annotations.csv"  # the victim's own nodules lie elsewhere in the copied volume
    csv.write_text("".join(line for line in csv.read_text().splitlines(True) if not line.startswith(victim.stem)))
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    stored = series_of(out) or []
    others = [p.stem for p in lab.scans(luna) if p not in (first, victim)]
    lost = first.stem in stored or victim.stem in stored or any(u not in stored for u in others)
    named = first.stem in call.stderr and victim.stem in call.stderr
    return Outcome(str(call.code), call.stderr, lost if call.code in (0, 3) else False, "" if named else "does not name both series", named)


@fault("prepare-agree", "every annotation row twice (19.3)", "0")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    csv = luna / "annotations.csv"
    header, *rows = csv.read_text().splitlines()
    csv.write_text("\n".join([header, *rows, *rows]) + "\n")
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2", "--json")
    arrays, pristine = store_arrays(out), store_arrays(lab.real)
    same = arrays is not None and pristine is not None and arrays["nodules/slice"].size == pristine["nodules/slice"].size
    said = call.code == 0 and len(json.loads(call.stdout).get("duplicate_annotations", [])) == len(rows)
    note = (
        ""
        if same and said
        else f"{0 if arrays is None else arrays['nodules/slice'].size} nodule rows for {len(rows)} nodules"
        + ("" if said else ", duplicates not reported")
    )
    return Outcome(str(call.code), call.stderr, False, note, same and said)


@fault("prepare-agree", "a scan in subset10/ (19.3)", "3")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    victim = lab.victim(luna)
    (luna / "subset10").mkdir()
    for f in victim.parent.glob(f"{victim.stem}.*"):
        f.rename(luna / "subset10" / f.name)
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    named = "subset10" in call.stderr and victim.stem in call.stderr
    return Outcome(str(call.code), call.stderr, False, "" if named else "subset10 not named", named)


@fault("prepare-agree", "a scan in Subset4/ (19.3)", "0")
def _(lab: Lab) -> Outcome:
    luna = lab.luna_copy()
    (luna / "subset4").rename(luna / "Subset4")
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    return Outcome(str(call.code), call.stderr, not same_store(out, lab.real))


@fault("prepare-agree", "x/y-flipped scan lands mirrored (19.3)", "0")
def _(lab: Lab) -> Outcome:
    luna = lab.path("ph7")
    made = lab.cli("phantom", luna, "--scans", "7", "--size", "64", "--json")
    flipped = json.loads(made.stdout)["flipped"]
    out = lab.path("real.zarr")
    call = lab.cli("prepare", luna, "--out", out, "--test-patients", "2")
    arrays = store_arrays(out)
    if arrays is None:
        return Outcome(str(call.code), call.stderr, False, "no store", False)
    cols = np.arange(arrays["label"].shape[2])
    left, right = (
        np.where(arrays["label"] == v, cols, 0).sum(axis=(1, 2)) / np.maximum((arrays["label"] == v).sum(axis=(1, 2)), 1) for v in (1, 2)
    )
    both = ((arrays["label"] == 1).any(axis=(1, 2))) & ((arrays["label"] == 2).any(axis=(1, 2)))
    mirrored = int((left[both] < right[both]).sum())
    note = f"{mirrored} of {int(both.sum())} slices have the left lung on the image's left ({len(flipped)} flipped scans)"
    return Outcome(str(call.code), call.stderr, False, note if mirrored else "", mirrored == 0)


# --- issue 19: exports that real tools read (items 5, 8-11) ---
def _coco_files(root: Path) -> dict[str, dict]:
    """Every COCO annotation file of an export (`annotations.json` or `annotations/*.json`), by path."""
    return {
        str(p.relative_to(root)): json.loads(p.read_text())
        for p in [root / "annotations.json", *sorted((root / "annotations").glob("*.json"))]
        if p.is_file()
    }


def _coco_images_missing(root: Path) -> int:
    """Images a COCO export lists that are not on disk (file names relative to images/ or images/<split>/)."""
    missing = 0
    for doc in _coco_files(root).values():
        for image in doc["images"]:
            names = [root / "images" / image["file_name"], root / "images" / image.get("split", "") / image["file_name"]]
            missing += not any(p.is_file() for p in names)
    return missing


@fault("export", "two exports into one --out (19.5)", "0/1")
def _(lab: Lab) -> Outcome:
    out = lab.path("coco")
    # Upsampled to 512 px so that each export runs for seconds and the two overlap.
    calls = _together(lab, *[["export", lab.real, "--format", "coco", "--out", out, "--size", "512"]] * 2)
    codes = "/".join(str(c) for c in sorted(c.code for c in calls))
    missing = _coco_images_missing(out) if out.is_dir() else 0
    return Outcome(codes, "".join(c.stderr for c in calls), missing > 0 or not out.is_dir(), note=f"{missing} listed images missing")


@fault("export", "export --out inside its input store (19.5)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    before = digest(copy)
    call = lab.cli("export", copy, "--format", "png", "--out", copy / "image" / "c" / "9")
    return Outcome(str(call.code), call.stderr, digest(copy) != before)


@fault("export", "yolo export of an augment store: train and val (19.8)", "0")
def _(lab: Lab) -> Outcome:
    import yaml

    out = lab.path("yolo")
    call = lab.cli("export", lab.synth, "--format", "yolo", "--out", out)
    data = yaml.safe_load((out / "data.yaml").read_text()) if (out / "data.yaml").is_file() else {}
    usable = all(isinstance(data.get(k), str) and (out / data[k]).is_dir() for k in ("train", "val"))
    return Outcome(str(call.code), call.stderr, call.code == 0 and not usable, note=f"data.yaml keys {sorted(data)}")


def _nnunet_ids(raw: Path) -> list[str]:
    return sorted(p.name[7:10] for p in raw.glob("Dataset*_*") if p.is_dir())


@fault("export", "two nnunet exports into one nnUNet_raw (19.9)", "0 then 0")
def _(lab: Lab) -> Outcome:
    raw = lab.path("nnUNet_raw")
    a = lab.cli("export", lab.real, "--format", "nnunet", "--out", raw, "--dataset-name", "Real")
    b = lab.cli("export", lab.synth, "--format", "nnunet", "--out", raw, "--dataset-name", "Synth")
    ids = _nnunet_ids(raw)
    return Outcome(f"{a.code} then {b.code}", a.stderr + b.stderr, len(ids) != len(set(ids)), note=f"ids {ids}")


@fault("export", "nnunet --dataset-id of another dataset (19.9)", "0 then 1")
def _(lab: Lab) -> Outcome:
    raw = lab.path("nnUNet_raw")
    a = lab.cli("export", lab.real, "--format", "nnunet", "--out", raw, "--dataset-id", "7", "--dataset-name", "Real")
    b = lab.cli("export", lab.synth, "--format", "nnunet", "--out", raw, "--dataset-id", "7", "--dataset-name", "Synth")
    ids = _nnunet_ids(raw)
    return Outcome(f"{a.code} then {b.code}", a.stderr + b.stderr, len(ids) != len(set(ids)), note=f"ids {ids}")


@fault("export", "coco --size 48: boxes fit their masks (19.10)", "0")
def _(lab: Lab) -> Outcome:
    from pycocotools import mask as mask_utils

    out = lab.path("coco48")
    call = lab.cli("export", lab.real, "--format", "coco", "--out", out, "--size", "48")
    ious = []
    for doc in _coco_files(out).values():
        for ann in doc["annotations"]:
            rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
            if ann["area"]:
                ious.append(float(mask_utils.iou([ann["bbox"]], [list(mask_utils.toBbox(rle))], [0])[0][0]))
    low = sum(v < 0.999 for v in ious)
    return Outcome(
        str(call.code), call.stderr, call.code == 0 and (low > 0 or not ious), note=f"{low} of {len(ious)} boxes with IoU < 1 to their mask"
    )


@fault("export", "coco: one annotation file per split (19.11)", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("coco")
    call = lab.cli("export", lab.real, "--format", "coco", "--out", out)
    mixed = [name for name, doc in _coco_files(out).items() if len({image["split"] for image in doc["images"]}) > 1]
    return Outcome(str(call.code), call.stderr, call.code == 0 and bool(mixed), note=f"files {sorted(_coco_files(out))}")


# --- issue 19: small items (13: one-line errors, bounds before anything is made; 14: export disk full, view --out, workers, benchmarks) ---
# Run lungforge with every file opened for writing under a `.partial` folder, after the first
# AFTER, failing its writes with ENOSPC and no file name (as PIL's and json's writes report it).
FULL_DISK = """
import builtins, errno, io, os, sys
real_open, after, count = builtins.open, int(sys.argv[1]), [0]
class Full:
    def __init__(self, f): self._f = f
    def write(self, data): raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    def __getattr__(self, name): return getattr(self._f, name)
    def __enter__(self): return self
    def __exit__(self, *exc): self._f.close()
def full_open(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    if any(c in mode for c in "wax+") and ".partial" in str(file):
        count[0] += 1
        if count[0] > after:
            return Full(f)
    return f
builtins.open = io.open = full_open
sys.argv = ["lungforge", *sys.argv[2:]]
from lungforge.cli.main import run
run()
"""


def _truncated_json(lab: Lab, store: Path, array: str) -> Path:
    """A copy of `store` whose `array/zarr.json` is cut in half."""
    copy = lab.store_copy(store)
    meta = copy / array / "zarr.json"
    meta.write_bytes(meta.read_bytes()[: meta.stat().st_size // 2])
    return copy


for _name, _args in [
    ("info", lambda lab, s: ["info", s]),
    ("info --verify", lambda lab, s: ["info", s, "--verify"]),
    ("augment --data", lambda lab, s: ["augment", "--data", s, "--weights", "paste", "--out", lab.path("s.zarr"), "--nodules", "2"]),
    ("export", lambda lab, s: ["export", s, "--format", "png", "--out", lab.path("png")]),
    ("view", lambda lab, s: ["view", s, "--out", lab.path("v.png")]),
    ("bench fid", lambda lab, s: ["bench", "fid", "--real", s, "--synthetic", lab.synth, "--features", "random", "--device", "cpu"]),
]:
    fault("store", f"truncated image/zarr.json: {_name} (issue 19.13)", "1")(
        lambda lab, args=_args: usage(lab, *args(lab, _truncated_json(lab, lab.real, "image")))
    )


def _nothing_made(lab: Lab, *args: object) -> Outcome:
    """A usage error expected before anything is written: lost = something appeared at an `out` path."""
    outs = [a for a in args if isinstance(a, Path) and not a.exists()]
    call = lab.cli(*args)
    made = [p.name for p in outs if p.exists() or p.with_name(p.name + ".lock").exists()]
    return Outcome(str(call.code), call.stderr, bool(made), note=f"left: {', '.join(made)}" if made else "")


for _name, _fn in [
    (
        "phantom --seed -1 (issue 19.13)",
        lambda lab: _nothing_made(lab, "phantom", lab.path("ph"), "--scans", "2", "--size", "32", "--seed", "-1"),
    ),
    ("prepare --seed -1 (issue 19.13)", lambda lab: _nothing_made(lab, "prepare", lab.luna, "--out", lab.path("r.zarr"), "--seed", "-1")),
    (
        "augment --seed -1 (issue 19.13)",
        lambda lab: _nothing_made(
            lab,
            "augment",
            "--data",
            lab.real,
            "--weights",
            "mislabeled",
            "--shape",
            "sphere",
            "--out",
            lab.path("s.zarr"),
            "--nodules",
            "2",
            "--seed",
            "-1",
        ),
    ),
    (
        "bench detect --seed -1 (issue 19.13)",
        lambda lab: _nothing_made(
            lab, "bench", "detect", "--real", lab.real, "--synthetic", f"S={lab.synth}", "--quick", "--out", lab.path("b"), "--seed", "-1"
        ),
    ),
    (
        "bench fid --seed 2**63 (issue 19.13)",
        lambda lab: _nothing_made(
            lab, "bench", "fid", "--real", lab.real, "--synthetic", lab.synth, "--features", "random", "--seed", str(2**63)
        ),
    ),
    (
        "train sdm --seed -1 (issue 19.13)",
        lambda lab: _nothing_made(lab, "train", "sdm", "--data", lab.real, "--out", lab.path("run"), "--seed", "-1"),
    ),
    (
        "augment --nodules 10**12 (issue 19.13)",
        lambda lab: _nothing_made(
            lab,
            "augment",
            "--data",
            lab.real,
            "--weights",
            "demo-spade-tiny",
            "--out",
            lab.path("s.zarr"),
            "--nodules",
            str(10**12),
            "--shape",
            "sphere",
            "--device",
            "cpu",
        ),
    ),
    (
        "augment --size 60000 (issue 19.13)",
        lambda lab: _nothing_made(
            lab,
            "augment",
            "--data",
            lab.real,
            "--weights",
            "mislabeled",
            "--shape",
            "sphere",
            "--out",
            lab.path("s.zarr"),
            "--nodules",
            "2",
            "--size",
            "60000",
        ),
    ),
    (
        "export --size 60000 (issue 19.13)",
        lambda lab: _nothing_made(lab, "export", lab.real, "--format", "png", "--out", lab.path("png"), "--size", "60000"),
    ),
    ("view --tile 100000 (issue 19.13)", lambda lab: _nothing_made(lab, "view", lab.real, "--out", lab.path("v.png"), "--tile", "100000")),
    (
        "view --index 0-99999999999 (issue 19.13)",
        lambda lab: _nothing_made(lab, "view", lab.real, "--out", lab.path("v.png"), "--index", "0-99999999999"),
    ),
]:
    fault("options", _name, "2")(_fn)


@fault("writes", "export: disk full names it, removes .partial (issue 19.14)", "1")
def _(lab: Lab) -> Outcome:
    out = lab.path("png")
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, "5", "export", lab.real, "--format", "png", "--out", out],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    left = sorted(p.name for p in out.parent.glob(f".{out.name}*"))
    named = out.name in first_line(proc.stderr)
    note = ", ".join(([f"left {', '.join(left)}"] if left else []) + ([] if named else ["path not named"]))
    return Outcome(str(proc.returncode), proc.stderr, out.exists(), note=note, extra_ok=not left and named)


@fault("messages", "view --out DIR names DIR, leaves no temp file (issue 19.14)", "1")
def _(lab: Lab) -> Outcome:
    folder = lab.path("sheets")
    folder.mkdir()
    call = lab.cli("view", lab.real, "--out", folder)
    stray = sorted(p.name for p in folder.parent.glob(f".{folder.name}*"))
    named = f"{folder.name}:" in first_line(call.stderr) and ".tmp" not in first_line(call.stderr)
    note = ", ".join(([f"left {', '.join(stray)}"] if stray else []) + ([] if named else ["DIR not named"]))
    return Outcome(str(call.code), call.stderr, False, note=note, extra_ok=not stray and named)


@fault("messages", "export error: no empty line first (issue 19.14)", "1")
def _(lab: Lab) -> Outcome:
    folder = lab.path("mine")
    folder.mkdir()
    (folder / "thesis.txt").write_text("precious")
    call = lab.cli("export", lab.real, "--format", "png", "--out", folder)
    starts = call.stderr.startswith("error:")
    return Outcome(
        str(call.code),
        call.stderr,
        not (folder / "thesis.txt").is_file(),
        note="" if starts else "stderr starts with an empty line",
        extra_ok=starts,
    )


@fault("options", "prepare --workers 64: capped, with a note (issue 19.14)", "0")
def _(lab: Lab) -> Outcome:
    call = lab.cli("prepare", lab.luna, "--out", lab.path("r.zarr"), "--test-patients", "2", "--workers", "64", "--json")
    cap = min(len(os.sched_getaffinity(0)), len(lab.scans(lab.luna)))
    try:
        used = json.loads(call.stdout).get("workers")
    except ValueError:
        used = None
    noted = "--workers 64" in call.stderr
    return Outcome(
        str(call.code),
        call.stderr,
        False,
        note=f"workers used {used} (cap {cap}), note {'shown' if noted else 'missing'}",
        extra_ok=used is not None and used <= cap and noted,
    )


@fault("benchmarks", "benchmarks/augment.py on today's phantom (issue 19.14)", "0")
def _(lab: Lab) -> Outcome:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "augment.py"),
            "--scans",
            "3",
            "--nodules",
            "2",
            "--nodule-free",
            "1",
            "--steps",
            "1",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    return Outcome(str(proc.returncode), proc.stderr, False)


# --- issue 19: stores that change underneath, content fingerprints, box checks, locks, model bounds ---
def _cli_env(lab: Lab, env: dict[str, str], *args: object) -> Call:
    """Run `lungforge ARGS` with `env` added to the lab's environment."""
    proc = subprocess.run(
        [sys.executable, "-m", "lungforge", *map(str, args)],
        capture_output=True,
        text=True,
        env={**lab.env, **env},
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    return Call(proc.returncode, proc.stdout, proc.stderr)


def _rewrite(store: Path, name: str, edit: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite array `name` of `store` through zarr: valid checksums, every chunk kept (what a script would do)."""
    import zarr

    array = zarr.open_array(str(store / name), mode="r+").with_config({"write_empty_chunks": True})
    array[...] = edit(array[...])


def _long_augment(lab: Lab, out: Path, data: Path) -> list[object]:
    """An augment that runs long enough (tens of seconds) for another command to start beside it."""
    return [
        "augment",
        "--data",
        data,
        "--weights",
        "demo-sdm-tiny",
        "--out",
        out,
        "--nodules",
        "12",
        "--shape",
        "sphere",
        "--sampler",
        "ddim",
        "--steps",
        "10",
        "--batch-size",
        "4",
        "--shard-size",
        "4",
        "--device",
        "cpu",
    ]


def _wait_for(proc: subprocess.Popen, condition: Callable[[], bool]) -> bool:
    """Wait until `condition()` holds while `proc` runs; False if `proc` ended first."""
    deadline = time.monotonic() + TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@fault("store", "prepare --overwrite of --data while augment reads it (19.1)", "1")
def _(lab: Lab) -> Outcome:
    data = lab.store_copy(lab.real)
    before = digest(data)
    out = lab.path("s.zarr")
    reader = lab.start(*_long_augment(lab, out, data))
    running = _wait_for(reader, lambda: (out / "parts").is_dir())
    writer = lab.cli("prepare", lab.luna, "--out", data, "--test-patients", "2", "--seed", "5", "--overwrite")
    _, err = reader.communicate()
    mixed = reader.returncode == 0 and digest(data) != before
    note = f"augment exit {reader.returncode}" + ("" if running else "; augment ended before prepare started (inconclusive)")
    return Outcome(str(writer.code), writer.stderr + err, mixed, note=note, extra_ok=running and "is reading this store" in writer.stderr)


@fault("store", "zeroed images of a copied store: info --verify (19.2)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    _rewrite(copy, "image", np.zeros_like)
    return usage(lab, "info", copy, "--verify")


@fault("store", "zeroed real store: bench takes its old synthetic store (19.2)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    _rewrite(copy, "image", np.zeros_like)
    return usage(lab, "bench", "fid", "--real", copy, "--synthetic", lab.synth, "--features", "random", "--device", "cpu")


@fault("store", "bench rerun into one --out after --real changed (19.2)", "0 then 1")
def _(lab: Lab) -> Outcome:
    copy, out = lab.store_copy(lab.real), lab.path("bench")
    args = ["bench", "detect", "--real", copy, "--quick", "--folds", "2", "--out", out, "--device", "cpu"]
    first = lab.cli(*args)
    folds = _fold_metrics(out)
    _rewrite(copy, "image", np.zeros_like)
    again = lab.cli(*args)
    cached = again.code == 0 and _fold_metrics(out) == folds
    return Outcome(
        f"{first.code} then {again.code}", first.stderr + again.stderr, cached, note="old folds returned for new data" if cached else ""
    )


@fault("store", "image shards from another store of the same size: info --verify (19.4)", "1")
def _(lab: Lab) -> Outcome:
    other = lab.path("other.zarr")  # same scans, another --seed: other nodule-free slices, same count
    lab.cli("prepare", lab.luna, "--out", other, "--test-patients", "2", "--seed", "5")
    copy = lab.store_copy(lab.real)
    shutil.rmtree(copy / "image" / "c")
    shutil.copytree(other / "image" / "c", copy / "image" / "c")
    return usage(lab, "info", copy, "--verify")


@fault("store", "boxes moved off their nodules: info --verify (19.4)", "1")
def _(lab: Lab) -> Outcome:
    copy = lab.store_copy(lab.real)
    _rewrite(copy, "nodules/bbox", lambda b: np.where(np.arange(len(b))[:, None] % 3 == 0, b + [12, 12, 12, 12], b).astype(b.dtype))
    return usage(lab, "info", copy, "--verify")


@fault("concurrent", "--out alias.zarr --resume beside a run into race.zarr (19.6)", "1")
def _(lab: Lab) -> Outcome:
    race = lab.path("race.zarr")
    alias = race.with_name(race.name.replace("race", "alias"))
    first = lab.start(*_long_augment(lab, race, lab.real))
    running = _wait_for(first, lambda: (race / "parts").is_dir())
    alias.symlink_to(race)
    second = lab.cli(*_long_augment(lab, alias, lab.real), "--resume")
    _, err = first.communicate()
    refused = "is writing this store" in second.stderr
    note = f"first run exit {first.returncode}" + ("" if running else "; it ended before the alias run started (inconclusive)")
    note += "" if refused or second.code != 1 else "; the alias run was not refused by the lock: it failed racing the first"
    return Outcome(str(second.code), second.stderr + err, first.returncode != 0, note=note, extra_ok=running and refused)


def _peak(lab: Lab, *args: object) -> tuple[Call, float, float]:
    """Run `lungforge ARGS`; (its call, seconds, peak resident memory in MB of that process alone)."""
    started = time.perf_counter()
    proc = lab.start(*args)
    _, status, usage_ = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    out, err = proc.stdout.read(), proc.stderr.read()
    return Call(proc.returncode, out, err), seconds, usage_.ru_maxrss / 1024


@fault("checkpoint", "SPADE config ngf=256 (memory bomb): weights import (19.7)", "1")
def _(lab: Lab) -> Outcome:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = ROOT / "weights" / "demo-spade-tiny.safetensors"
    bomb = lab.path("bomb.safetensors")
    with safe_open(str(source), "pt") as fh:
        metadata = fh.metadata()
    config = json.loads(metadata["lungforge_config"])
    config["model_config"]["ngf"] = 256
    metadata["lungforge_config"] = json.dumps(config)
    save_file(load_file(source), str(bomb), metadata=metadata)
    call, seconds, peak_mb = _peak(lab, "weights", "import", bomb, "--name", "bomb")
    return Outcome(str(call.code), call.stderr, False, note=f"{seconds:.0f} s, peak {peak_mb:,.0f} MB", extra_ok=peak_mb < 1500)


def _misregistered(lab: Lab) -> dict[str, str]:
    """A manifest registering the shipped SPADE demo file under kind `sdm`, and a fresh home."""
    folder = lab.path("manifest")
    folder.mkdir()
    source = ROOT / "weights" / "demo-spade-tiny.safetensors"
    shutil.copy(source, folder / source.name)
    sha = hashlib.sha256(source.read_bytes()).hexdigest()
    (folder / "manifest.toml").write_text(
        f'[weights.misreg]\nkind = "sdm"\npreset = "tiny"\npath = "{source.name}"\nsha256 = "{sha}"\nsize = {source.stat().st_size}\n'
    )
    return {"LUNGFORGE_MANIFEST": str(folder / "manifest.toml"), "LUNGFORGE_HOME": str(folder / "home")}


@fault("checkpoint", "SPADE file registered as kind sdm: weights verify (19.7)", "1")
def _(lab: Lab) -> Outcome:
    call = _cli_env(lab, _misregistered(lab), "weights", "verify", "misreg")
    return Outcome(str(call.code), call.stderr + call.stdout, False)


@fault("checkpoint", "SPADE file registered as kind sdm: augment --sampler ddim (19.7)", "1")
def _(lab: Lab) -> Outcome:
    out = lab.path("s.zarr")
    call = _cli_env(
        lab,
        _misregistered(lab),
        "augment",
        "--data",
        lab.real,
        "--weights",
        "misreg",
        "--out",
        out,
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--sampler",
        "ddim",
        "--device",
        "cpu",
    )
    return Outcome(str(call.code), call.stderr, False, note="the SPADE ran, --sampler ignored" if call.code == 0 else "")


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
    call = _cli_env(lab, _misregistered(lab), "weights", "verify", "misreg")
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
    if not _complete(real):
        lab._setup("prepare", luna, "--out", real, "--test-patients", "2", "--overwrite")
    if not _complete(synth):
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


# --- branch bounds: issue 27 items 3-6 (group "round3-bounds") ---------------------------------------
TRAIN_FULL_DISK = """
import errno, os, sys
import torch
after, save, count = int(sys.argv[1]), torch.save, [0]
def full_save(obj, f, *args, **kwargs):
    count[0] += 1
    if count[0] > after:
        with open(f, "wb") as fh:
            fh.write(b"\\0" * 64)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return save(obj, f, *args, **kwargs)
torch.save = full_save
sys.argv = ["lungforge", *sys.argv[2:]]
from lungforge.cli.main import run
run()
"""


def _says(outcome: Outcome, *texts: str) -> Outcome:
    """`outcome`, failing unless its stderr (whitespace folded) holds every one of `texts`."""
    folded = " ".join(outcome.stderr.replace("│", " ").split())
    missing = [t for t in texts if t not in folded]
    return Outcome(
        outcome.code,
        outcome.stderr,
        outcome.lost,
        note=f"message lacks {missing[0]!r}" if missing else outcome.note,
        extra_ok=outcome.extra_ok and not missing,
    )


def _inpaint_args(lab: Lab, *opts: str) -> list[object]:
    return ["train", "sdm", "--data", lab.real, "--out", lab.path("run"), "--preset", "tiny", "--steps", "2", "--device", "cpu", *opts]


def _augment_bounds(lab: Lab, *opts: str) -> list[object]:
    return [
        "augment",
        "--data",
        lab.real,
        "--weights",
        "demo-sdm-tiny",
        "--out",
        lab.path("s.zarr"),
        "--nodules",
        "2",
        "--shape",
        "sphere",
        "--steps",
        "2",
        "--device",
        "cpu",
        *opts,
    ]


def _no_store(lab: Lab, *opts: str) -> Outcome:
    """An augment refused after its inputs were read: lost = a store appeared at `--out` (its
    lock file, left by design, aside)."""
    args = _augment_bounds(lab, *opts)
    call = lab.cli(*args)
    out = args[args.index("--out") + 1]
    return Outcome(str(call.code), call.stderr, Path(out).exists())


for _name, _expected, _fn in [
    (
        "train --inpaint --window 16 --edit-margin 8: no room for a nodule",
        "2",
        lambda lab: _says(
            _nothing_made(lab, *_inpaint_args(lab, "--inpaint", "--window", "16", "--edit-margin", "8")),
            "largest margin for --window 16 is 6",
        ),
    ),
    (
        "train --inpaint --window 16 --edit-margin 100",
        "2",
        lambda lab: _says(
            _nothing_made(lab, *_inpaint_args(lab, "--inpaint", "--window", "16", "--edit-margin", "100")),
            "edit margin 100 px leaves no room",
        ),
    ),
    (
        "train --inpaint --window 15: exit 2 before work",
        "2",
        lambda lab: _says(_nothing_made(lab, *_inpaint_args(lab, "--inpaint", "--window", "15")), "--window 15"),
    ),
    (
        "train --edit-margin 7 without --inpaint",
        "2",
        lambda lab: _says(_nothing_made(lab, *_inpaint_args(lab, "--edit-margin", "7")), "--edit-margin needs --inpaint"),
    ),
    (
        "train --steps 10**20",
        "2",
        lambda lab: _says(_nothing_made(lab, *_inpaint_args(lab, "--steps", str(10**20))), "steps must be in 1..10000000"),
    ),
    (
        "augment --guidance 1e308",
        "2",
        lambda lab: _says(_nothing_made(lab, *_augment_bounds(lab, "--guidance", "1e308")), "guidance must be in 0.0..20.0"),
    ),
    (
        "augment --guidance nan says 'finite'",
        "2",
        lambda lab: _says(_nothing_made(lab, *_augment_bounds(lab, "--guidance", "nan")), "must be a finite number, got nan"),
    ),
    (
        "augment --diameter 1e20:1e20",
        "2",
        lambda lab: _says(_nothing_made(lab, *_augment_bounds(lab, "--diameter", "1e20:1e20")), "MAX <= 100"),
    ),
    (
        "augment --diameter 0.001:0.002 (below one pixel)",
        "1",
        lambda lab: _says(_no_store(lab, "--diameter", "0.001:0.002"), "MIN is below one pixel"),
    ),
    (
        "bench detect --epochs 10**20",
        "2",
        lambda lab: _says(
            _nothing_made(lab, "bench", "detect", "--real", lab.real, "--out", lab.path("b"), "--epochs", "99999999999999999999"),
            "epochs must be in 1..10000",
        ),
    ),
    (
        "export --format coco --dataset-id 7",
        "2",
        lambda lab: _says(
            _nothing_made(lab, "export", lab.real, "--format", "coco", "--out", lab.path("coco"), "--dataset-id", "7"),
            "applies to format 'nnunet' only",
        ),
    ),
]:
    fault("round3-bounds", _name, _expected)(_fn)


@fault("round3-bounds", "train spade: disk full at the 2nd save, then --resume", "1 then 0")
def _(lab: Lab) -> Outcome:
    out = lab.path("run")
    args = [
        "train",
        "spade",
        "--data",
        lab.real,
        "--out",
        out,
        "--preset",
        "tiny",
        "--steps",
        "4",
        "--checkpoint-every",
        "2",
        "--batch-size",
        "1",
        "--grid-samples",
        "1",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    full = subprocess.run(
        [sys.executable, "-c", TRAIN_FULL_DISK, "1", *map(str, args)],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    stray = sorted(p.name for p in out.glob(".*.tmp")) if out.is_dir() else []
    again = lab.cli(*args, "--resume", "--json")
    try:
        start = json.loads(again.stdout).get("start_step")
    except ValueError:
        start = None
    named = "resume.pt: No space left on device" in first_line(full.stderr)
    note = f"resumed from step {start}" + (f", left {', '.join(stray)}" if stray else "") + ("" if named else ", file not named")
    return Outcome(f"{full.returncode} then {again.code}", full.stderr + again.stderr, start != 2, note=note, extra_ok=named and not stray)


@fault("round3-bounds", "augment with weights that make NaN images", "1")
def _(lab: Lab) -> Outcome:
    import torch

    from lungforge.models.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(ROOT / "weights" / "demo-spade-tiny.safetensors")
    broken = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in ckpt.state_dict.items()}
    weights = save_checkpoint(
        lab.path("nan-spade"),
        kind="spade",
        preset=ckpt.preset,
        model_config=ckpt.config,
        state_dict=broken,
        step=ckpt.step,
        store_fingerprint=None,
    )
    out = lab.path("s.zarr")
    call = lab.cli(
        "augment", "--data", lab.real, "--weights", weights, "--out", out, "--nodules", "2", "--shape", "sphere", "--device", "cpu"
    )
    return _says(Outcome(str(call.code), call.stderr, _complete(out)), "NaN or infinite pixels")


# --- branch smaller (issue 27, items 7 and 8): group round3-small ---
# Run lungforge with a file size limit of LIMIT bytes (what `ulimit -f` does: writes past it fail with EFBIG).
FILE_LIMIT = """
import resource, sys
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.argv = ["lungforge", *sys.argv[2:]]
from lungforge.cli.main import run
run()
"""


def _limited(lab: Lab, limit: int, *args: object) -> Call:
    """Run `lungforge ARGS` unable to write a file past `limit` bytes."""
    proc = subprocess.run(
        [sys.executable, "-c", FILE_LIMIT, str(limit), *map(str, args)],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=lab.root,
    )
    return Call(proc.returncode, proc.stdout, proc.stderr)


def _quick_detect(lab: Lab, out: Path, *extra: object) -> list[object]:
    return ["bench", "detect", "--real", lab.real, "--quick", "--size", "64", "--out", out, "--device", "cpu", *extra]


@fault("round3-small", "bench --real-nodules ² (27.7)", "2")
def _(lab: Lab) -> Outcome:
    out = _nothing_made(lab, *_quick_detect(lab, lab.path("b"), "--real-nodules", "4,²"))
    clear = "--real-nodules" in out.stderr and "'²'" in out.stderr and "invalid literal" not in out.stderr
    return Outcome(out.code, out.stderr, out.lost, note=out.note, extra_ok=clear)


@fault("round3-small", "bench --real-nodules above the folds' nodules (27.7)", "1")
def _(lab: Lab) -> Outcome:
    out = _nothing_made(lab, *_quick_detect(lab, lab.path("b"), "--real-nodules", "1,9999,all"))
    counted = "--real-nodules 9999:" in out.stderr and "real nodules" in out.stderr
    return Outcome(out.code, out.stderr, out.lost, note=out.note, extra_ok=counted)


@fault("round3-small", "bench detect on a full disk names the file, then resumes (27.7)", "1 then 0")
def _(lab: Lab) -> Outcome:
    out = lab.path("bench-full")
    full = _limited(lab, 0, *_quick_detect(lab, out))
    named = f"{out.name}{os.sep}detect{os.sep}" in first_line(full.stderr) and ".json: cannot write" in first_line(full.stderr)
    again = lab.cli(*_quick_detect(lab, out))
    return Outcome(
        f"{full.code} then {again.code}",
        full.stderr + again.stderr,
        False,
        note="" if named else "file not named",
        extra_ok=named and again.code == 0,
    )


@fault("round3-small", "bench fidelity: segmenter cache on a full disk (27.7)", "1")
def _(lab: Lab) -> Outcome:
    real = lab.store_copy(lab.real)  # the cache goes beside --real: keep it off the shared store
    call = _limited(
        lab,
        100_000,
        "bench",
        "fidelity",
        "--real",
        real,
        "--synthetic",
        f"S={lab.synth}",
        "--size",
        "64",
        "--quick",
        "--segmenter-steps",
        "3",
        "--device",
        "cpu",
    )
    named = ".safetensors: cannot write" in first_line(call.stderr)
    stray = sorted(p.name for p in real.with_name(real.stem + ".fidelity").glob("*.tmp"))
    return Outcome(
        str(call.code), call.stderr, False, note=", ".join((["file not named"] if not named else []) + stray), extra_ok=named and not stray
    )


@fault("round3-small", "bench fold files are strict JSON, NaN as null (27.7)", "0")
def _(lab: Lab) -> Outcome:
    out = lab.path("bench-json")
    call = lab.cli(*_quick_detect(lab, out))
    bare, nulls = [], 0
    for path in sorted(out.rglob("*-fold*.json")):
        try:
            row = json.loads(path.read_text(), parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
            nulls += sum(v is None for v in row.values())
        except ValueError:
            bare.append(path.name)
    note = f"bare NaN in {', '.join(bare)}" if bare else f"{nulls} undefined metrics written as null"
    return Outcome(str(call.code), call.stderr, bool(bare), note=note)


@fault("round3-small", "bench all --controls rerun with another --real (27.7)", "0 then 1")
def _(lab: Lab) -> Outcome:
    other, out = lab.path("other.zarr"), lab.path("bench-all")
    lab.cli("prepare", lab.luna, "--out", other, "--test-patients", "3")
    args = [
        "--out",
        out,
        "--controls",
        "--quick",
        "--size",
        "64",
        "--patch",
        "16",
        "--features",
        "random",
        "--segmenter-steps",
        "3",
        "--device",
        "cpu",
        "--allow-empty-synthetic",
    ]
    first = lab.cli("bench", "all", "--real", lab.real, *args)
    again = lab.cli("bench", "all", "--real", other, *args)
    line = first_line(again.stderr)
    named = f"made from real store {lab.real}" in again.stderr and f"--real {other}" in again.stderr and "shards" not in line
    return Outcome(
        f"{first.code} then {again.code}", first.stderr + again.stderr, False, note="" if named else "stores not named", extra_ok=named
    )


@fault("round3-small", "export coco --size 8: every box has its mask (27.8)", "0")
def _(lab: Lab) -> Outcome:
    from pycocotools import mask as mask_utils

    out = lab.path("coco8")
    call = lab.cli("export", lab.real, "--format", "coco", "--out", out, "--size", "8", "--json")
    empty = off = total = 0
    for doc in _coco_files(out).values():
        for ann in doc["annotations"]:
            total += 1
            mask = mask_utils.decode({"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}).astype(bool)
            if not mask.any():
                empty += 1
                continue
            ys, xs = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
            off += ann["bbox"] != [float(xs[0]), float(ys[0]), float(xs[-1] + 1 - xs[0]), float(ys[-1] + 1 - ys[0])]
    kept = json.loads(call.stdout).get("nodules_kept_as_pixel") if call.code == 0 else None
    return Outcome(
        str(call.code),
        call.stderr,
        bool(empty or off),
        note=f"{total} boxes: {empty} with an empty mask, {off} not their mask's box; {kept} kept as one pixel",
    )


@fault("round3-small", "export nnunet: id taken in $nnUNet_preprocessed (27.8)", "0 then 1")
def _(lab: Lab) -> Outcome:
    raw, preprocessed = lab.path("nnUNet_raw"), lab.path("nnUNet_preprocessed")
    (preprocessed / "Dataset501_Other").mkdir(parents=True)
    env = {"nnUNet_raw": str(raw), "nnUNet_preprocessed": str(preprocessed), "nnUNet_results": str(lab.path("nnUNet_results"))}
    picked = _cli_env(lab, env, "export", lab.real, "--format", "nnunet", "--out", raw, "--json")
    folder = Path(json.loads(picked.stdout)["out"]).name if picked.code == 0 else "-"
    clash = _cli_env(lab, env, "export", lab.real, "--format", "nnunet", "--out", raw, "--dataset-id", "501", "--dataset-name", "Mine")
    named = "Dataset501_Other in" in first_line(clash.stderr)
    return Outcome(
        f"{picked.code} then {clash.code}",
        picked.stderr + clash.stderr,
        folder.startswith("Dataset501_"),
        note=f"picked {folder}" + ("" if named else "; clash not named"),
        extra_ok=named,
    )


@fault("round3-small", "export nnunet twice with the default name (27.8)", "0 then 1")
def _(lab: Lab) -> Outcome:
    raw = lab.path("nnUNet_raw")
    first = lab.cli("export", lab.real, "--format", "nnunet", "--out", raw)
    before = digest(raw / "Dataset501_Lungforge")
    second = lab.cli("export", lab.synth, "--format", "nnunet", "--out", raw)
    line = first_line(second.stderr)
    safe = "--dataset-name" in line and ("--overwrite" not in line or line.index("--dataset-name") < line.index("--overwrite"))
    return Outcome(
        f"{first.code} then {second.code}",
        first.stderr + second.stderr,
        digest(raw / "Dataset501_Lungforge") != before,
        note="" if safe else "refusal does not name --dataset-name first",
        extra_ok=safe,
    )


@fault("round3-small", "export consumer tests run, --size included (27.8)", "0")
def _(lab: Lab) -> Outcome:
    ci = (ROOT / ".ci" / "run").read_text()
    installs = "export-tools" in ci and "torch==" in ci
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(ROOT / "tests" / "export" / "test_consumers.py")],
        capture_output=True,
        text=True,
        env=lab.env,
        timeout=TIMEOUT_S,
        cwd=ROOT,
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    skipped = "skipped" in tail
    return Outcome(
        str(proc.returncode),
        proc.stderr if proc.returncode else "",
        False,
        note=f"{tail}; .ci/run {'installs' if installs else 'lacks'} export-tools",
        extra_ok=installs and not skipped,
    )


# -- driver -----------------------------------------------------------------------------------------
def run_row(lab: Lab, group: str, name: str, expected: str, fn: FaultFn) -> Row:
    real_before = digest(lab.real_path) if _complete(lab.real_path) else None
    try:
        outcome = fn(lab)
    except Exception as exc:  # a broken row is reported, not fatal to the matrix
        outcome = Outcome("-", f"matrix error: {type(exc).__name__}: {exc}", False, extra_ok=False)
    lost = outcome.lost or (real_before is not None and digest(lab.real_path) != real_before)
    trace = traceback_in(outcome.stderr)
    ok = outcome.code in expected.split("/") or outcome.code == expected
    # shorter for the table: paths relative to the lab, LUNA16's common uid prefix elided
    message = first_line(outcome.stderr).replace(f"{lab.root}{os.sep}", "").replace(UID_PREFIX, "…")
    return Row(
        group, name, expected, outcome.code, message[:160], trace, lost, ok and not trace and not lost and outcome.extra_ok, outcome.note
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--only", default="", help="run only rows whose group or fault contains this text")
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="lungforge-faults-"))
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        lab = Lab(root)
        rows = []
        for group, name, expected, fn in FAULTS:
            if args.only and args.only not in group and args.only not in name:
                continue
            rows.append(run_row(lab, group, name, expected, fn))
            if not args.json:
                print(_format(rows[-1]), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    totals = {
        "faults": len(rows),
        "passed": sum(r.ok for r in rows),
        "failed": sum(not r.ok for r in rows),
        "tracebacks": sum(r.traceback for r in rows),
        "data_lost": sum(r.lost for r in rows),
        "wrong_exit_code": sum(r.code not in r.expected.split("/") and r.code != r.expected for r in rows),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows], "totals": totals}, indent=2))
        return
    print("failed: " + ("; ".join(f"{r.group}/{r.fault}" for r in rows if not r.ok) or "none"))
    print("totals: " + ", ".join(f"{k} {v}" for k, v in totals.items()))


def _format(row: Row) -> str:
    mark = "ok  " if row.ok else "FAIL"
    return (
        f"{mark} {row.group:<11} {row.fault[:52]:<52} exit {row.code:<8} (want {row.expected:<8}) "
        f"tb {'yes' if row.traceback else 'no ':<3} lost {'yes' if row.lost else 'no ':<3} | {row.message}"
        + (f" [{row.note}]" if row.note else "")
    )


if __name__ == "__main__":
    main()
