"""The primary comparison (`--primary COND@K`): checked before the run against the conditions it
compares with A, A+sources included exactly where it runs; one check for the CLI and the API."""

from __future__ import annotations

import pytest
import torch

from lungforge.bench.protocol.controls import CONTROL_NAMES
from lungforge.bench.protocol.crossval import compared_conditions
from lungforge.bench.protocol.detect import DetectConfig
from lungforge.bench.protocol.inputs import open_real, open_synthetic
from lungforge.bench.protocol.localize import LocalizeConfig
from lungforge.bench.protocol.primary import primary_comparison
from lungforge.bench.protocol.sources import SOURCES
from lungforge.bench.reporting.report import AllConfig, run_all
from lungforge.bench.scoring.fid import FidConfig
from lungforge.bench.scoring.summary import PrimaryError, PrimarySpec
from lungforge.core.errors import LungforgeError


@pytest.fixture(scope="module")
def opened(stores):
    real = open_real(stores["real"])
    return real, {"B": open_synthetic(stores["B"], real)}


def _config(**kw) -> DetectConfig:
    return DetectConfig.quick_preset(size=64, patch=16, **kw)


def test_a_sources_is_a_primary_exactly_where_the_run_has_it(opened):
    """B starts from every real slice: under --real-split test the train patients it draws on are
    outside the benchmark, so A+sources runs; under --real-split all it does not."""
    real, synthetic = opened
    test, everyone = _config(real_split="test"), _config(real_split="all")
    assert compared_conditions(real, synthetic, test) == ["B", SOURCES]
    assert compared_conditions(real, synthetic, everyone) == ["B"]
    assert primary_comparison("A+sources", real, synthetic, test, None) == PrimarySpec(SOURCES, "all")
    assert primary_comparison("A+sources@all", real, synthetic, test, [2, None]) == PrimarySpec(SOURCES, "all")
    with pytest.raises(PrimaryError) as caught:
        primary_comparison("A+sources", real, synthetic, everyone, None)
    assert str(caught.value) == (
        "primary 'A+sources': condition 'A+sources' is not compared with A in this run, expected one of B; "
        "A+sources runs only where synthetic stores draw on real patients outside the benchmark (--real-split test)"
    )
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, LungforgeError) and caught.value.field == "primary"


def test_controls_still_to_make_count_with_their_fold_controls_and_sources(opened):
    real, synthetic = opened
    with_controls = _config(real_split="test", fold_controls=True)
    assert compared_conditions(real, synthetic, with_controls, CONTROL_NAMES) == [*CONTROL_NAMES, "B", SOURCES, "hosts", "classic"]
    assert compared_conditions(real, {}, with_controls, CONTROL_NAMES) == [*CONTROL_NAMES, SOURCES, "hosts", "classic"]
    assert primary_comparison("classic", real, synthetic, with_controls, None, CONTROL_NAMES) == PrimarySpec("classic", "all")
    # the default: the user's first store, else the positive control (not the last control listed)
    assert primary_comparison(None, real, synthetic, with_controls, [2, None], CONTROL_NAMES) == PrimarySpec("B", "2")
    assert primary_comparison(None, real, {}, with_controls, None, CONTROL_NAMES) == PrimarySpec("paste", "all")
    assert primary_comparison(None, real, {}, _config(), None) is None


def test_bench_all_refuses_a_bad_primary_before_it_writes_anything(opened, tmp_path):
    real, synthetic = opened
    config = AllConfig(
        detect=_config(),
        localize=LocalizeConfig.quick_preset(size=64),
        fid=FidConfig(size=64, features="random"),
        controls=True,
        primary="A+sources",
    )
    with pytest.raises(PrimaryError, match="^primary 'A\\+sources': condition 'A\\+sources' is not compared with A in this run"):
        run_all(real, synthetic, tmp_path / "report", config, torch.device("cpu"))
    assert not (tmp_path / "report").exists()
