import json

import pytest

from lungforge.core.errors import LungforgeError
from lungforge.core.labels import NUM_CLASSES
from lungforge.models.presets import (
    PRESETS,
    SDMConfig,
    SPADEConfig,
    config_to_dict,
    get_preset,
    sdm_config_from_dict,
    spade_config_from_dict,
)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_configs_round_trip_through_json(name):
    preset = get_preset(name)
    sdm = sdm_config_from_dict(json.loads(json.dumps(config_to_dict(preset.sdm))))
    spade = spade_config_from_dict(json.loads(json.dumps(config_to_dict(preset.spade))))
    assert sdm == preset.sdm and spade == preset.spade
    assert isinstance(sdm.channel_mult, tuple) and isinstance(sdm.attention_resolutions, tuple)
    assert preset.name == name


def test_paper_preset_matches_the_paper():
    sdm, spade = PRESETS["paper"].sdm, PRESETS["paper"].spade
    assert (sdm.image_size, sdm.model_channels, sdm.channel_mult) == (256, 256, (1, 1, 2, 2, 4, 4))
    assert (sdm.num_res_blocks, sdm.attention_resolutions, sdm.num_head_channels) == (2, (32, 16, 8), 64)
    assert sdm.resblock_updown and sdm.use_scale_shift_norm and sdm.learn_sigma
    assert (sdm.diffusion_steps, sdm.cond_drop_prob, sdm.label_embed_channels) == (1000, 0.2, 128)
    assert (spade.image_size, spade.ngf) == (512, 64)
    assert sdm.num_classes == spade.num_classes == NUM_CLASSES


def test_tiny_preset_is_64_pixels():
    tiny = PRESETS["tiny"]
    assert tiny.sdm.image_size == tiny.spade.image_size == 64
    assert tiny.sdm.out_channels == 2


def test_unknown_preset_names_the_valid_ones():
    with pytest.raises(LungforgeError, match="'huge'.*paper, tiny"):
        get_preset("huge")


def test_unknown_keys_are_rejected():
    data = config_to_dict(PRESETS["tiny"].sdm) | {"widht": 3}
    with pytest.raises(LungforgeError, match="widht"):
        sdm_config_from_dict(data)
    with pytest.raises(LungforgeError, match="colour"):
        spade_config_from_dict({"image_size": 64, "colour": 1})


def test_invalid_values_are_rejected():
    base = config_to_dict(PRESETS["tiny"].sdm)
    with pytest.raises(LungforgeError, match="image_size"):
        sdm_config_from_dict(base | {"image_size": 66})
    with pytest.raises(ValueError, match="norm_groups"):
        SDMConfig(**(sdm_config_from_dict(base).__dict__ | {"norm_groups": 7}))
    with pytest.raises(ValueError, match="num_upsampling_layers"):
        SPADEConfig(image_size=64, num_upsampling_layers="most")


def test_inpaint_preset_keeps_the_unet_and_refuses_a_window_it_cannot_halve():
    from lungforge.core.errors import LungforgeError
    from lungforge.models.presets import inpaint_preset

    tiny = PRESETS["tiny"]
    window = inpaint_preset(tiny, 32)
    assert window.name == "tiny" and window.spade == tiny.spade
    sdm = window.sdm
    assert (sdm.image_size, sdm.context_channels, sdm.attention_resolutions) == (32, 2, (8,)) and sdm.inpaint
    assert (sdm.model_channels, sdm.channel_mult, sdm.num_res_blocks) == (32, (1, 2, 2), 1)
    assert not tiny.sdm.inpaint
    with pytest.raises(LungforgeError, match="--window 30: image_size must be a positive multiple of 2\\*\\*2"):
        inpaint_preset(tiny, 30)
