"""One primary comparison, Holm for the rest, one ratio rule, typed summaries, --repeats (issue 24 item 6)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from lungforge.bench.protocol.detect import DetectConfig, run_detect
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.repeats import average_rows, repeat_seed
from lungforge.bench.protocol.results import CurveResult, TaskResult
from lungforge.bench.scoring.stats import compare, holm, nb_ratio
from lungforge.bench.scoring.summary import ConditionSummary, PrimarySpec, TaskSummary, parse_primary, summarize, summarize_curve

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BASE = [0.50, 0.62, 0.71, 0.55, 0.80]


def _result(gains: dict[str, list[float]]) -> TaskResult:
    folds = {"A": [{"auroc": v} for v in BASE]}
    folds.update({c: [{"auroc": v + g} for v, g in zip(BASE, gain)] for c, gain in gains.items()})
    return TaskResult("detect", DetectConfig(folds=5, size=64, patch=16), tuple(folds), folds, {})


GAINS = {"B": [0.01, 0.03, 0.02, 0.04, 0.00], "C": [0.05, 0.04, 0.06, 0.05, 0.07], "D": [0.0, -0.01, 0.01, 0.0, 0.02]}


def test_the_primary_keeps_its_raw_p_and_the_others_are_holm_adjusted_together():
    summary = summarize(_result(GAINS), ("auroc",), "auroc", PrimarySpec("C", "all"))
    assert isinstance(summary, TaskSummary) and isinstance(summary.conditions["B"], ConditionSummary)
    c = summary.conditions["C"].comparison
    assert c.primary and c.p_holm == c.p
    others = [summary.conditions[n].comparison for n in ("B", "D")]
    for test in ("rank_sum", "signed_rank", "corrected_t"):
        assert [o.p_holm[test] for o in others] == pytest.approx(holm([o.p[test] for o in others]))
    # every comparison uses the one ratio rule, 1 / (folds - 1)
    ratio = nb_ratio(5)
    assert summary.test_train_ratio == ratio == 0.25
    raw = compare([r["auroc"] for r in _result(GAINS).folds["B"]], BASE, ratio)
    assert summary.conditions["B"].comparison.p["corrected_t"] == pytest.approx(raw.p["corrected_t"])
    # the default primary is the first synthetic condition
    assert summarize(_result(GAINS), ("auroc",), "auroc").conditions["B"].comparison.primary


def test_a_curve_is_one_holm_family_with_the_primary_at_the_smallest_k():
    curve = CurveResult({"2": _result(GAINS), "all": _result({k: list(reversed(v)) for k, v in GAINS.items()})})
    table = summarize_curve(curve, ("auroc",), "auroc")
    assert table["2"].primary == PrimarySpec("B", "2")
    family = [(p, c) for p in ("2", "all") for c in ("B", "C", "D") if (p, c) != ("2", "B")]
    raw = [table[p].conditions[c].comparison.p["corrected_t"] for p, c in family]
    assert [table[p].conditions[c].comparison.p_holm["corrected_t"] for p, c in family] == pytest.approx(holm(raw))
    assert table["2"].conditions["B"].comparison.primary and not table["all"].conditions["B"].comparison.primary


def test_parse_primary_names_the_bad_part():
    assert parse_primary("paste@8", ["SDM", "paste"], ["8", "all"]) == PrimarySpec("paste", "8")
    assert parse_primary("paste", ["SDM", "paste"], ["8", "all"]) == PrimarySpec("paste", "8")
    assert parse_primary(None, ["SDM", "paste"], ["8", "all"]) == PrimarySpec("SDM", "8")
    with pytest.raises(
        ValueError, match="^primary 'spade@8': condition 'spade' is not compared with A in this run, expected one of SDM, paste$"
    ):
        parse_primary("spade@8", ["SDM", "paste"], ["8", "all"])
    with pytest.raises(ValueError, match="^primary 'SDM@4': K '4' is not a point of this run, expected one of 8, all$"):
        parse_primary("SDM@4", ["SDM", "paste"], ["8", "all"])


def test_repeats_average_the_fold_rows():
    rows = [
        {"auroc": 0.6, "train_patches": 10, "predictions": {"target": [1, 0], "score": [0.8, 0.2]}},
        {"auroc": 0.8, "train_patches": 10, "predictions": {"target": [1, 0], "score": [0.6, 0.4]}},
    ]
    row = average_rows(rows)
    assert row["auroc"] == pytest.approx(0.7) and row["train_patches"] == 10 and row["repeats"] == 2
    assert row["predictions"] == {"target": [1, 0], "score": pytest.approx([0.7, 0.3])}
    assert np.isnan(average_rows([{"x": float("nan")}, {"x": float("nan")}])["x"])
    assert repeat_seed(7, 0) == 7 and len({repeat_seed(7, r) for r in range(4)}) == 4


def test_repeats_train_several_seeds_per_fold(stores):
    real = open_real(stores["real"])
    syn = {"B": open_synthetic(stores["B"], real)}
    config = dataclasses.replace(DetectConfig.quick_preset(size=64, patch=16), epochs=1)
    once = run_detect(real, syn, config, torch.device("cpu"))
    twice = run_detect(real, syn, dataclasses.replace(config, repeats=2), torch.device("cpu"))
    assert all(r["repeats"] == 2 for rows in twice.folds.values() for r in rows)
    assert [r["train_patches"] for r in twice.folds["B"]] == [r["train_patches"] for r in once.folds["B"]]
    assert [r["predictions"]["score"] for r in twice.folds["A"]] != [r["predictions"]["score"] for r in once.folds["A"]]
