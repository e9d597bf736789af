"""Small floats (tqk/quant/fpx.py): spec-exact decode of every code, round trip of every value,
round to nearest even, saturation, agreement with torch's fp8 casts where the formats coincide, and
the kernels' decode_fpx against the formula."""
from __future__ import annotations

import math

import pytest
import torch

import triton
import triton.language as tl

import tqk  # noqa: F401 - sets TRITON_INTERPRET on a machine without a GPU, before the kernel below
from tqk.kernels.decode import decode_codes
from tqk.quant.fpx import check_fpx, dequantize_fpx, fpx_max, fpx_values, quantize_fpx

FORMATS = [(e, m) for e in range(1, 8) for m in range(0, 8 - e)]


def spec_value(code: int, e: int, m: int) -> float:
    """The value of one code from the fields, in Python floats (independent of fpx_values)."""
    sign = -1.0 if code >> (e + m) & 1 else 1.0
    exp, man = (code >> m) & ((1 << e) - 1), code & ((1 << m) - 1)
    bias = (1 << (e - 1)) - 1
    if exp == 0:
        return sign * math.ldexp(man, 1 - bias - m)
    return sign * math.ldexp((1 << m) + man, exp - bias - m)


@pytest.mark.parametrize("e,m", FORMATS)
def test_every_code_decodes_to_the_formula_and_round_trips(e, m):
    values = fpx_values(e, m)
    assert values.tolist() == [spec_value(c, e, m) for c in range(1 << (1 + e + m))]
    codes = quantize_fpx(values, e, m)
    assert torch.equal(dequantize_fpx(codes, e, m), values)  # every representable value encodes to itself
    nonzero = values != 0
    assert torch.equal(codes[nonzero], torch.arange(1 << (1 + e + m))[nonzero].to(torch.uint8))


@pytest.mark.parametrize("e,m", [(3, 2), (2, 3), (2, 2), (2, 1), (1, 1), (4, 3), (1, 0)])
def test_midpoints_round_to_even_and_large_values_saturate(e, m):
    pos = fpx_values(e, m)[: 1 << (e + m)]
    mid = (pos[:-1] + pos[1:]) / 2
    got = quantize_fpx(mid, e, m).long()
    even = torch.where(torch.arange(len(mid)) % 2 == 0, torch.arange(len(mid)), torch.arange(len(mid)) + 1)
    assert torch.equal(got, even), "a tie goes to the code with an even mantissa"
    inside = quantize_fpx(mid * (1 - 1e-9), e, m).long()
    assert torch.equal(inside, torch.arange(len(mid))), "just below a midpoint rounds down"
    big = torch.tensor([fpx_max(e, m) * 1.5, 1e30, -1e30], dtype=torch.float64)
    assert dequantize_fpx(quantize_fpx(big, e, m), e, m).tolist() == [fpx_max(e, m), fpx_max(e, m), -fpx_max(e, m)]


@pytest.mark.parametrize("e,m,dtype", [(4, 3, torch.float8_e4m3fn), (5, 2, torch.float8_e5m2)])
def test_agrees_with_torch_float8_casts_inside_its_finite_range(e, m, dtype):
    x = torch.randn(200_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 40
    x = x.clamp(-torch.finfo(dtype).max, torch.finfo(dtype).max)
    ours = dequantize_fpx(quantize_fpx(x, e, m), e, m)
    assert torch.equal(ours, x.to(dtype).double())


def test_e2m1_agrees_with_torch_float4_values():
    if not hasattr(torch, "float4_e2m1fn_x2"):
        pytest.skip("torch has no float4_e2m1fn_x2")
    assert fpx_values(2, 1)[:8].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]  # OCP MX spec's E2M1


@pytest.mark.parametrize("e,m", [(0, 3), (4, 4), (7, 1), (-1, 2), (2, -1)])
def test_bad_formats_name_the_parameters(e, m):
    with pytest.raises(ValueError, match="ebits"):
        check_fpx(e, m)


def test_kernel_decode_of_every_code_of_every_format():
    """decode_codes (what the weight-only kernels run) against the formula, all codes, all formats."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    codes = torch.arange(256, dtype=torch.int32, device=device)
    for e, m in FORMATS:
        out = torch.empty(256, dtype=torch.float32, device=device)
        decode_all[(1,)](codes, out, N=256, ELEMENT=f"fpx{e}{m}")
        n = 1 << (1 + e + m)
        assert torch.equal(out[:n].double().cpu(), fpx_values(e, m)), (e, m)


@triton.jit
def decode_all(codes_ptr, out_ptr, N: tl.constexpr, ELEMENT: tl.constexpr):
    offs = tl.arange(0, N)
    tl.store(out_ptr + offs, decode_codes(tl.load(codes_ptr + offs), ELEMENT))
