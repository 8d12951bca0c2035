import dataclasses

import torch
from torch.utils.flop_counter import FlopCounterMode

from lungforge.models.flops import sdm_forward_flops, sdm_train_flops, spade_forward_flops
from lungforge.models.presets import PRESETS, SDMConfig
from lungforge.models.sdm_unet import SDMUNet

SMALL = SDMConfig(
    image_size=16,
    model_channels=16,
    channel_mult=(1, 2),
    num_res_blocks=1,
    attention_resolutions=(8,),
    num_head_channels=16,
    norm_groups=4,
    label_embed_channels=8,
)


def test_sdm_flops_scale_with_batch_and_backward_costs_about_twice_the_forward():
    one = sdm_forward_flops(SMALL)
    assert one > 0 and sdm_forward_flops(SMALL, batch_size=2) == 2 * one
    assert 2.5 * one < sdm_train_flops(SMALL) < 3.5 * one


def test_meta_count_equals_a_real_forward_with_explicit_attention_matmuls():
    torch.manual_seed(0)
    model = SDMUNet(SMALL).eval()
    x, t, onehot = torch.zeros(1, 1, 16, 16), torch.zeros(1, dtype=torch.long), torch.zeros(1, 6, 16, 16)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH), counter:
        model(x, t, onehot)
    assert sdm_forward_flops(SMALL) == counter.get_total_flops()


def test_paper_presets_cost_what_issue_12_measured():
    # Issue 12: one paper SDM pass at 256² ≈ 3.42 TFLOP, tiny 4.7 GFLOP, paper SPADE ≈ 1.1 TFLOP at 512².
    assert abs(sdm_forward_flops(PRESETS["paper"].sdm) / 3.42e12 - 1) < 0.02
    assert abs(sdm_forward_flops(PRESETS["tiny"].sdm) / 4.7e9 - 1) < 0.02
    assert abs(spade_forward_flops(PRESETS["paper"].spade) / 1.1e12 - 1) < 0.05


def test_inpainting_a_64_px_window_costs_at_least_16_times_less_than_a_256_px_slice():
    from lungforge.models.presets import inpaint_preset

    paper = PRESETS["paper"]
    window = inpaint_preset(paper, 64).sdm
    assert window.attention_resolutions == (8, 4, 2) and window.context_channels == 2
    # The first conv reads the context: the window model costs more than the same UNet without it.
    assert sdm_forward_flops(window) > sdm_forward_flops(dataclasses.replace(window, context_channels=0))
    assert sdm_forward_flops(paper.sdm) >= 16 * sdm_forward_flops(window)
