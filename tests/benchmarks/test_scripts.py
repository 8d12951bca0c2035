"""Every script in benchmarks/ runs with tiny options and prints what its docstring promises (issue 19,
item 14), so none rots between the runs that produce the published figures.

Scripts run in this process (`runpy`, `__main__`), which shares torch's import; device.sh is checked
with `bash -n` and against the options of the scripts it calls.
"""

from __future__ import annotations

import json
import math
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.iterdir() if p.suffix in (".py", ".sh"))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def run_script(name: str, *args: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run `benchmarks/NAME ARGS` as `__main__` in this process; its stdout."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the throughput scripts import `hardware`
    monkeypatch.setattr(sys, "argv", [str(BENCHMARKS / name), *map(str, args)])
    capsys.readouterr()
    try:
        runpy.run_path(str(BENCHMARKS / name), run_name="__main__")
    except SystemExit as exc:  # a script may end with sys.exit(0)
        if exc.code not in (0, None):
            raise
    return capsys.readouterr().out


def json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def options_of(script: Path) -> set[str]:
    """The `--options` a script's argparse parser declares."""
    return set(re.findall(r'add_argument\(\s*"(--[a-z0-9-]+)"', script.read_text()))


def test_every_script_has_a_smoke_test() -> None:
    tested = {
        "augment.py",
        "bench_ranks.py",
        "device.sh",
        "faults.py",
        "hardware.py",
        "inpaint_cost.py",
        "localize_diagnosis.py",
        "phantom_stats.py",
        "power.py",
        "prepare.py",
        "samplers.py",
        "sampling.py",
        "training.py",
    }
    tested_elsewhere = {"paste_example.py"}  # tests/benchmarks/test_paste_example.py
    assert set(SCRIPTS) == tested | tested_elsewhere


@pytest.mark.slow  # two torchrun jobs of gloo ranks; tests/bench/test_ranks.py covers the sharing in the default suite
def test_bench_ranks_gives_the_single_process_json(capsys, monkeypatch) -> None:
    out = run_script(
        "bench_ranks.py", "--scans", "4", "--size", "64", "--folds", "2", "--epochs", "1", capsys=capsys, monkeypatch=monkeypatch
    )
    (result,) = json_lines(out)
    assert result["identical"] is True and result["ranks"] == 2 and result["runs"] == 4
    assert result["single_s"] > 0 and result["ranks_s"] > 0


def test_inpaint_cost_counts_fewer_flops_per_nodule_for_a_window(capsys, monkeypatch) -> None:
    (line,) = json_lines(
        run_script(
            "inpaint_cost.py", "--preset", "tiny", "--window", "16", "--flops-only", "--json", capsys=capsys, monkeypatch=monkeypatch
        )
    )
    assert line["window_px"] == 16 and line["slice_px"] == 64
    assert line["flops_ratio"] == line["gflops_per_nodule_whole_slice"] / line["gflops_per_nodule_inpaint"] > 8


def test_localize_diagnosis(tmp_path, capsys, monkeypatch) -> None:
    out = run_script(
        "localize_diagnosis.py",
        "--scans",
        "4",
        "--size",
        "64",
        "--steps",
        "3",
        "--window",
        "2",
        "--eval-every",
        "2",
        "--figure",
        tmp_path / "ap50.png",
        "--json",
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    look, quick, cpu = json_lines(out)
    rivals = look["look_alikes"]
    assert rivals and all(0 <= row["most_salient"] <= row["nodules"] and row["median_rivals"] >= 0 for row in rivals)
    assert (quick["detector"], quick["rpn_fg_iou"], cpu["detector"], cpu["rpn_fg_iou"]) == ("quick", 0.7, "cpu", 0.25)
    for result in (quick, cpu):
        assert sum(row["boxes"] for row in result["anchors"]) > 0 and all(0 <= row["matched"] <= row["boxes"] for row in result["anchors"])
        assert [p["steps"] for p in result["loss_curve"]] == [2, 3] and set(result["loss_curve"][0]) > {"loss_objectness"}
        assert 0 <= result["proposal_recall_test"] <= 1 and 0 <= result["AP50_test"] <= 1
        assert [p["steps"] for p in result["ap50_curve"]] == [2, 3] and result["ap50_curve"][-1]["AP50"] == result["AP50_test"]
    assert (tmp_path / "ap50.png").stat().st_size > 0
    # the paper geometry leaves the smallest boxes without a positive anchor; the CPU preset's reaches them all
    assert cpu["anchors"][0]["matched"] == cpu["anchors"][0]["boxes"] > quick["anchors"][0]["matched"]


def test_augment(capsys, monkeypatch) -> None:
    out = run_script(
        "augment.py",
        "--scans",
        "3",
        "--phantom-size",
        "128",
        "--nodules",
        "2",
        "--nodule-free",
        "1",
        "--steps",
        "1",
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--json",
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    (result,) = json_lines(out)
    assert result["benchmark"] == "augment" and result["slices"] == 3 and result["images"] >= 3
    assert result["same_images_as_augment"] is True
    assert result["img_per_s"] > 0 and math.isfinite(result["overhead"])


def test_faults_one_row(capsys, monkeypatch) -> None:
    out = run_script("faults.py", "--only", "phantom --seed -1", "--json", capsys=capsys, monkeypatch=monkeypatch)
    result = json.loads(out)
    assert [r["fault"] for r in result["rows"]] == ["phantom --seed -1 (issue 19.13)"]
    assert result["totals"]["passed"] == 1 and result["totals"]["tracebacks"] == 0
    assert result["rows"][0]["code"] == "2"


def test_hardware_helpers() -> None:
    import torch

    hardware = runpy.run_path(str(BENCHMARKS / "hardware.py"))
    cpu = torch.device("cpu")
    assert hardware["peak_tflops"](cpu, "fp32", None)[0] is None
    assert hardware["peak_tflops"](cpu, "fp32", 2.0)[0] == 2.0
    fields = hardware["device_fields"](cpu)
    assert fields and all(isinstance(k, str) for k in fields)
    rates = hardware["rate_fields"](10, 2.0, 1e9, (4.0, None))
    assert rates["img_per_s"] == pytest.approx(5.0)
    assert hardware["timed"](lambda: sum(range(1000)), cpu) >= 0.0


def test_phantom_stats(capsys, monkeypatch) -> None:
    out = run_script(
        "phantom_stats.py", "--scans", "3", "--size", "32", "--shapes", "4", "--no-lidc", "--json", capsys=capsys, monkeypatch=monkeypatch
    )
    result = json.loads(out)
    assert result["phantom"]["scans"] == 3
    assert set(result["shapes"]) == {"phantom", "augment --shape sphere"}
    assert result["luna16"]["scans"] == 888


def test_power(capsys, monkeypatch) -> None:
    out = run_script(
        "power.py",
        "--scans",
        "6",
        "--size",
        "128",
        "--nodules",
        "4",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--bench-size",
        "32",
        "--patch",
        "8",
        "--depth",
        "8",
        "--width",
        "4",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--json",
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    result = json.loads(out)
    rows = result["detect"]["rows"]
    assert set(rows) == {"A", "mislabeled", "paste", "blob", "hosts", "classic"}
    assert all(len(v) == 2 for v in result["detect"]["per_fold"].values())
    assert rows["paste"]["vs_A"] is not None and rows["A"]["vs_A"] is None
    assert all(n > 0 for n in result["detect"]["synthetic_positives"]["blob"])
    verdict = result["detect"]["verdicts"]["paste"]  # the only recipe without --generators
    assert set(result["detect"]["verdicts"]) == {"paste"} and verdict["metric"] == "auroc"
    assert set(verdict["against"]) == {"A", "classic", "blob"} and isinstance(verdict["helpful"], bool)
    assert verdict["against"]["A"]["diff_mean"] == pytest.approx(rows["paste"]["vs_A"]["diff_mean"])


@pytest.mark.slow
def test_power_generator_from_k(capsys, monkeypatch) -> None:
    out = run_script(
        "power.py",
        "--scans",
        "6",
        "--size",
        "128",
        "--nodules",
        "4",
        "--folds",
        "2",
        "--epochs",
        "1",
        "--bench-size",
        "32",
        "--patch",
        "8",
        "--depth",
        "8",
        "--width",
        "4",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--real-nodules",
        "1,all",
        "--generator-from-k",
        "--from-k-steps",
        "2",
        "--json",
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    result = json.loads(out)
    from_k = result["generator_from_k"]
    assert from_k["K"] == "1" and from_k["generator_nodules"] == [1, 1] and len(from_k["per_fold"]) == 2
    assert all(n > 0 for n in from_k["synthetic_positives"]) and from_k["vs_A"] is not None


def test_prepare(capsys, monkeypatch) -> None:
    out = run_script("prepare.py", "--scans", "2", "--size", "64", "--workers", "1", "--json", capsys=capsys, monkeypatch=monkeypatch)
    (result,) = json_lines(out)
    assert result["scans"] == 2 and result["seconds"] > 0 and result["ratio"] > 0


def test_samplers(tmp_path, capsys, monkeypatch) -> None:
    out = run_script(
        "samplers.py",
        "--work",
        tmp_path,
        "--scans",
        "4",
        "--size",
        "64",
        "--images",
        "1",
        "--per-slice",
        "1",
        "--settings",
        "ddim-10-s1",
        "--segmenter-steps",
        "2",
        "--json",
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    result = json.loads(out)
    assert [r["setting"] for r in result["rows"]] == ["ddim-10-s1"]
    assert result["rows"][0]["passes_per_image"] == 10 and 0.0 <= result["rows"][0]["miou"] <= 1.0
    assert (tmp_path / "result.json").is_file()


def test_samplers_refuses_an_unknown_setting(tmp_path, capsys, monkeypatch) -> None:
    with pytest.raises(SystemExit):
        run_script("samplers.py", "--work", tmp_path, "--settings", "euler-3-s1", capsys=capsys, monkeypatch=monkeypatch)
    assert "euler-3-s1" in capsys.readouterr().err


def test_sampling(capsys, monkeypatch) -> None:
    out = run_script(
        "sampling.py",
        "--device",
        "cpu",
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--threads",
        "1",
        "--json",
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    (result,) = json_lines(out)
    assert result["img_per_s"] > 0 and result["batch_size"] == 1


def test_training(capsys, monkeypatch) -> None:
    out = run_script(
        "training.py",
        "--device",
        "cpu",
        "--steps",
        "1",
        "--batch-size",
        "1",
        "--threads",
        "1",
        "--json",
        capsys=capsys,
        monkeypatch=monkeypatch,
    )
    (result,) = json_lines(out)
    assert result["img_per_s"] > 0 and result["batch_size"] == 1


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_device_sh_parses_and_calls_existing_options() -> None:
    script = BENCHMARKS / "device.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    arrays = {name: set(re.findall(r"--[a-z0-9-]+", " ".join(re.findall(rf"{name}=\((.*?)\)", text)))) for name in ("COMMON", "AUGMENT")}
    calls = re.findall(r"benchmarks/([a-z_]+\.py)(.*)", text)
    assert {name for name, _ in calls} >= {"training.py", "sampling.py", "augment.py"}
    for name, rest in calls:
        assert (BENCHMARKS / name).is_file(), name
        used = set(re.findall(r"--[a-z0-9-]+", rest))
        for array, options in arrays.items():
            if f"{array}[@]" in rest:
                used |= options
        assert used <= options_of(BENCHMARKS / name), (name, used - options_of(BENCHMARKS / name))
