import numpy as np
import pytest

from lungforge.bench.protocol.folds import OUTSIDE, fold_splits, real_groups, source_groups
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.core.errors import InputError


def test_groups_merge_official_folds_mod_k(stores):
    real = open_real(stores["real"])
    groups = real_groups(real, 3, "all")
    np.testing.assert_array_equal(groups, real.meta("fold") % 3)
    test_only = real_groups(real, 2, "test")
    assert np.all(test_only[real.meta("split") == 0] == OUTSIDE)
    assert np.all(test_only[real.meta("split") == 1] >= 0)


def test_folds_partition_real_patients(stores):
    real = open_real(stores["real"])
    splits = fold_splits(real, {}, 5, "all")
    tests = np.concatenate([s.test_real for s in splits])
    assert np.array_equal(np.sort(tests), np.arange(len(real)))
    series = real.meta("series")
    for s in splits:
        assert not set(series[s.test_real]) & set(series[s.train_real])
        assert s.test_real.size + s.train_real.size == len(real)


def test_synthetic_slices_of_test_patients_are_dropped(stores):
    real = open_real(stores["real"])
    syn = open_synthetic(stores["B"], real)
    splits = fold_splits(real, {"B": syn}, 2, "all")
    series = real.meta("series")
    for s in splits:
        test_patients = set(series[s.test_real].tolist())
        kept_sources = syn.meta("source")[s.train_synthetic["B"]]
        dropped = np.setdiff1d(np.arange(len(syn)), s.train_synthetic["B"])
        assert not test_patients & set(series[kept_sources].tolist())
        assert set(series[syn.meta("source")[dropped]].tolist()) == test_patients


def test_real_split_test_keeps_generator_training_patients_in_synthetic_training(stores):
    real = open_real(stores["real"])
    syn = open_synthetic(stores["B"], real)
    groups = real_groups(real, 2, "test")
    g = source_groups(syn, real, groups)
    train_patient_sources = real.meta("split")[syn.meta("source")] == 0
    assert np.all(g[train_patient_sources] == OUTSIDE)
    for s in fold_splits(real, {"B": syn}, 2, "test"):
        assert set(np.flatnonzero(train_patient_sources)) <= set(s.train_synthetic["B"].tolist())
        assert np.all(real.meta("split")[s.test_real] == 1)


def test_too_few_folds_is_a_clear_error(stores):
    real = open_real(stores["real"])
    # test patients are series 2, 3, 6, 7 (official folds alike): mod 5 they form 3 groups
    with pytest.raises(InputError, match="--folds 5 needs patients in 5 fold groups"):
        real_groups(real, 5, "test")
