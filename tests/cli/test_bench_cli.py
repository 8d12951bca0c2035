"""`lungforge bench` through the CLI on tiny stores (64×64, --size 64, --quick, random FID features)."""

import json

import pytest
from typer.testing import CliRunner

from lungforge.bench.scoring.froc import FROC_METRICS
from lungforge.cli.main import app
from lungforge.core.errors import InputError


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
    args = [
        "bench",
        "all",
        "--real",
        str(small_stores["real"]),
        "--synthetic",
        f"B={small_stores['B']}",
        "--out",
        str(out),
        "--quick",
        "--size",
        "64",
        "--patch",
        "16",
        "--features",
        "random",
        "--segmenter-steps",
        "5",
        "--device",
        "cpu",
        "--controls",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # the verdicts and what was written on stdout (report.json is golden-tested through --json)
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["detect", "localize", "detect", "localize", lines[4].split(":")[0]]
    assert "does NOT separate the positive control" in lines[0] and "B is NOT shown helpful" in lines[2]
    assert lines[4].endswith(f"wrote {out / 'report.md'}, {out / 'report.json'} and 5 figures")
    assert (
        "━" in result.stderr and "FID unavailable" not in result.stderr and "wrote" not in result.stderr and "separate" not in result.stderr
    )
    report = json.loads((out / "report.json").read_text())
    assert set(report["fidelity"]["scores"]) == {"real", "mislabeled", "paste", "blob", "B"} and report["fidelity"]["quick"] is True
    assert report["quick"] is True and "QUICK (not comparable to the paper)" in report["title"]
    assert report["fid"]["available"] and report["fid"]["comparable"] is False
    assert (
        report["detect"]["conditions"] == ["A", "mislabeled", "paste", "blob", "B", "hosts", "classic"]
        and len(report["detect"]["folds"]["B"]) == 2
    )
    assert report["detect"]["config"]["patch"] == 16
    for task in ("detect", "localize"):
        assert report[task]["budget"]["equal"]  # the same optimiser steps for every condition
        assert set(report["controls"][task]) >= {"separated", "p", "diff_mean"} and "signed_rank" in report["controls"][task]["p"]
        assert report["controls"][task]["separated"] is False  # 2 folds: p can never be below 0.5
    assert report["selection"]["B"]["rule"] == "first-draw" and report["selection"]["paste"]["generator"] == "paste"
    assert all((out / "controls" / f"{name}.zarr").is_dir() for name in ("paste", "mislabeled", "blob"))
    for task in ("detect", "localize"):
        (verdict,) = report["verdicts"][task]
        assert verdict["generator"] == "B" and set(verdict["against"]) == {"A", "classic", "blob"}
        assert verdict["helpful"] is False  # 2 folds: no signed-rank p below 0.5
    summary = report["detect"]["summary"]["conditions"]
    assert set(report["localize"]["summary"]["conditions"]["B"]["metrics"]) == {
        "AP50",
        "AP60",
        "AR50",
        "AR60",
        "AR70",
        "CPM",
        *FROC_METRICS,
    }
    assert set(summary["B"]["metrics"]) >= {"accuracy", "auroc", "recall_lt6mm", "recall_6to10mm", "recall_ge10mm"}
    assert summary["B"]["comparison"]["p"]["corrected_t"]["raw"] is not None and summary["A"]["comparison"] is None
    assert report["detect"]["summary"]["primary"] == "B@all" and summary["B"]["comparison"]["primary"] is True
    assert (
        summary["paste"]["comparison"]["p"]["bootstrap_auroc"]["holm"] is not None
        and "holm" in summary["paste"]["comparison"]["p"]["delong"]
    )
    md = (out / "report.md").read_text()
    assert "## Label fidelity" in md and "| real (ceiling) |" in md
    assert (
        "QUICK (not comparable to the paper)" in md
        and "| B |" in md
        and "p signed-rank" in md
        and "p corrected t" in md
        and "Primary comparison" in md
    )
    assert "1.08e-05 with the exact (Mann–Whitney) distribution and 0.000157" in md and "| CPM (%) |" in md and "| AUROC (%) |" in md
    assert "does NOT separate the positive control (paste)" in md and "a null result for a generator here means nothing" in md
    assert "Selection rule for every condition: `first-draw`" in md and "optimiser steps per fold" in md
    assert "detect: B is NOT shown helpful on auroc — vs A" in md and "vs classic" in md and "vs blob" in md
    assert "localize: B is NOT shown helpful on AP50" in md and set(report["verdicts"]) == {"detect", "localize"}
    assert report["fid"]["size"] == 64
    for figure in report["figures"]:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(report["figures"]) == 5 and "figures/nodule_gallery.png" in report["figures"]
    names = {f"{c}-fold{k}.json" for c in ("A", "B", "mislabeled", "paste", "blob", "hosts", "classic") for k in (0, 1)}
    assert {p.name for p in (out / "detect").glob("*-fold*.json")} == names


def test_bench_fid_random_json(small_stores):
    args = [
        "bench",
        "fid",
        "--real",
        str(small_stores["real"]),
        "--synthetic",
        f"B={small_stores['B']}",
        "--features",
        "random",
        "--device",
        "cpu",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["comparable"] is False and set(payload["scores"]["B"]) == {"nodule", "nodule_free", "all"}
    assert payload["warnings"]


def test_bench_fid_scores_on_stdout_warnings_on_stderr(small_stores):
    args = [
        "bench",
        "fid",
        "--real",
        str(small_stores["real"]),
        "--synthetic",
        f"B={small_stores['B']}",
        "--features",
        "random",
        "--size",
        "64",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("FID B at 64×64 px: nodule ") and result.stdout.count("\n") == 1
    assert "NOT comparable to published FID" in result.stderr and "warning:" in result.stderr and "FID B" not in result.stderr


@pytest.mark.parametrize("task, epochs", [("detect", []), ("localize", ["--backbone", "resnet18"])])
def test_bench_task_table_on_stdout_labels_on_stderr(small_stores, task, epochs):
    args = [
        "bench",
        task,
        "--real",
        str(small_stores["real"]),
        "--synthetic",
        f"B={small_stores['B']}",
        "--quick",
        "--size",
        "64",
        *(["--patch", "16"] if task == "detect" else []),
        "--device",
        "cpu",
        *epochs,
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.split()[:1] in (["A"], ["B"])]
    assert result.stdout.lstrip().startswith(task) and rows[:2] == ["A", "B"] and "\x1b[" not in result.stdout
    assert "QUICK (not comparable to the paper)" in result.stderr and f"{task} ━" in result.stderr  # the label and the progress bar
    assert "QUICK" not in result.stdout and f"{task} ━" not in result.stdout
    assert not [line for line in result.stderr.splitlines() if line.split()[:1] in (["A"], ["B"])]


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
    args = [
        "bench",
        "fidelity",
        "--real",
        str(small_stores["real"]),
        "--synthetic",
        f"B={small_stores['B']}",
        "--size",
        "64",
        "--quick",
        "--segmenter-steps",
        "4",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--json",
    ]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    payload = json.loads(first.stdout)
    assert [s["cached"] for s in payload["segmenters"]] == [False, False] and set(payload["scores"]) == {"real", "B"}
    assert payload["scores"]["real"]["feature_distance"] is None
    assert set(payload["scores"]["B"]["feature_distance"]) == {"nodule", "nodule_free", "all"}
    assert set(payload["scores"]["B"]["nodule_hits"]["by_size"]) == {"0-5 mm", "5-10 mm", "10-20 mm", ">=20 mm"}
    second = CliRunner().invoke(app, args)
    assert [s["cached"] for s in json.loads(second.stdout)["segmenters"]] == [True, True]
    human = CliRunner().invoke(app, args[:-1])  # the table (with the FD note as its caption) on stdout, the cache lines on stderr
    assert human.exit_code == 0, human.output
    assert "label fidelity at 64×64 px (quick)" in human.stdout and "│ real " in human.stdout and "FD: " in human.stdout
    assert human.stderr.count("segmenter ") == 2 and "reused from" in human.stderr and "segmenter " not in human.stdout


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
    args = [
        "bench",
        command,
        "--real",
        str(small_stores["real"]),
        "--quick",
        "--size",
        "64",
        "--patch",
        "16",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--real-nodules",
        "2,6,all",
        *(["--controls"] if command == "all" else []),
    ]
    result = CliRunner().invoke(app, args)
    message = str(result.exception)
    assert result.exit_code == 1 and isinstance(result.exception, InputError)
    assert "--real-nodules 6: the training folds of" in message and "hold 5 real nodules" in message
    assert "give points K up to 5, or 'all'" in message
    assert not out.exists()


@pytest.mark.slow
def test_bench_all_learning_curve_with_allowed_leakage_says_so_first(tmp_path, small_stores, store_builder, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    leaky = store_builder(
        tmp_path / "leaky.zarr",
        "synthetic",
        per_series=2,
        seed=3,
        made_from=small_stores["real"],
        attrs={"generator": {"weights": "w", "kind": "sdm", "train_series": ["1.2.3.0", "1.2.3.4"], "train_nodule_slices": 2}},
    )
    out = tmp_path / "report"
    base = [
        "bench",
        "all",
        "--real",
        str(small_stores["real"]),
        "--synthetic",
        f"C={leaky}",
        "--out",
        str(out),
        "--quick",
        "--size",
        "64",
        "--patch",
        "16",
        "--features",
        "random",
        "--segmenter-steps",
        "5",
        "--device",
        "cpu",
        "--real-nodules",
        "2,all",
    ]
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


def test_bench_localize_cpu_preset_runs_and_refuses_quick(small_stores):
    args = [
        "bench",
        "localize",
        "--real",
        str(small_stores["real"]),
        "--preset",
        "cpu",
        "--folds",
        "2",
        "--size",
        "64",
        "--epochs",
        "1",
        "--device",
        "cpu",
    ]
    refused = CliRunner().invoke(app, [*args, "--quick"])
    assert refused.exit_code == 2 and "--preset" in refused.output and "--quick" in refused.output
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    config = json.loads(result.stdout)["config"]
    assert (config["backbone"], config["optimizer"], config["rotations"], config["epochs"], config["folds"]) == (
        "resnet18-stride2",
        "adamw",
        True,
        1,
        2,
    )


def test_bench_detect_json_carries_the_summary_and_the_table_fits_80_columns(small_stores):
    """--json: means, std, Δ with intervals, every p with its Holm adjustment, joined counts; the
    terminal tables fit 80 columns without cutting a cell (COLUMNS=80, a fresh process)."""
    import os
    import subprocess
    import sys

    args = [
        "bench",
        "detect",
        "--real",
        str(small_stores["real"]),
        "--synthetic",
        f"B={small_stores['B']}",
        "--quick",
        "--size",
        "64",
        "--patch",
        "16",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    b = summary["conditions"]["B"]
    assert summary["metric"] == "auroc" and summary["primary"] == "B@all" and summary["test_train_ratio"] == 1.0
    assert set(b["metrics"]["auroc"]) == {"mean", "std", "n"} and len(b["comparison"]["diff_ci95"]) == 2
    assert set(b["comparison"]["p"]) == {"rank_sum", "signed_rank", "corrected_t", "delong", "bootstrap_auroc", "bootstrap_accuracy"}
    assert all(set(p) >= {"raw", "holm"} for p in b["comparison"]["p"].values())
    assert b["joined"] == [t - a for t, a in zip(b["train_items"], summary["conditions"]["A"]["train_items"])]
    env = {**os.environ, "COLUMNS": "80", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "lungforge", *args], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    table = run.stdout.splitlines()
    assert max(len(line) for line in table) <= 80 and "…" not in run.stdout
    assert any(line.split()[:1] == ["B"] for line in table) and "p t/Holm" in run.stdout


def test_bench_detect_rejects_an_unknown_primary(small_stores):
    args = [
        "bench",
        "detect",
        "--real",
        str(small_stores["real"]),
        "--synthetic",
        f"B={small_stores['B']}",
        "--quick",
        "--size",
        "64",
        "--real-nodules",
        "2,all",
        "--primary",
        "B@3",
    ]
    result = CliRunner().invoke(app, args)
    text = " ".join(result.output.replace("│", " ").split())  # the usage box wraps the line
    assert result.exit_code == 2 and "K '3' is not a point of this run, expected one of 2, all" in text


def test_bench_primary_a_sources_runs_under_the_test_split_and_is_bad_usage_otherwise(stores, tmp_path):
    """A+sources is a condition (and so a --primary) only where the synthetic stores draw on patients
    outside the benchmark; elsewhere the CLI says so in the API's own words (exit 2), before any work."""
    from lungforge.bench.protocol.inputs import open_real, open_synthetic
    from lungforge.bench.protocol.primary import primary_comparison
    from lungforge.bench.scoring.summary import PrimaryError

    common = [
        "--real",
        str(stores["real"]),
        "--synthetic",
        f"B={stores['B']}",
        "--quick",
        "--size",
        "64",
        "--patch",
        "16",
        "--device",
        "cpu",
    ]
    result = CliRunner().invoke(app, ["bench", "detect", *common, "--real-split", "test", "--primary", "A+sources", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)["summary"]
    assert summary["primary"] == "A+sources@all" and summary["conditions"]["A+sources"]["comparison"]["primary"] is True
    refused = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["bench", "detect", *common, "--primary", "A+sources"])
    real = open_real(stores["real"])
    with pytest.raises(PrimaryError) as api:
        primary_comparison("A+sources", real, {"B": open_synthetic(stores["B"], real)}, _quick_detect(), None)
    assert refused.exit_code == 2 and f"Invalid value for --primary: {api.value}" in refused.output, refused.output
    out = tmp_path / "report"
    all_args = ["bench", "all", *common, "--out", str(out), "--controls", "--primary", "nope@all"]
    refused_all = CliRunner(env={"COLUMNS": "400"}).invoke(app, all_args)
    assert refused_all.exit_code == 2 and "primary 'nope@all': condition 'nope' is not compared with A" in refused_all.output
    assert "expected one of mislabeled, paste, blob, B, hosts, classic" in refused_all.output and not out.exists()


def _quick_detect():
    from lungforge.bench.protocol.detect import DetectConfig

    return DetectConfig.quick_preset(size=64, patch=16)
