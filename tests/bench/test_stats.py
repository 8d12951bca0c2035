import numpy as np
import pytest
from scipy.stats import ranksums

from lungforge.bench.scoring.stats import mean_std, rank_sum_p


def test_mean_std_is_sample_std_and_ignores_nan():
    s = mean_std([0.8, 0.9, float("nan"), 1.0])
    assert s.mean == pytest.approx(0.9)
    assert s.std == pytest.approx(np.std([0.8, 0.9, 1.0], ddof=1))
    assert s.n == 3
    assert mean_std([0.5]).std == 0.0


def test_rank_sum_matches_scipy():
    a = [0.8576, 0.87, 0.84, 0.86, 0.85]
    c = [0.8972, 0.90, 0.89, 0.91, 0.88]
    assert rank_sum_p(c, a) == pytest.approx(ranksums(c, a).pvalue)
    assert rank_sum_p(a, a) == pytest.approx(1.0)


def test_signed_rank_is_scipy_on_per_fold_differences():
    from scipy.stats import wilcoxon

    from lungforge.bench.scoring.stats import signed_rank_p

    a = [0.60, 0.71, 0.55, 0.80, 0.66, 0.59]
    b = [0.58, 0.70, 0.51, 0.79, 0.60, 0.60]
    assert signed_rank_p(a, b) == pytest.approx(wilcoxon(np.subtract(a, b)).pvalue)
    assert signed_rank_p(a, a) == 1.0
    assert signed_rank_p([0.5, float("nan")], [0.4, 0.3]) == 1.0  # one pair left: smallest p is 1


def test_smallest_reachable_p_values():
    from lungforge.bench.scoring.stats import PAPER_DETECT_P, min_rank_sum_p, min_signed_rank_p, paper_p_note

    assert min_rank_sum_p(10, 10) == pytest.approx(ranksums(np.arange(10) + 10, np.arange(10)).pvalue)
    assert min_rank_sum_p(10, 10) == pytest.approx(1.5705e-4, rel=1e-3)
    assert all(p < min_rank_sum_p(10, 10) for p in PAPER_DETECT_P)
    assert min_signed_rank_p(10) == pytest.approx(2 / 2**10)
    assert min_signed_rank_p(5) == pytest.approx(0.0625)  # 5 paired folds can never give p < 0.05
    assert "0.000157" in paper_p_note(10)


def test_paper_note_reads_the_exact_floor():
    """An exact 10-vs-10 Mann–Whitney reaches 2 / C(20, 10) = 1.08e-5: the paper's 8.2e-5 is
    reachable, its 9.54e-6 is not."""
    from math import comb

    from scipy.stats import mannwhitneyu

    from lungforge.bench.scoring.stats import min_exact_rank_sum_p, paper_p_note

    floor = mannwhitneyu(np.arange(10) + 10, np.arange(10), method="exact").pvalue
    assert min_exact_rank_sum_p(10, 10) == pytest.approx(floor) == pytest.approx(2 / comb(20, 10))
    assert floor == pytest.approx(1.0825e-5, rel=1e-4)
    note = paper_p_note(10)
    assert "1.08e-05" in note and "0.000157" in note
    assert "8.2e-05 lies above the exact floor" in note
    assert "9.54e-06 lies below it" in note


def test_corrected_resampled_t_test_against_hand_computation():
    """d = (1, 3, 2, 4, 0) points, K = 5, n_test / n_train = 1/4: mean 0.02, s² = 2.5e-4, variance
    factor 1/5 + 1/4 = 0.45, t = 0.02 / sqrt(0.45 · 2.5e-4) = 1.8856, 4 degrees of freedom."""
    from scipy.stats import t as student_t
    from scipy.stats import ttest_rel

    from lungforge.bench.scoring.stats import compare, corrected_t_test

    diff = np.array([0.01, 0.03, 0.02, 0.04, 0.00])
    out = corrected_t_test(diff, 0.25)
    t_hand = 0.02 / np.sqrt(0.45 * 2.5e-4)
    assert t_hand == pytest.approx(1.885618, rel=1e-6)
    assert out.t == pytest.approx(t_hand)
    assert out.variance_factor == pytest.approx(0.45)
    assert out.p == pytest.approx(2 * student_t.sf(t_hand, 4)) == pytest.approx(0.1325, abs=1e-4)
    half = student_t.ppf(0.975, 4) * np.sqrt(0.45 * 2.5e-4)
    assert out.ci95 == pytest.approx((0.02 - half, 0.02 + half))
    # the correction only widens the plain paired t-test (same t divided by sqrt(1 + K·ratio) = 1.5)
    reference = np.array([0.6, 0.7, 0.5, 0.8, 0.65])
    plain = ttest_rel(reference + diff, reference)
    assert plain.statistic == pytest.approx(1.5 * t_hand)
    c = compare((reference + diff).tolist(), reference.tolist(), ratio=0.25)
    assert c.p["corrected_t"] == pytest.approx(out.p) and c.p["corrected_t"] > plain.pvalue
    assert c.corrected_t_ci95 == pytest.approx(out.ci95)
    assert corrected_t_test(np.zeros(4), 0.3).p == 1.0 and corrected_t_test(np.full(4, 0.1), 0.3).p == 0.0
    assert np.isnan(corrected_t_test(np.array([0.1]), 0.3).p)


def test_paired_comparison_sees_a_consistent_gain_that_rank_sum_misses():
    from lungforge.bench.scoring.stats import compare

    base = np.array([0.50, 0.62, 0.71, 0.55, 0.80, 0.66, 0.59, 0.75, 0.52, 0.68])
    better = base + np.linspace(0.01, 0.03, 10)  # every fold gains 1-3 points; folds differ by 30
    c = compare(better.tolist(), base.tolist(), ratio=1 / 9, seed=0)
    assert c.p["signed_rank"] == pytest.approx(c.p_min["signed_rank"]) == pytest.approx(2 / 2**10)
    assert c.p["rank_sum"] > 0.5
    assert c.diff_mean == pytest.approx(0.02)
    low, high = c.diff_ci95
    assert 0.01 <= low < 0.02 < high <= 0.03
    assert compare(better.tolist(), base.tolist(), ratio=1 / 9, seed=0) == c  # seeded bootstrap


def test_holm_matches_the_step_down_rule():
    """p = (0.01, 0.04, 0.03, 0.005), m = 4: sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06,
    0.04·1 = 0.04 → running max 0.06; NaN stays out of the family."""
    from lungforge.bench.scoring.stats import holm

    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, float("nan"), 0.6])
    assert out[0] == pytest.approx(0.4) and np.isnan(out[1]) and out[2] == pytest.approx(0.6)
    assert holm([0.9, 0.3]) == pytest.approx([0.9, 0.6]) and holm([0.9, 0.8]) == [1.0, 1.0]  # monotone, capped at 1


def test_nadeau_bengio_ratio_is_one_rule():
    from lungforge.bench.scoring.stats import nb_ratio

    assert nb_ratio(10) == pytest.approx(1 / 9) and nb_ratio(2) == 1.0
    with pytest.raises(ValueError, match="folds must be >= 2, got 1"):
        nb_ratio(1)
