import json

import numpy as np
import torch

from lungforge.bench.protocol.detect import DetectConfig, flip_patches, run_detect
from lungforge.bench.protocol.inputs import open_real, open_synthetic


def test_flip_patches_keeps_pixel_values():
    x = torch.arange(2 * 32 * 32, dtype=torch.uint8).reshape(2, 32, 32)
    y = flip_patches(x, torch.Generator().manual_seed(0))
    assert torch.equal(torch.sort(y.flatten(1)).values, torch.sort(x.flatten(1)).values)


def test_quick_detect_runs_every_fold_and_condition_and_resumes(tmp_path, stores):
    real = open_real(stores["real"])
    syn = {"B": open_synthetic(stores["B"], real)}
    config = DetectConfig.quick_preset(size=64, epochs=1)
    result = run_detect(real, syn, config, torch.device("cpu"), tmp_path)
    assert result.quick and result.conditions == ("A", "B")
    for condition in ("A", "B"):
        assert result.values(condition, "fold") == [0, 1]
    a0, b0 = result.folds["A"][0], result.folds["B"][0]
    assert a0["test_patches"] == b0["test_patches"] and a0["test_positive"] * 2 == a0["test_patches"]
    # B adds the synthetic patches of fold-1 source patients only
    assert b0["train_patches"] > a0["train_patches"]
    assert sum(a0["confusion"].values()) == a0["test_patches"]
    assert 0.0 <= a0["accuracy"] <= 1.0
    # beside the paper's metrics: AUROC of the logits, recall per nodule size (the fixture's nodules are 3.5-5.6 mm)
    for fold in result.folds["A"]:
        assert 0.0 <= fold["auroc"] <= 1.0
        assert fold["test_positive_by_size"] == {"recall_lt6mm": fold["test_positive"], "recall_6to10mm": 0, "recall_ge10mm": 0}
        assert fold["recall_lt6mm"] == fold["recall"] and np.isnan(fold["recall_ge10mm"])
    again = run_detect(real, syn, config, torch.device("cpu"), tmp_path)
    # read back, not retrained (seconds identical); compared as JSON since an empty size bin's recall is NaN
    assert json.dumps(again.folds, sort_keys=True) == json.dumps(result.folds, sort_keys=True)
    assert np.isfinite(a0["seconds"])
