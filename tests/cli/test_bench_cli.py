"""`lungforge bench` through the CLI on tiny stores (64×64, --size 64, --quick, random FID features)."""

import json

import pytest
from typer.testing import CliRunner

from lungforge.bench.scoring.froc import FROC_METRICS
from lungforge.cli.main import app
from lungforge.errors import InputError


@pytest.fixture(scope="module")
def small_stores(tmp_path_factory, store_builder):
    build = store_builder
    root = tmp_path_factory.mktemp("bench_cli")
    # 10 patients × 2 slices, one nodule slice each: 5 nodule slices per quick fold group
    real = build(root / "real.zarr", "real", per_series=2, seed=0)
    return {"real": real, "B": build(root / "b.zarr", "synthetic", per_series=2, seed=1, made_from=real)}


def test_bench_all_quick_with_controls_writes_report_and_figures(tmp_path, small_stores, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    out = tmp_path / "report"
    args = ["bench", "all", "--real", str(small_stores["real"]), "--synthetic", f"B={small_stores['B']}", "--out", str(out),
            "--quick", "--size", "64", "--patch", "16", "--features", "random", "--segmenter-steps", "5", "--device", "cpu",
            "--controls", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["fidelity"]["scores"]) == {"real", "mislabeled", "paste", "B"} and report["fidelity"]["quick"] is True
    assert report["quick"] is True and "QUICK (not comparable to the paper)" in report["title"]
    assert report["fid"]["available"] and report["fid"]["comparable"] is False
    assert report["detect"]["conditions"] == ["A", "mislabeled", "paste", "B"] and len(report["detect"]["folds"]["B"]) == 2
    assert report["detect"]["config"]["patch"] == 16
    for task in ("detect", "localize"):
        assert report[task]["budget"]["equal"]  # the same optimiser steps for every condition
        assert set(report["controls"][task]) >= {"separated", "p_signed_rank", "diff_mean"}
        assert report["controls"][task]["separated"] is False  # 2 folds: p can never be below 0.5
    assert report["selection"]["B"]["rule"] == "first-draw" and report["selection"]["paste"]["generator"] == "paste"
    assert (out / "controls" / "paste.zarr").is_dir() and (out / "controls" / "mislabeled.zarr").is_dir()
    assert set(report["localize"]["summary"]["B"]["metrics"]) == {"AP50", "AP60", "AR50", "AR60", "AR70", "CPM", *FROC_METRICS}
    assert set(report["detect"]["summary"]["B"]["metrics"]) >= {"accuracy", "auroc", "recall_lt6mm", "recall_6to10mm", "recall_ge10mm"}
    assert report["detect"]["summary"]["B"]["comparison"]["p_corrected_t"] is not None
    assert report["detect"]["summary"]["A"]["p_value"] is None
    md = (out / "report.md").read_text()
    assert "## Label fidelity" in md and "| real (ceiling) |" in md
    assert "QUICK (not comparable to the paper)" in md and "| B |" in md and "p signed-rank (min)" in md and "p corrected t [95 % CI]" in md
    assert "1.08e-05 with the exact (Mann–Whitney) distribution and 0.000157" in md and "| CPM (%) |" in md and "| AUROC (%) |" in md
    assert "does NOT separate the positive control (paste)" in md and "a null result for a generator here means nothing" in md
    assert "Selection rule for every condition: `first-draw`" in md and "optimiser steps per fold" in md
    assert report["fid"]["size"] == 64
    for figure in report["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(report["figures"]) == 5 and "figures/nodule_gallery.png" in report["figures"]
    names = {f"{c}-fold{k}.json" for c in ("A", "B", "mislabeled", "paste") for k in (0, 1)}
    assert {p.name for p in (out / "detect").glob("*-fold*.json")} == names


def test_bench_fid_random_json(small_stores):
    args = ["bench", "fid", "--real", str(small_stores["real"]), "--synthetic", f"B={small_stores['B']}",
            "--features", "random", "--device", "cpu", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["comparable"] is False and set(payload["scores"]["B"]) == {"nodule", "nodule_free", "all"}
    assert payload["warnings"]


def test_bench_fid_without_weights_fails_clearly(tmp_path, small_stores, monkeypatch):
    import torch

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    args = ["bench", "fid", "--real", str(small_stores["real"]), "--synthetic", f"B={small_stores['B']}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "pt_inception-2015-12-05-6726825d.pth" in str(result.exception)


def test_bench_detect_rejects_a_real_store_as_synthetic(small_stores):
    args = ["bench", "detect", "--real", str(small_stores["real"]), "--synthetic", f"B={small_stores['real']}", "--quick", "--size", "64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "expected 'synthetic'" in str(result.exception)


def test_bench_bad_choice_is_usage_error(small_stores):
    result = CliRunner().invoke(app, ["bench", "detect", "--real", str(small_stores["real"]), "--real-split", "train"])
    assert result.exit_code == 2


def test_bench_fidelity_json_and_cache(small_stores):
    args = ["bench", "fidelity", "--real", str(small_stores["real"]), "--synthetic", f"B={small_stores['B']}", "--size", "64",
            "--quick", "--segmenter-steps", "4", "--seed", "3", "--device", "cpu", "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert [s["cached"] for s in payload["segmenters"]] == [False, False] and set(payload["scores"]) == {"real", "B"}
    assert payload["scores"]["real"]["feature_distance"] is None
    assert set(payload["scores"]["B"]["feature_distance"]) == {"nodule", "nodule_free", "all"}
    assert set(payload["scores"]["B"]["nodule_hits"]["by_size"]) == {"0-5 mm", "5-10 mm", "10-20 mm", ">=20 mm"}
    second = CliRunner().invoke(app, args)
    assert [s["cached"] for s in json.loads(second.stdout)["segmenters"]] == [True, True]


def test_bench_fidelity_size_must_fit_the_poolings(small_stores):
    result = CliRunner().invoke(app, ["bench", "fidelity", "--real", str(small_stores["real"]), "--size", "60"])
    assert result.exit_code == 2 and "divisible by 8" in result.output


def test_every_bench_command_caps_its_size():
    required = {"all": ["--out", "o"], "fid": ["--synthetic", "s.zarr"]}
    for command in ("detect", "localize", "all", "fid", "fidelity"):
        result = CliRunner().invoke(app, ["bench", command, "--real", "r.zarr", *required.get(command, []), "--size", "4096"])
        assert result.exit_code == 2 and "less than or equal to 2048" in result.output, (command, result.output)


def test_bench_detect_rejects_a_bad_real_nodules_list(small_stores):
    args = ["bench", "detect", "--real", str(small_stores["real"]), "--quick", "--size", "64", "--real-nodules", "4,0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "'0'" in result.output


def test_bench_real_nodules_not_in_ascii_digits_is_a_usage_error(small_stores):
    args = ["bench", "detect", "--real", str(small_stores["real"]), "--quick", "--size", "64", "--real-nodules", "4,²"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--real-nodules" in result.output and "'²'" in result.output
    assert "invalid literal" not in result.output


@pytest.mark.parametrize("command", ["detect", "all"])
def test_bench_refuses_a_k_above_the_training_nodules_before_any_work(tmp_path, small_stores, command):
    """Each quick fold trains on 5 real nodule slices: K = 6 would repeat the `all` point."""
    out = tmp_path / "out"
    args = ["bench", command, "--real", str(small_stores["real"]), "--quick", "--size", "64", "--patch", "16", "--device", "cpu",
            "--out", str(out), "--real-nodules", "2,6,all", *(["--controls"] if command == "all" else [])]
    result = CliRunner().invoke(app, args)
    message = str(result.exception)
    assert result.exit_code == 1 and isinstance(result.exception, InputError)
    assert "--real-nodules 6: the training folds of" in message and "hold 5 real nodule slices" in message
    assert "give points K up to 5, or 'all'" in message
    assert not out.exists()


@pytest.mark.slow
def test_bench_all_learning_curve_with_allowed_leakage_says_so_first(tmp_path, small_stores, store_builder, monkeypatch):
    import zarr

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    leaky = store_builder(tmp_path / "leaky.zarr", "synthetic", per_series=2, seed=3, made_from=small_stores["real"])
    zarr.open_group(leaky, mode="r+").attrs["generator"] = {"weights": "w", "kind": "sdm", "train_series": ["1.2.3.0", "1.2.3.4"], "train_nodule_slices": 2}
    out = tmp_path / "report"
    base = ["bench", "all", "--real", str(small_stores["real"]), "--synthetic", f"C={leaky}", "--out", str(out), "--quick", "--size", "64",
            "--patch", "16", "--features", "random", "--segmenter-steps", "5", "--device", "cpu", "--real-nodules", "2,all"]
    refused = CliRunner().invoke(app, base)
    assert refused.exit_code != 0 and "saw 2 of the benchmark's test-fold patients" in str(refused.exception)
    result = CliRunner().invoke(app, [*base, "--allow-generator-leakage", "--json"])
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    assert md.splitlines()[0].startswith("**GENERATOR LEAKAGE ALLOWED") and "C (2 test-fold patients)" in md.splitlines()[0]
    report = json.loads((out / "report.json").read_text())
    assert report["curves"]["detect"]["points"] == ["2", "all"] and report["curves"]["detect"]["generator_nodules"] == {"C": 2}
    assert "## Learning curves" in md and "| 2 | 2.0 | C |" in md
    assert (out / "figures" / "detect_curve.png").is_file() and (out / "figures" / "localize_curve.png").is_file()
    assert report["fid"]["select"] == "first-draw"
