"""What is MX's and NVFP4's own beyond the shared property tests (test_layouts.py runs MXFP4 and NVFP4
through all of them): every MX element through both kernels on exact data, the NaN scale code reaching
only the outputs its block touches, zero blocks, and the bits per weight."""
from __future__ import annotations

import math

import pytest
import torch

from tqk import testing as T
from tqk.kernels.tuning import KernelConfig
from tqk.kernels.weight_only import WeightFormat, launch_weight_only
from tqk.layouts import MXLayout, NVFP4Layout
from tqk.quant.mx import MX_ELEMENTS

DEVICE = T.default_device()
CONFIGS = [KernelConfig("gemv", 32), KernelConfig("gemv", 16, split_k=2, trip_blocks=4, wide=True),
           KernelConfig("gemm", 32, 16), KernelConfig("gemm", 16, 16, one_dot=True)]
CONFIG_IDS = ["gemv", "gemv-wide-splitk2", "gemm", "gemm-one-dot"]


def _launch(x, qw, config, bias=None):
    n, k = qw.shape
    return launch_weight_only(x, qw.packed, qw.scales, qw.zeros, bias, qw.quant_layout.weight_format(), n, k, config)


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("element", [e for e in MX_ELEMENTS if e != "e2m1"])  # e2m1: the shared tests
def test_every_mx_element_is_exact_on_exact_data(element, config):
    layout = MXLayout(element=element)
    case = T.exact_linear_case(layout, 2 if config.kernel == "gemv" else 5, 20, 160, torch.bfloat16, seed=3,
                               device=DEVICE)
    T.assert_exact(_launch(case.x, case.weight, config, case.bias), T.reference_linear(case.x, case.weight, case.bias))


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("layout", [MXLayout(), MXLayout(element="e4m3"), NVFP4Layout()], ids=repr)
def test_nan_scale_and_zero_blocks_stay_in_their_outputs(layout, config):
    """The E8M0 NaN code makes NaN only in its row's outputs; a zero row's outputs are the bias. (NVFP4's
    encode writes no NaN scale, and Triton's interpreter decodes e4m3's NaN code 0x7F as 480.)"""
    n, k = 24, 128
    w = T.make_weight((n, k), torch.bfloat16, "normal", 1)
    w[3] = 0  # a whole zero row: output exactly the bias
    qw = T.quantize_for_layout(w, layout)
    nan = layout.weight_format().scale_fmt == "e8m0"
    if nan:
        scales = qw.scales.clone()
        scales[1, 5] = 0xFF
        qw = type(qw)(qw.packed, scales, qw.zeros, layout, (n, k), torch.bfloat16)
    x = torch.randn(3, k, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16).to(DEVICE)
    bias = torch.randn(n, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16).to(DEVICE)
    out = _launch(x, qw, config, bias)
    assert bool(out[:, 5].isnan().all()) == nan
    others = torch.arange(n) != 5 if nan else torch.ones(n, dtype=torch.bool)
    assert not bool(out[:, others].isnan().any())
    assert torch.equal(out[:, 3], bias[3].expand(3))
    ref = T.reference_linear(x, qw, bias)
    T.assert_close_to_reference(out[:, others], ref[:, others], magnitude=T.linear_magnitude(x, qw, bias)[:, others],
                                k=k)


@pytest.mark.parametrize("layout,bits", [(MXLayout(), 4.25), (MXLayout(element="e3m2"), 6.25),
                                         (MXLayout(element="e4m3"), 8.25), (NVFP4Layout(), 4.5)], ids=repr)
def test_bits_per_weight(layout, bits):
    n, k = 64, 4096
    qw = T.quantize_for_layout(torch.randn(n, k, dtype=torch.bfloat16), layout)
    assert qw.scales.dtype == torch.uint8
    tensor_scale = 0 if qw.zeros is None else qw.zeros.numel() * 4
    assert (qw.packed_nbytes - tensor_scale) * 8 / (n * k) == bits


def test_formats_refuse_what_the_kernels_cannot_take():
    with pytest.raises(ValueError, match="group scales without zero points"):
        WeightFormat(4, "fpx21", "none", 0, 0, scale_fmt="e8m0")
    with pytest.raises(ValueError, match="scale_fmt"):
        WeightFormat(4, "fpx21", "none", 0, 32, scale_fmt="e5m2")
    with pytest.raises(ValueError, match="MX element"):
        MXLayout(element="e3m3")
    with pytest.raises(ValueError, match="multiple of 16"):
        NVFP4Layout(group_size=8)
    assert math.isclose(MXLayout().weight_format().block_k / MXLayout().group_size, 4)
