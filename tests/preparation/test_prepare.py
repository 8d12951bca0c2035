import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lungforge.cli.main import app
from lungforge.core.errors import InputError, SchemaError
from lungforge.core.labels import BODY, LEFT_LUNG, NODULE, RIGHT_LUNG
from lungforge.luna16 import metaimage
from lungforge.luna16 import scans as luna16
from lungforge.phantom.scans import make_phantom
from lungforge.preparation.pipeline import PrepareOptions, prepare
from lungforge.store import SPLIT_IDS, open_store

OPTIONS = PrepareOptions(test_patients=0.3, seed=0)


@pytest.fixture(scope="module")
def luna(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("luna") / "luna16"
    make_phantom(root, scans=6, size=128, seed=3)
    return root


@pytest.fixture(scope="module")
def store(luna, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "real.zarr"
    prepare(luna, out, OPTIONS, shard_slices=8)
    return open_store(out)


def _copy(luna: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "luna16"
    shutil.copytree(luna, dst)
    return dst


def _arrays(store) -> dict[str, np.ndarray]:
    out = {"image": store.image[...], "label": store.label[...]}
    for name in ("series", "z", "spacing", "split", "fold", "has_nodule"):
        out[name] = store.meta(name)
    out.update({f"nodules/{k}": v for k, v in store.nodules().items()})
    out["uids"] = np.asarray(store.series_uids)
    return out


def test_label_ids_and_painting_order(store):
    labels = store.label[...]
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 4, 5}
    assert np.isin(labels, (LEFT_LUNG, RIGHT_LUNG)).any(axis=(1, 2)).all(), "every slice holds lung"
    has = store.meta("has_nodule")
    assert has.any() and (~has).any()
    assert ((labels == NODULE).any(axis=(1, 2)) == has).all()
    # body is painted first: every non-background pixel is surrounded by body/lungs, lungs lie inside body
    image = store.image[...]
    body_px = image[labels == BODY]
    assert np.median(body_px) > 127


def test_nodule_diameter_on_central_slices(store, luna):
    table = store.nodules()
    spacing = store.meta("spacing")[table["slice"]]
    labels = store.label[...]
    errors = []
    for s, bbox, diameter, sp in zip(table["slice"], table["bbox"], table["diameter_mm"], spacing):
        x0, y0, x1, y1 = bbox.astype(int)
        area_px = (labels[s, y0:y1, x0:x1] == NODULE).sum()
        if diameter < 3 * sp.max():
            continue  # nodules of under 3 pixels cannot be measured at this resolution
        eq = 2 * np.sqrt(area_px * sp[0] * sp[1] / np.pi)
        errors.append(abs(eq - diameter) / diameter)
    assert errors, "no measurable nodule"
    # central slices: the row for the nodule whose centre lies on the slice
    assert np.median(errors) < 0.3


def test_boxes_cover_all_nodule_pixels(store):
    table = store.nodules()
    labels = store.label[...]
    for s in np.flatnonzero(store.meta("has_nodule")):
        covered = np.zeros(labels.shape[1:], dtype=bool)
        for x0, y0, x1, y1 in table["bbox"][table["slice"] == s].astype(int):
            covered[y0:y1, x0:x1] = True
            assert (labels[s, y0:y1, x0:x1] == NODULE).any()
        assert not ((labels[s] == NODULE) & ~covered).any()


def test_patient_split_and_folds(store, luna):
    series, split, fold = store.meta("series"), store.meta("split"), store.meta("fold")
    train = set(series[split == SPLIT_IDS["train"]])
    test = set(series[split == SPLIT_IDS["test"]])
    assert train and test and not (train & test)
    subsets = {ref.uid: ref.subset for ref in luna16.discover_scans(luna)}
    uids = store.series_uids
    for s in np.unique(series):
        assert set(fold[series == s]) == {subsets[uids[s]]}


def test_keep_ratio_one_in_four(luna, store, tmp_path):
    full = prepare(luna, tmp_path / "all.zarr", PrepareOptions(test_patients=0.3, keep_nodule_free=1.0))
    full_store = open_store(full.store)
    for s, uid in enumerate(store.series_uids):
        every = ((full_store.meta("series") == full_store.series_uids.index(uid)) & ~full_store.meta("has_nodule")).sum()
        kept = ((store.meta("series") == s) & ~store.meta("has_nodule")).sum()
        assert kept == round(0.25 * every)


def test_nodule_slices_all_mode_has_more(luna, store, tmp_path):
    report = prepare(luna, tmp_path / "all.zarr", PrepareOptions(test_patients=0.3, nodule_slices="all"))
    assert report.nodule_slices > int(store.meta("has_nodule").sum())


def test_workers_give_the_same_store(luna, store, tmp_path):
    other = open_store(prepare(luna, tmp_path / "w2.zarr", PrepareOptions(test_patients=0.3, workers=2), shard_slices=8).store)
    a, b = _arrays(store), _arrays(other)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_pool_written_shards_are_byte_identical_to_a_single_process_run(luna, store, tmp_path):
    other = Path(prepare(luna, tmp_path / "w2.zarr", PrepareOptions(test_patients=0.3, workers=2), shard_slices=8).store)
    shards = sorted(p.relative_to(store.path) for p in (store.path / "image" / "c").rglob("*") if p.is_file())
    shards += sorted(p.relative_to(store.path) for p in (store.path / "label" / "c").rglob("*") if p.is_file())
    assert len(shards) > 4
    for rel in shards:
        assert (other / rel).read_bytes() == (store.path / rel).read_bytes(), rel


@pytest.mark.parametrize("workers", [1, 2])
def test_resume_after_interruption_equals_clean_run(luna, store, tmp_path, monkeypatch, workers):
    from lungforge.preparation import writer as prep

    calls = {"n": 0}
    original = prep.ShardWriter._flush

    def failing_flush(self, count, next_scan_if_empty):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        original(self, count, next_scan_if_empty)

    monkeypatch.setattr(prep.ShardWriter, "_flush", failing_flush)
    out = tmp_path / "resumed.zarr"
    with pytest.raises(KeyboardInterrupt):
        prepare(luna, out, PrepareOptions(test_patients=0.3, seed=0, workers=workers), shard_slices=8)
    with pytest.raises(SchemaError, match="incomplete"):
        open_store(out)
    monkeypatch.setattr(prep.ShardWriter, "_flush", original)
    prepare(luna, out, OPTIONS, resume=True, shard_slices=8)
    a, b = _arrays(store), _arrays(open_store(out))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert open_store(out).attrs["lost_nodules"] == store.attrs["lost_nodules"]


def test_resume_after_kill_equals_clean_run(luna, store, tmp_path):
    out = tmp_path / "killed.zarr"
    script = (
        "import sys; from lungforge.preparation.pipeline import prepare, PrepareOptions;"
        f"prepare({str(luna)!r}, {str(out)!r}, PrepareOptions(test_patients=0.3, seed=0), shard_slices=8)"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / "parts").is_dir() and any((out / "parts").glob("*.npz")):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait()
    killed = proc.returncode == -signal.SIGKILL
    prepare(luna, out, OPTIONS, resume=True, shard_slices=8)
    a, b = _arrays(store), _arrays(open_store(out))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert killed, "the run finished before it could be killed"


def test_resume_with_other_options_refused(luna, store, tmp_path):
    with pytest.raises(Exception, match="other options"):
        prepare(luna, store.path, PrepareOptions(test_patients=0.3, seed=1), resume=True)


def _run(args):
    return CliRunner().invoke(app, args)


def _bad_store_ok(out: Path, n_good: int):
    s = open_store(out)
    assert len(s.series_uids) == n_good
    assert len(s) > 0


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("truncate_raw", "truncated"),
        ("missing_raw", "missing"),
        ("bad_header", ""),
        ("missing_seg", "no seg mask"),
        ("outside", "outside the volume"),
    ],
)
def test_bad_scan_is_skipped_and_listed(luna, tmp_path, damage, reason):
    root = _copy(luna, tmp_path)
    refs = luna16.discover_scans(root)
    victim = refs[1]
    if damage == "truncate_raw":
        raw = victim.mhd.with_suffix(".raw")
        raw.write_bytes(raw.read_bytes()[:1000])
    elif damage == "missing_raw":
        victim.mhd.with_suffix(".raw").unlink()
    elif damage == "bad_header":
        victim.mhd.write_text("this is not a MetaImage header\n")
    elif damage == "missing_seg":
        for f in (root / "seg-lungs-LUNA16").glob(victim.uid + ".*"):
            f.unlink()
    elif damage == "outside":
        with open(root / "annotations.csv", "a") as fh:
            fh.write(f"{victim.uid},5000.0,5000.0,5000.0,10.0\n")
    out = tmp_path / "real.zarr"
    result = _run(["prepare", str(root), "--out", str(out), "--test-patients", "0.3", "--json"])
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    assert len(report["skipped"]) == 1
    skipped = report["skipped"][0]
    assert victim.uid in skipped["file"] + skipped["reason"]
    assert reason in skipped["reason"].lower() + skipped["file"].lower()
    _bad_store_ok(out, len(refs) - 1)


