"""Accuracy floors: output SQNR of a quantized nn.Linear(1024, 1024) (bf16, N(0, 0.02) weights,
seeded) against the float layer, through the real kernels (interpreter on CPU).

Floors sit a little under what min/max quantization gives on normal weights (theory: int8
per-row ~41 dB, e4m3 per-row ~31 dB, uint4 asymmetric g128 ~20 dB, g32 ~22 dB), so they catch a
lost bit or a wrong group, not noise."""
from __future__ import annotations

import functools
import warnings

import pytest
import torch
from torch import nn

import tqk
from tqk import testing as T

DT = torch.bfloat16
FLOORS = [
    (tqk.Int8WeightOnlyConfig(), 40.0),
    (tqk.Float8WeightOnlyConfig(), 28.0),
    (tqk.Int4WeightOnlyConfig(group_size=128), 19.0),
    (tqk.Int4WeightOnlyConfig(group_size=32), 22.0),
]


def make_layer(seed=0):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(1024, 1024, dtype=DT, device=T.default_device())
    with torch.no_grad():
        lin.weight.copy_(torch.randn(1024, 1024, generator=g) * 0.02)
        lin.bias.copy_(torch.randn(1024, generator=g) * 0.02)
    return lin


@functools.lru_cache(maxsize=None)
def inputs():
    return torch.randn(4, 1024, generator=torch.Generator().manual_seed(1)).to(DT).to(T.default_device())


@functools.lru_cache(maxsize=None)
def output_sqnr(config) -> float:
    lin = make_layer()
    x = inputs()
    ref = T.reference_linear(x, lin.weight, lin.bias)  # the float layer, in float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hqq's import-time warnings
        report = tqk.quantize_(lin, config)
    assert list(report.quantized) == [""], report
    with torch.no_grad():
        out = lin(x)
    assert out.dtype == DT and bool(torch.isfinite(out).all())
    return T.sqnr(ref, out)


@pytest.mark.parametrize("config,floor", FLOORS, ids=["int8-row", "fp8-e4m3-row", "int4-g128", "int4-g32"])
def test_output_sqnr_floor(config, floor):
    assert output_sqnr(config) >= floor


@pytest.mark.parametrize("group_size", [128, 32])
def test_hqq_no_worse_than_min_max(group_size):
    pytest.importorskip("hqq")
    plain = output_sqnr(tqk.Int4WeightOnlyConfig(group_size=group_size))
    hqq = output_sqnr(tqk.Int4WeightOnlyConfig(group_size=group_size, use_hqq=True))
    assert hqq >= plain - 0.05, (hqq, plain)


@pytest.mark.parametrize("bits,group_size", [(2, 64), (3, 128)], ids=["uint2-g64", "uint3-g128"])
def test_hqq_no_worse_than_round_to_nearest_at_low_bits(bits, group_size):
    """Issue 12: at 2 and 3 bits HQQ's zero points and scales must do at least as well as the
    min-max round to nearest at the same group size (where it matters most)."""
    pytest.importorskip("hqq")
    plain = output_sqnr(tqk.UIntxWeightOnlyConfig(bit_width=bits, group_size=group_size))
    hqq = output_sqnr(tqk.UIntxWeightOnlyConfig(bit_width=bits, group_size=group_size, use_hqq=True))
    assert hqq >= plain - 0.05, (hqq, plain)
