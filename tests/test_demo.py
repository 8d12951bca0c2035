"""`lungforge demo` at its smallest size, with the shipped demo weights."""

import json
from dataclasses import replace

from typer.testing import CliRunner

from lungforge.cli.main import app
from lungforge.store import open_store


def test_demo_smallest_size_runs_the_whole_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("LUNGFORGE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "demo"
    args = [
        "demo",
        "--out",
        str(out),
        "--scans",
        "4",
        "--size",
        "128",
        "--nodules",
        "4",
        "--nodule-free",
        "4",
        "--steps",
        "2",
        "--segmenter-steps",
        "10",
        "--detect-epochs",
        "2",
        "--localize-epochs",
        "1",
        "--small-k",
        "1",
        "--generators",
        "SDM-inpaint,SDM,SPADE",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [s["name"] for s in summary["steps"]] == [
        "phantom",
        "prepare",
        "augment SPADE",
        "augment SDM",
        "augment SDM-inpaint",
        "bench all --quick --controls --real-nodules",
    ]
    assert summary["steps"][-1]["details"]["conditions"] == [
        "A",
        "mislabeled",
        "paste",
        "blob",
        "SPADE",
        "SDM",
        "SDM-inpaint",
        "hosts",
        "classic",
    ]
    real_size = open_store(out / "real.zarr").shape_hw
    assert open_store(out / "synthetic-spade.zarr").shape_hw != real_size  # SPADE generates at its own 64 px ...
    for control in ("mislabeled", "paste", "blob"):
        assert open_store(out / "report" / "controls" / f"{control}.zarr").shape_hw == real_size  # ... the controls at the real store's
    for name in ("spade", "sdm", "sdm-inpaint"):
        store = open_store(out / f"synthetic-{name}.zarr")
        assert store.kind == "synthetic" and len(store) == 8
        assert int(store.meta("has_nodule").sum()) == 4
        assert store.attrs["generator"]["weights"] == f"demo-{name}-tiny"
        assert (store.meta("attempts") == 1).all() and store.attrs["params"]["retries"] == 0
    report = (out / "report" / "report.md").read_text()
    assert "QUICK" in report and "| SDM |" in report and "| SPADE |" in report and "| paste |" in report and "| mislabeled |" in report
    assert "Controls: can this protocol see an effect?" in report and "## Verdict: helpful only when ahead of A, classic and blob" in report
    assert "16×16 patches at 128×128 px" in report
    assert "## Label fidelity" in report and "| real (ceiling) |" in report
    fidelity = summary["steps"][-1]["details"]["fidelity"]
    assert open_store(out / "synthetic-sdm-inpaint.zarr").nodules()["window"].shape == (4, 4)
    assert {"real", "SPADE", "SDM", "SDM-inpaint"} <= set(fidelity) and all(0 <= v["miou"] <= 1 for v in fidelity.values())
    report_json = json.loads((out / "report" / "report.json").read_text())
    assert report_json["quick"] is True and report_json["curves"]["detect"]["points"] == ["1", "all"]
    assert (out / "report" / "figures" / "detect_curve.png").is_file() and (out / "report" / "figures" / "localize_curve.png").is_file()
    verdict = summary["steps"][-1]["details"]["below_bar"]
    a = summary["steps"][-1]["details"]["A"]
    assert (verdict is None) == (a["accuracy"] > 0.5 and a["AP50"] > 0)
    if verdict is not None:  # two epochs on 4 scans: the report opens with the miss
        assert report.startswith(f"**{verdict}**") and "below its bar" in verdict
        assert a["AP50"] > 0 or "no budget measured lifts it above 0" in verdict


def test_demo_refuses_an_unknown_generator_before_any_work(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--generators", "SDM,GAN"])
    assert result.exit_code == 2 and "--generators" in result.output and "'GAN'" in result.output
    assert not (tmp_path / "demo").exists()


def test_demo_benches_the_chosen_generators_in_their_fixed_order(tmp_path):
    from lungforge.demo import DemoOptions

    assert [name for name, _ in DemoOptions(out=tmp_path).generator_weights()] == ["SDM-inpaint"]
    chosen = DemoOptions(out=tmp_path, generators=("SDM-inpaint", "SPADE"))
    assert chosen.generator_weights() == (("SPADE", "demo-spade-tiny"), ("SDM-inpaint", "demo-sdm-inpaint-tiny"))


def test_demo_volumes_runs_the_3d_path(tmp_path):
    """`--volumes` adds prepare --volumes, 3-D paste, the MONAI data list and the orthogonal views."""
    from lungforge.demo import DEMO_VOLUME_NODULES, DemoOptions, _augment_volumes, _export_volumes, _prepare_volumes, _view_volumes
    from lungforge.phantom.scans import make_phantom
    from lungforge.store import open_volume_store

    options = DemoOptions(out=tmp_path, volumes=True)
    make_phantom(tmp_path / "luna", scans=4, size=64, seed=0)
    volumes, _ = _prepare_volumes(tmp_path / "luna", tmp_path / "v.zarr", options)
    synthetic, inserted = _augment_volumes(volumes, tmp_path / "s.zarr", replace(options, seed=1))
    assert inserted["nodules"] == DEMO_VOLUME_NODULES and open_volume_store(synthetic).synthetic
    monai, exported = _export_volumes(synthetic, tmp_path / "monai")
    datalist = json.loads((monai / "dataset.json").read_text())
    assert exported["scans"] >= 1 and sum(len(c["box"]) for c in datalist["training"] + datalist["validation"]) >= DEMO_VOLUME_NODULES
    views, shown = _view_volumes(synthetic, tmp_path / "views")
    assert shown["pngs"] == len(list(views.glob("*.png"))) >= DEMO_VOLUME_NODULES
