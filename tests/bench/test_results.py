"""The typed k-fold results and their JSON."""

from __future__ import annotations

import json
import math

from lungforge.bench.protocol.detect import DetectConfig
from lungforge.bench.protocol.leakage import GeneratorExposure
from lungforge.bench.protocol.results import CurveResult, TaskResult


def _result(steps: int, auroc: float = 0.5, real_nodules: int | None = None) -> TaskResult:
    rows = {c: [{"fold": 0, "condition": c, "auroc": auroc, "optimizer_steps": steps}] for c in ("A", "G")}
    seen = {"G": GeneratorExposure("sdm", False, True, ("1.2.3",), 12, 0, "fp", nodules=5)}
    return TaskResult("detect", DetectConfig(folds=2, real_nodules=real_nodules), ("A", "G"), rows, seen)


def test_task_result_json_is_standard_and_keeps_the_key_order():
    data = _result(3, auroc=math.nan).to_dict()
    assert list(data) == ["task", "quick", "config", "conditions", "folds", "leakage"]
    assert data["folds"]["A"][0]["auroc"] is None and data["conditions"] == ["A", "G"] and data["config"]["folds"] == 2
    assert data["leakage"]["G"] == {
        "kind": "sdm",
        "model_free": False,
        "recorded": True,
        "nodule_slices": 12,
        "test_patients": 0,
        "train_store": "fp",
        "nodules": 5,
    }
    json.dumps(data, allow_nan=False)


def test_curve_result_budget_points_and_generator_nodules():
    curve = CurveResult({"4": _result(3, real_nodules=4), "all": _result(3)})
    assert curve.points == ["4", "all"] and curve.last.config.real_nodules is None
    assert curve.optimizer_steps == 3 and curve.generator_nodules == {"G": 5} and curve.generator_nodule_slices == {"G": 12}
    assert CurveResult({"4": _result(3), "all": _result(5)}).optimizer_steps == [3, 5]
    assert list(curve.to_dict()) == ["points", "results", "optimizer_steps", "generator_nodules", "generator_nodule_slices"]
