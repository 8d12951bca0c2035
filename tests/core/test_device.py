from __future__ import annotations

import pytest
import torch

from lungforge.core.device import autocast, check_precision, grad_scaler, resolve_device
from lungforge.core.errors import InputError


def test_cpu_device_and_precisions():
    cpu = resolve_device("cpu")
    assert cpu.type == "cpu"
    assert check_precision("bf16", cpu) == "bf16"
    with pytest.raises(InputError, match="fp16 needs a CUDA device"):
        check_precision("fp16", cpu)
    with pytest.raises(InputError, match="--precision must be one of"):
        check_precision("fp8", cpu)
    with pytest.raises(InputError, match="--device must be"):
        resolve_device("tpu")
    assert not grad_scaler(cpu, "fp32").is_enabled()


def test_bf16_autocast_on_cpu():
    with autocast(torch.device("cpu"), "bf16"):
        out = torch.nn.functional.linear(torch.randn(2, 3), torch.randn(4, 3))
    assert out.dtype == torch.bfloat16


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_an_error():
    with pytest.raises(InputError, match="no CUDA device"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"