def test_annotations_of_absent_series_are_one_line_and_exit_0(luna, tmp_path):
    root = _copy(luna, tmp_path)
    annotations = luna16.read_annotations(root)
    # A partial download: the subset folder of an annotated scan is missing.
    gone = next(ref for ref in reversed(luna16.discover_scans(root)) if ref.uid in annotations)
    shutil.rmtree(gone.mhd.parent)
    n_gone = len(annotations[gone.uid])
    result = _run(["prepare", str(root), "--out", str(tmp_path / "r.zarr"), "--test-patients", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["skipped"] == []
    assert report["absent_series"] == {"series": 1, "annotations": n_gone, "uids": [gone.uid]}
    lines = [line for line in result.stderr.splitlines() if "not in" in line]
    assert len(lines) == 1 and f"{n_gone} annotations of 1 series" in lines[0]


def _write_hu(ref: luna16.ScanRef, hu_stored: np.ndarray) -> None:
    hu_stored.astype("<i2").tofile(ref.mhd.with_suffix(".raw"))


def _lung_point_mm(root: Path, ref: luna16.ScanRef) -> np.ndarray:
    """World x, y, z (mm) of a voxel deep inside a lung of `ref`, from its seg mask."""
    from scipy import ndimage

    volume = luna16.read_volume(ref.mhd)
    lung = np.isin(luna16.read_seg(root, ref.uid), (3, 4))
    depth = ndimage.distance_transform_edt(lung)
    z, y, x = np.unravel_index(np.argmax(depth), depth.shape)
    return luna16.index_to_world(np.array([[x, y, z]], float), volume.origin_mm, volume.spacing_mm, volume.direction)[0]


def test_every_annotated_nodule_is_labelled_or_named(luna, store):
    from lungforge.preparation.scan_recipe import process_scan

    annotations = luna16.read_annotations(luna)
    lost_total = 0
    for ref in luna16.discover_scans(luna):
        result = process_scan(luna, ref, annotations.get(ref.uid, []), OPTIONS)
        labelled = {round(d, 3) for _, _, d, _ in result.nodule_rows}
        assert all(n["series"] == ref.uid and n["reason"] for n in result.lost)
        lost = {round(n["diameter_mm"], 2) for n in result.lost}
        expected = {round(a.diameter_mm, 3) for a in annotations.get(ref.uid, [])}
        assert len(labelled) + len(result.lost) == len(expected)
        assert {round(d, 2) for d in labelled} | lost == {round(d, 2) for d in expected}
        lost_total += len(result.lost)
    assert lost_total == len(store.attrs["lost_nodules"])


def test_nodule_with_empty_mask_is_named(luna, tmp_path):
    root = _copy(luna, tmp_path)
    victim = luna16.discover_scans(root)[2]
    x, y, z = _lung_point_mm(root, victim)
    with open(root / "annotations.csv", "a") as fh:
        fh.write(f"{victim.uid},{x:.3f},{y:.3f},{z:.3f},1.5\n")
    result = _run(["prepare", str(root), "--out", str(tmp_path / "r.zarr"), "--test-patients", "0.3", "--json"])
    assert result.exit_code == 0, result.output
    lost = [n for n in json.loads(result.stdout)["lost_nodules"] if n["diameter_mm"] == 1.5]
    assert len(lost) == 1 and lost[0]["series"] == victim.uid and "mask empty" in lost[0]["reason"]
    assert "nodule not labelled" in result.stderr and victim.uid in result.stderr


def test_lost_nodules_survive_resume(luna, tmp_path, monkeypatch):
    from lungforge.preparation import writer as prep

    root = _copy(luna, tmp_path)
    victim = luna16.discover_scans(root)[0]
    x, y, z = _lung_point_mm(root, victim)
    with open(root / "annotations.csv", "a") as fh:
        fh.write(f"{victim.uid},{x:.3f},{y:.3f},{z:.3f},1.5\n")
    original = prep.ShardWriter._flush
    calls = {"n": 0}

    def failing_flush(self, count, next_scan_if_empty):
        if calls["n"] == 3:
            raise KeyboardInterrupt
        calls["n"] += 1
        original(self, count, next_scan_if_empty)

    monkeypatch.setattr(prep.ShardWriter, "_flush", failing_flush)
    out = tmp_path / "r.zarr"
    with pytest.raises(KeyboardInterrupt):
        prepare(root, out, OPTIONS, shard_slices=8)
    monkeypatch.setattr(prep.ShardWriter, "_flush", original)
    report = prepare(root, out, OPTIONS, resume=True, shard_slices=8)
    assert [n["diameter_mm"] for n in report.lost_nodules] == [1.5]
    assert report.lost_nodules == prepare(root, tmp_path / "clean.zarr", OPTIONS, shard_slices=8).lost_nodules


def test_scan_whose_nodules_yield_no_slice_is_skipped(luna, tmp_path):
    root = _copy(luna, tmp_path)
    victim = luna16.discover_scans(root)[2]
    x, y, z = _lung_point_mm(root, victim)
    rows = [r for r in (root / "annotations.csv").read_text().splitlines() if not r.startswith(victim.uid)]
    (root / "annotations.csv").write_text("\n".join(rows + [f"{victim.uid},{x:.3f},{y:.3f},{z:.3f},1.5"]) + "\n")
    out = tmp_path / "r.zarr"
    result = _run(["prepare", str(root), "--out", str(out), "--test-patients", "0.3", "--keep-nodule-free", "0", "--json"])
    assert result.exit_code == 3, result.output
    (skipped,) = json.loads(result.stdout)["skipped"]
    assert victim.uid in skipped["file"] and "yield no slice" in skipped["reason"] and "mask empty" in skipped["reason"]
    assert victim.uid not in open_store(out).series_uids


@pytest.mark.parametrize("lungs", ["seg", "auto"])
def test_scan_without_lung_is_skipped_loudly(luna, tmp_path, lungs):
    root = _copy(luna, tmp_path)
    victim = luna16.discover_scans(root)[1]
    shape, _ = metaimage.read_header(victim.mhd)
    if lungs == "auto":
        # a body of soft tissue in air: plausible HU, but no air inside the body
        yy, xx = np.mgrid[: shape[1], : shape[2]]
        body = ((yy - shape[1] / 2) / (0.4 * shape[1])) ** 2 + ((xx - shape[2] / 2) / (0.45 * shape[2])) ** 2 <= 1
        hu = np.full(shape, -1000, dtype=np.int16)
        hu[:, body] = 40
        _write_hu(victim, hu)
        shutil.rmtree(root / "seg-lungs-LUNA16")
    else:
        header = (root / "seg-lungs-LUNA16" / f"{victim.uid}.mhd").read_text()
        zraw = root / "seg-lungs-LUNA16" / f"{victim.uid}.zraw"
        import zlib

        data = zlib.compress(np.zeros(shape, np.uint8).tobytes())
        zraw.write_bytes(data)
        lines = [f"CompressedDataSize = {len(data)}" if line.startswith("CompressedDataSize") else line for line in header.splitlines()]
        (root / "seg-lungs-LUNA16" / f"{victim.uid}.mhd").write_text("\n".join(lines) + "\n")
    rows = [r for r in (root / "annotations.csv").read_text().splitlines() if not r.startswith(victim.uid)]
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "r.zarr"
    result = _run(["prepare", str(root), "--out", str(out), "--test-patients", "0.3", "--lungs", lungs, "--json"])
    assert result.exit_code == 3, result.output
    (skipped,) = json.loads(result.stdout)["skipped"]
    assert victim.uid in skipped["file"]
    assert ("no voxel holds the lung values" if lungs == "seg" else "found no lung") in skipped["reason"]


def test_default_test_patients_is_the_papers_share():
    from lungforge.preparation.options import test_patient_count

    assert test_patient_count(None, 888) == 144
    assert test_patient_count(None, 1000) == 144
    assert test_patient_count(None, 100) == round(100 * 144 / 888) == 16
    assert test_patient_count(None, 6) == 1
    assert test_patient_count(144, 300) == 144  # an explicit count stays exact
    assert test_patient_count(0.25, 8) == 2


def test_default_test_patients_works_on_a_small_trial(luna, tmp_path):
    out = tmp_path / "r.zarr"
    result = _run(["prepare", str(luna), "--out", str(out), "--limit", "4", "--json"])
    assert result.exit_code == 0, result.output
    split = open_store(out).meta("split")
    assert (split == SPLIT_IDS["train"]).any()
    result = _run(["prepare", str(luna), "--out", str(tmp_path / "x.zarr"), "--test-patients", "144"])
    assert result.exit_code == 1 and "144" in str(result.exception)


def test_no_scans_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty"):
        prepare(tmp_path / "empty", tmp_path / "r.zarr", OPTIONS)


def test_output_that_is_not_a_store_is_untouched(luna, tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.txt").write_text("do not delete")
    result = _run(["prepare", str(luna), "--out", str(out), "--overwrite", "--test-patients", "0.3"])
    assert result.exit_code == 1
    assert "not a lungforge store" in str(result.exception)
    assert (out / "thesis.txt").read_text() == "do not delete"
    result = _run(["prepare", str(luna), "--out", str(out), "--test-patients", "0.3"])
    assert result.exit_code == 1 and (out / "thesis.txt").exists()


def test_info_json(store):
    result = _run(["info", str(store.path), "--json"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["slices"] == len(store)
    assert info["splits"]["train"]["patients"] + info["splits"]["test"]["patients"] == len(store.series_uids)
    assert sum(info["nodule_diameter_hist"].values()) == info["nodules"]


def test_info_rejects_wrong_schema(tmp_path):
    import zarr

    zarr.open_group(str(tmp_path / "other.zarr"), mode="w").attrs["schema"] = "something/else"
    result = _run(["info", str(tmp_path / "other.zarr")])
    assert result.exit_code == 1
    assert "schema" in str(result.exception)


def test_lungs_auto_agrees_with_seg(luna, tmp_path):
    root = _copy(luna, tmp_path)
    shutil.rmtree(root / "seg-lungs-LUNA16")
    auto = open_store(prepare(root, tmp_path / "auto.zarr", PrepareOptions(test_patients=0.3, lungs="auto", keep_nodule_free=1.0)).store)
    seg = open_store(prepare(luna, tmp_path / "seg.zarr", PrepareOptions(test_patients=0.3, keep_nodule_free=1.0)).store)
    common = np.intersect1d(auto.meta("z") + 1000 * auto.meta("series"), seg.meta("z") + 1000 * seg.meta("series"))
    assert common.size > 0.7 * len(seg)
    key_a = auto.meta("z") + 1000 * auto.meta("series")
    key_s = seg.meta("z") + 1000 * seg.meta("series")
    dice = []
    for k in common[:: max(1, common.size // 20)]:
        a = np.isin(auto.label[int(np.flatnonzero(key_a == k)[0])], (LEFT_LUNG, RIGHT_LUNG))
        s = np.isin(seg.label[int(np.flatnonzero(key_s == k)[0])], (LEFT_LUNG, RIGHT_LUNG))
        dice.append(2 * (a & s).sum() / (a.sum() + s.sum()))
    assert np.mean(dice) > 0.8
