"""No fold scored without data (issue 24 item 5): a test fold without positives or negatives is
excluded from means and tests with a note; a condition that took no optimiser step is an error."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from lungforge.bench.protocol.detect import DetectConfig, run_detect
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.results import TaskResult
from lungforge.bench.scoring.summary import summarize
from lungforge.core.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _result(rows_a: list[dict], rows_b: list[dict]) -> TaskResult:
    return TaskResult("detect", DetectConfig(folds=len(rows_a), size=64, patch=16), ("A", "B"), {"A": rows_a, "B": rows_b}, {})


def test_a_fold_without_test_negatives_is_excluded_with_a_note():
    a = [{"accuracy": v, "test_positive": 5, "test_negative": n} for v, n in ((0.6, 5), (0.7, 5), (0.0, 0), (0.5, 5))]
    b = [{"accuracy": v, "test_positive": 5, "test_negative": n} for v, n in ((0.7, 5), (0.8, 5), (0.0, 0), (0.6, 5))]
    summary = summarize(_result(a, b), ("accuracy",), "accuracy")
    assert summary.excluded == {2: "no test negatives"}
    assert summary.conditions["A"].metrics["accuracy"].mean == pytest.approx(0.6) and summary.conditions["A"].metrics["accuracy"].n == 3
    assert summary.conditions["B"].comparison.paired_folds == 3
    data = json.loads(json.dumps(summary.to_dict(), allow_nan=False))
    assert data["excluded"] == [{"fold": 2, "reason": "no test negatives"}]
    assert data["notes"] == ["fold 2 excluded from means and tests: no test negatives"]


def test_a_fold_without_test_positives_is_excluded():
    a = [{"AP50": 0.5, "test_positive": 3}, {"AP50": 0.0, "test_positive": 0}, {"AP50": 0.4, "test_positive": 2}]
    summary = summarize(_result(a, [dict(r, AP50=r["AP50"] + 0.1) for r in a]), ("AP50",), "AP50")
    assert summary.excluded == {1: "no test positives"}
    assert summary.conditions["B"].metrics["AP50"].mean == pytest.approx(0.55)


def test_a_condition_without_optimiser_steps_is_an_error(stores, monkeypatch):
    import lungforge.bench.protocol.detect as detect

    real_run_fold = detect.run_fold
    monkeypatch.setattr(detect, "run_fold", lambda *a, **k: {**real_run_fold(*a, **k), "optimizer_steps": 0})
    real = open_real(stores["real"])
    config = dataclasses.replace(DetectConfig.quick_preset(size=64, patch=16), epochs=1, real_nodules=2)
    with pytest.raises(InputError, match=r"^condition A at K = 2 took 0 optimiser steps in fold 0 \(no training item\)"):
        run_detect(real, {"B": open_synthetic(stores["B"], real)}, config, torch.device("cpu"))


def test_excluded_folds_do_not_enter_the_pooled_tests():
    def rows(scores):
        return [
            {
                "auroc": 0.5,
                "test_positive": 2,
                "test_negative": n,
                "predictions": {"target": t, "score": s, "patient": [f * 10 + i for i in range(len(t))]},
            }
            for f, (t, s, n) in enumerate(scores)
        ]

    folds_a = [([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.6], 2), ([1, 1], [0.3, 0.2], 0)]
    folds_b = [([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2], 2), ([1, 1], [0.9, 0.9], 0)]
    summary = summarize(_result(rows(folds_a), rows(folds_b)), ("auroc",), "auroc")
    pooled = summary.conditions["B"].comparison.pooled
    assert pooled.patches == 4 and pooled.auroc == pytest.approx((0.75, 1.0))
    assert np.isfinite(summary.conditions["B"].comparison.p["bootstrap_auroc"])
