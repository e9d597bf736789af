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


# 256 pairs (block_size=(1, 2)): 4 bits per weight, as 16 scalar entries. Measured 21.06 dB, where 16
# scalar entries give 20.26 (the test above): a 2-D table fits the N(0, 1) pairs' round cloud better than
# a 16 x 16 grid. The floor sits 0.2 dB under it: k-means on its seeded sample moved by less than that
# with the seed and the sample size (21.04 to 21.10 dB for seeds 0-2 and 8x the sample).
VECTOR_FLOOR = 20.85


def test_vector_codebook_accuracy_beats_scalar_at_the_same_bits(seeded_linear):
    w, x, ref = seeded_linear
    qw = tqk.quantize_weight(w.float().to(DEV), tqk.CodebookWeightOnlyConfig(torch.uint8, block_size=(1, 2)))
    assert qw.quant_layout == tqk.layouts.CodebookLayout(nbits=8, vector_size=2)
    assert qw.table.shape == (256, 2) and qw.codes().shape == (1024, 512)
    assert qw.packed.numel() * 4 == 1024 * 1024 // 2  # 4 bits per weight, plus the table and a scale per row
    got = T.sqnr(ref, qw.linear(x.float().to(DEV)).double().cpu())
    assert got >= VECTOR_FLOOR, f"CodebookWeightOnlyConfig(uint8, (1, 2)): {got:.2f} dB < {VECTOR_FLOOR}"
    assert got > CODEBOOK_FLOORS[torch.uint4] + 1.0


def test_codebook_vectors_that_do_not_divide_k_are_reported():
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(36, 16), nn.Linear(48, 8)).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="left 1 layer"):
        report = tqk.quantize_(model, tqk.CodebookWeightOnlyConfig(torch.uint4, block_size=(1, 8)))
    assert list(report.quantized) == ["0", "2"]
    assert "block_size=(1, 8): 8 does not divide in_features=36" in report.skipped["1"]
    assert model[0].quant_layout == tqk.layouts.CodebookLayout(nbits=4, vector_size=8)
    assert model[0].table.shape == (16, 8) and type(model[1]) is nn.Linear
    x = torch.randn(3, 64, dtype=torch.bfloat16)
    T.assert_close_to_reference(model[0](x), T.reference_linear(x, model[0].weight, model[0].bias), x=x,
                                weight=model[0].weight, bias=model[0].bias)


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
    (dict(block_size=(1,)), ValueError, "block_size"), (dict(block_size=(1, 0)), ValueError, "block_size"),
    (dict(block_size=(1, 16)), ValueError, r"block_size=\(1, 16\) must be \(1, v\) with v in 1..8"),
    (dict(block_size=(1, 4), scale_block_size=32), ValueError, "scale_block_size=32 must be .* multiple of 64"),
    (dict(scale_block_size=20), ValueError, "scale_block_size"), (dict(scale_block_size=0), ValueError, "scale_block")])
def test_codebook_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        tqk.CodebookWeightOnlyConfig(**kwargs)


def test_codebook_config_is_torchaos_signature():
    config = tqk.CodebookWeightOnlyConfig(torch.uint2, [1, 1], 64)  # positional, as torchao's dataclass
    assert (config.dtype, config.block_size, config.scale_block_size) == (torch.uint2, (1, 1), 64)
    assert tqk.CodebookWeightOnlyConfig() == tqk.CodebookWeightOnlyConfig(torch.uint4, (1, 1), None)
    hash(config)
