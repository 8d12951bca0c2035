import numpy as np
import pytest
from scipy.stats import ranksums

from lungforge.bench.stats import mean_std, rank_sum_p, summarize


def test_mean_std_is_sample_std_and_ignores_nan():
    s = mean_std([0.8, 0.9, float("nan"), 1.0])
    assert s["mean"] == pytest.approx(0.9)
    assert s["std"] == pytest.approx(np.std([0.8, 0.9, 1.0], ddof=1))
    assert s["n"] == 3
    assert mean_std([0.5])["std"] == 0.0


def test_rank_sum_matches_scipy():
    a = [0.8576, 0.87, 0.84, 0.86, 0.85]
    c = [0.8972, 0.90, 0.89, 0.91, 0.88]
    assert rank_sum_p(c, a) == pytest.approx(ranksums(c, a).pvalue)
    assert rank_sum_p(a, a) == pytest.approx(1.0)


def test_summarize_reports_p_against_a_only():
    result = {"folds": {"A": [{"acc": 0.1}, {"acc": 0.2}, {"acc": 0.3}], "C": [{"acc": 0.7}, {"acc": 0.8}, {"acc": 0.9}]}}
    s = summarize(result, ("acc",), "acc")
    assert s["A"]["p_value"] is None
    assert s["C"]["p_value"] == pytest.approx(ranksums([0.7, 0.8, 0.9], [0.1, 0.2, 0.3]).pvalue)
    assert s["C"]["metrics"]["acc"]["mean"] == pytest.approx(0.8)
