"""AugmentOptions: bad values refused by the object itself, naming the field; params round-trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lungforge.augment.options import AugmentOptions, output_defining
from lungforge.core.errors import ConfigError

BASE = {"data": Path("real.zarr"), "weights": "paste", "out": Path("synth.zarr"), "nodules": 2}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("nodules", -1),
        ("nodule_free", -3),
        ("sampler", "euler"),
        ("precision", "fp8"),
        ("placement", "middle"),
        ("shape", "cube"),
        ("steps", 0),
        ("batch_size", 0),
        ("shard_size", 0),
        ("per_slice", 0),
        ("retries", -1),
        ("guidance", float("nan")),
        ("guidance", 1e308),
        ("guidance", -0.5),
        ("min_contrast_hu", float("inf")),
        ("size", 8),
        ("weights", ""),
        ("seed", -1),
        ("diameter_mm", (10.0, 5.0)),
        ("diameter_mm", (1e20, 1e20)),
        ("diameter_mm", (5.0, 101.0)),
    ],
)
def test_bad_value_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        AugmentOptions(**{**BASE, field: value})
    assert caught.value.field == field
    assert "--" not in str(caught.value)  # the object speaks of fields; the CLI maps them to flags


def test_guidance_and_diameter_bounds_are_stated() -> None:
    with pytest.raises(ConfigError, match="^guidance must be a finite number, got nan$"):
        AugmentOptions(**BASE, guidance=float("nan"))
    with pytest.raises(ConfigError, match=r"^guidance must be in 0.0..20.0, got 1e\+308$"):
        AugmentOptions(**BASE, guidance=1e308)
    AugmentOptions(**BASE, guidance=20.0, diameter_mm=(0.5, 100.0))
    with pytest.raises(ConfigError, match=r"0 < MIN <= MAX <= 100 mm, got 1e\+20:1e\+20"):
        AugmentOptions(**BASE, diameter_mm=(1e20, 1e20))


def test_nothing_to_generate_and_resume_with_overwrite_are_refused() -> None:
    with pytest.raises(ConfigError, match="nodules \\+ nodule_free must be > 0"):
        AugmentOptions(**{**BASE, "nodules": 0})
    with pytest.raises(ConfigError, match="resume and overwrite") as caught:
        AugmentOptions(**BASE, resume=True, overwrite=True)
    assert caught.value.field == "resume"


def test_params_round_trip_through_json() -> None:
    options = AugmentOptions(
        **{**BASE, "nodules": 3},
        nodule_free=2,
        diameter_mm=(8.0, 20.0),
        per_slice=2,
        placement="left",
        shape="sphere",
        sampler="dpmpp",
        steps=7,
        guidance=2.0,
        precision="bf16",
        seed=11,
        min_contrast_hu=40.0,
        size=64,
        resume=True,
    )
    params = json.loads(json.dumps(options.as_params()))
    assert AugmentOptions.from_params(params) == options
    assert AugmentOptions.from_params(AugmentOptions(**BASE).as_params()) == AugmentOptions(**BASE)


def test_from_params_refuses_an_unknown_key() -> None:
    with pytest.raises(ConfigError, match="^colour is not an augment option"):
        AugmentOptions.from_params({**AugmentOptions(**BASE).as_params(), "colour": "red"})


def test_as_run_fills_diffusion_defaults_and_refuses_sampler_options_elsewhere() -> None:
    from lungforge.augment.synthesizer import SamplingSettings

    unset = AugmentOptions(**BASE)
    assert (unset.sampler, unset.steps, unset.guidance) == (None, None, None)
    assert unset.as_run(diffusion=True, weights_kind="SDM").sampling() == SamplingSettings()
    assert AugmentOptions(**BASE, steps=7).as_run(True, "SDM").sampling() == SamplingSettings(steps=7)
    assert unset.as_run(diffusion=False, weights_kind="a model-free control") == unset
    for field, value in (("sampler", "ddim"), ("steps", 50), ("guidance", 1.5)):
        with pytest.raises(
            ConfigError, match=f"^{field} is for diffusion \\(SDM\\) weights; --weights paste is a model-free control"
        ) as caught:
            AugmentOptions(**BASE, **{field: value}).as_run(diffusion=False, weights_kind="a model-free control")
        assert caught.value.field == field


def test_a_store_without_a_sampler_resumes_whatever_sampler_defaults_it_recorded() -> None:
    """Stores of SPADE and the controls once recorded the ignored defaults (ddpm, 50, 1.5);
    a resume, which records None, compares no sampler option with them."""
    now = AugmentOptions(**BASE).as_params()
    before = {**now, "sampler": "ddpm", "steps": 50, "guidance": 1.5}
    assert output_defining(before).items() >= output_defining(now).items()
    assert "sampler" not in output_defining(now)
    diffusion = AugmentOptions(**BASE).as_run(True, "SDM").as_params()
    assert output_defining(diffusion)["sampler"] == "ddpm" and output_defining(diffusion)["steps"] == 50
