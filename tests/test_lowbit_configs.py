"""Weight-only configs of issue 12 through the public API: accuracy floors on a seeded
Linear(1024, 1024) (output SQNR against float64, x and W ~ N(0, 1)), the fp8 special cases, and
bad input naming the parameter."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import tqk
from tqk import testing as T

DEV = T.default_device()

# (ebits, mbits, group_size) -> floor in dB (issue 12; round-to-nearest simulations give 0.5 dB more)
FPX_FLOORS = {(3, 2, None): 25.0, (2, 3, None): 30.5, (2, 2, None): 24.4, (2, 1, None): 18.2}


@pytest.fixture(scope="module")
def seeded_linear():
    return T.seeded_linear(32)


@pytest.mark.parametrize("fmt,floor", FPX_FLOORS.items(), ids=[f"e{e}m{m}" for e, m, _ in FPX_FLOORS])
def test_fpx_accuracy_floor(seeded_linear, fmt, floor):
    w, x, ref = seeded_linear
    qw = tqk.quantize_weight(w.float().to(DEV), tqk.FPXWeightOnlyConfig(*fmt))
    assert isinstance(qw.quant_layout, tqk.layouts.FpxLayout)
    got = T.sqnr(ref, qw.linear(x.float().to(DEV)).double().cpu())
    assert got >= floor, f"FPXWeightOnlyConfig{fmt}: {got:.2f} dB < {floor}"


@pytest.mark.parametrize("ebits,mbits,dtype", [(4, 3, torch.float8_e4m3fn), (5, 2, torch.float8_e5m2)])
def test_fpx_fp8_formats_are_torchs(ebits, mbits, dtype):
    qw = tqk.quantize_weight(torch.randn(32, 64), tqk.FPXWeightOnlyConfig(ebits, mbits))
    assert qw.quant_layout == tqk.layouts.Float8Layout(float8_dtype=dtype)


def test_fpx_group_scales_and_report():
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(48, 16)).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="left 1 layer"):
        report = tqk.quantize_(model, tqk.FPXWeightOnlyConfig(2, 1, group_size=32))
    assert list(report.quantized) == ["0"] and "group_size=32 does not divide in_features=48" in report.skipped["1"]
    assert model[0].quant_layout == tqk.layouts.FpxLayout(group_size=32, ebits=2, mbits=1)


@pytest.mark.parametrize("kwargs,match", [(dict(ebits=0, mbits=3), "ebits"), (dict(ebits=4, mbits=4), "ebits"),
                                          (dict(ebits=3, mbits=2, group_size=20), "group_size")])
def test_fpx_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tqk.FPXWeightOnlyConfig(**kwargs)


UINTX_FLOORS = {(3, 32): 14.7, (5, 128): 25.7, (6, 128): 31.9, (7, 128): 38.0}


@pytest.mark.parametrize("fmt,floor", UINTX_FLOORS.items(), ids=[f"uint{b}-g{g}" for b, g in UINTX_FLOORS])
def test_uintx_accuracy_floor(seeded_linear, fmt, floor):
    w, x, ref = seeded_linear
    qw = tqk.quantize_weight(w.float().to(DEV), tqk.UIntxWeightOnlyConfig(*fmt))
    got = T.sqnr(ref, qw.linear(x.float().to(DEV)).double().cpu())
    assert got >= floor, f"UIntxWeightOnlyConfig{fmt}: {got:.2f} dB < {floor}"


@pytest.mark.parametrize("config", [tqk.UIntxWeightOnlyConfig(3, 32), tqk.UIntxWeightOnlyConfig(1, 64),
                                    tqk.UIntxWeightOnlyConfig(7, 16), tqk.UIntXWeightOnlyConfig(torch.uint5, 32),
                                    tqk.IntxWeightOnlyConfig(torch.int3),
                                    tqk.IntxWeightOnlyConfig(torch.int6, tqk.PerAxis(0)),
                                    tqk.IntxWeightOnlyConfig(torch.int2, mapping_type=tqk.MappingType.ASYMMETRIC)],
                         ids=repr)
def test_integer_error_is_at_most_half_a_step(config):
    """Round to nearest with min/max ranges: every element within half its group's step of the weight
    (float64 dequantization of the stored codes, scales and zero points; 1e-4 of a step for the
    float32 rounding of w / scale, where a wrong rounding is a whole step)."""
    w = T.make_weight((48, 128), torch.float32, "normal", seed=1)
    qw = tqk.quantize_weight(w, config)
    err = (T.dequantize_reference(qw) - w.double()).abs()
    step = qw.scales.double().t().repeat_interleave(128 // qw.scales.shape[0], 1)
    assert bool((err <= step / 2 * (1 + 1e-4)).all()), f"max error {float((err / step).max()):.3f} steps"


def test_uintx_old_spelling_is_the_same_config():
    w = torch.randn(16, 64)
    a = tqk.quantize_weight(w, tqk.UIntXWeightOnlyConfig(dtype=torch.uint3, group_size=32))
    b = tqk.quantize_weight(w, tqk.UIntxWeightOnlyConfig(bit_width=3, group_size=32))
    assert a.quant_layout == b.quant_layout and torch.equal(a.packed, b.packed) and torch.equal(a.scales, b.scales)


@pytest.mark.parametrize("make,match", [
    (lambda: tqk.UIntxWeightOnlyConfig(bit_width=0), "bit width 0 is outside 1-8"),
    (lambda: tqk.UIntxWeightOnlyConfig(bit_width=9), "bit width 9 is outside 1-8"),
    (lambda: tqk.UIntxWeightOnlyConfig(bit_width=3, group_size=24), "group_size=24"),
    (lambda: tqk.UIntxWeightOnlyConfig(bit_width=5, use_hqq=True), "use_hqq takes bit widths"),
    (lambda: tqk.UIntXWeightOnlyConfig(dtype=torch.int16), "dtype"),
    (lambda: tqk.IntxWeightOnlyConfig(weight_dtype=torch.int16), "weight_dtype"),
    (lambda: tqk.IntxWeightOnlyConfig(granularity=tqk.PerRow()), "granularity"),
])
def test_integer_bad_parameters(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_integer_group_that_does_not_divide_k_is_reported():
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(96, 16))
    with pytest.warns(UserWarning, match="left 1 layer"):
        report = tqk.quantize_(model, tqk.UIntxWeightOnlyConfig(3, 64))
    assert list(report.quantized) == ["0"] and "group_size=64 does not divide in_features=96" in report.skipped["1"]


# --- codebooks ----------------------------------------------------------------------------------
CODEBOOK_FLOORS = {torch.uint4: 19.0, torch.uint8: 34.8}  # issue 12: k-means simulations give 19.6, 35.3 dB


@pytest.mark.parametrize("dtype,floor", CODEBOOK_FLOORS.items(), ids=["16-entries", "256-entries"])
def test_codebook_accuracy_floor(seeded_linear, dtype, floor):
    w, x, ref = seeded_linear
    qw = tqk.quantize_weight(w.float().to(DEV), tqk.CodebookWeightOnlyConfig(dtype))
    assert qw.quant_layout == tqk.layouts.CodebookLayout(nbits=8 if dtype == torch.uint8 else 4)
    assert qw.table.shape == (qw.quant_layout.table_entries,)
    got = T.sqnr(ref, qw.linear(x.float().to(DEV)).double().cpu())
    assert got >= floor, f"CodebookWeightOnlyConfig({dtype}): {got:.2f} dB < {floor}"


def test_codebook_scale_blocks_and_report():
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(48, 16)).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="left 1 layer"):
        report = tqk.quantize_(model, tqk.CodebookWeightOnlyConfig(torch.uint3, scale_block_size=32))
    assert list(report.quantized) == ["0"]
    assert "scale_block_size=32 does not divide in_features=48" in report.skipped["1"]
    assert model[0].quant_layout == tqk.layouts.CodebookLayout(group_size=32, nbits=3)
    assert model[0].scales.shape == (2, 32) and model[0].table.dtype == torch.bfloat16


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(dtype=torch.int4), ValueError, "dtype"), (dict(dtype=torch.uint16), ValueError, "dtype"),
    (dict(dtype=torch.float8_e4m3fn), ValueError, "dtype"),
    (dict(block_size=(1, 9)), ValueError, "block_size"), (dict(block_size=(2, 1)), ValueError, "block_size"),
    (dict(block_size=(1,)), ValueError, "block_size"), (dict(block_size=(1, 4)), NotImplementedError, "vector codes"),
    (dict(scale_block_size=20), ValueError, "scale_block_size"), (dict(scale_block_size=0), ValueError, "scale_block")])
def test_codebook_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        tqk.CodebookWeightOnlyConfig(**kwargs)


def test_codebook_config_is_torchaos_signature():
    config = tqk.CodebookWeightOnlyConfig(torch.uint2, [1, 1], 64)  # positional, as torchao's dataclass
    assert (config.dtype, config.block_size, config.scale_block_size) == (torch.uint2, (1, 1), 64)
    assert tqk.CodebookWeightOnlyConfig() == tqk.CodebookWeightOnlyConfig(torch.uint4, (1, 1), None)
    hash(config)
