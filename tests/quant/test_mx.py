"""MX and NVFP4 encodes (tqk/quant/mx.py) against the OCP MX v1.0 formulas and torch's own dtypes:
E8M0 scales by both rules, the NaN code, zero blocks, saturation, ties; NVFP4's two-level scale."""
from __future__ import annotations

import math

import pytest
import torch

import tqk  # noqa: F401 - sets TRITON_INTERPRET on a machine without a GPU
from tqk.quant import mx

ELEMENTS = list(mx.MX_ELEMENTS)


def test_e8m0_decode_of_every_code_is_torchs_float8_e8m0fnu():
    codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
    ours = mx.decode_e8m0(codes)
    assert ours[:255].tolist() == [math.ldexp(1.0, c - 127) for c in range(255)] and math.isnan(ours[255])
    theirs = codes.view(torch.float8_e8m0fnu).double()
    assert torch.equal(ours[:255], theirs[:255]) and bool(theirs[255].isnan())


@pytest.mark.parametrize("element", ELEMENTS)
def test_element_codes_decode_to_the_formula(element):
    """Every element code against the spec's fields (sign, exponent, mantissa; e4m3 / e5m2: torch)."""
    e, m, emax, vmax = mx.MX_ELEMENTS[element]
    bits = 1 + e + m
    codes = torch.arange(1 << bits, dtype=torch.int32).to(torch.uint8)
    values = mx.decode_elements(codes, element)
    bias = (1 << (e - 1)) - 1
    finite = values[torch.isfinite(values)]
    assert float(finite.max()) == vmax
    assert math.floor(math.log2(vmax)) == emax
    if element in ("e4m3", "e5m2"):
        return
    for c in range(1 << bits):
        sign = -1.0 if c >> (e + m) else 1.0
        exp, man = (c >> m) & ((1 << e) - 1), c & ((1 << m) - 1)
        want = math.ldexp(man, 1 - bias - m) if exp == 0 else math.ldexp((1 << m) + man, exp - bias - m)
        assert float(values[c]) == sign * want, (element, c)


def test_e2m1_values_are_the_spec_table_and_torchs_float4():
    assert mx.decode_elements(torch.arange(16).to(torch.uint8), "e2m1").tolist() == \
        [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0]
    assert hasattr(torch, "float4_e2m1fn_x2")  # the storage dtype (two codes per byte; no casts in torch)


@pytest.mark.parametrize("element", ELEMENTS)
def test_elements_round_to_nearest_even_and_saturate(element):
    codes = torch.arange(1 << mx.element_bits(element), dtype=torch.int32).to(torch.uint8)
    values = mx.decode_elements(codes, element)
    pos = torch.unique(values[torch.isfinite(values) & (values >= 0)])  # ascending
    mid = (pos[:-1] + pos[1:]) / 2
    got = mx.decode_elements(mx.encode_elements(mid, element), element)
    lo_code = mx.encode_elements(pos[:-1], element)
    hi_code = mx.encode_elements(pos[1:], element)
    even = torch.where(lo_code % 2 == 0, pos[:-1], pos[1:])
    assert torch.equal(got, even), "a tie goes to the even mantissa"
    assert bool(((lo_code % 2) != (hi_code % 2)).all())
    assert torch.equal(mx.decode_elements(mx.encode_elements(mid * (1 - 1e-9), element), element), pos[:-1])
    vmax = mx.MX_ELEMENTS[element][3]
    big = torch.tensor([vmax * 1.01, vmax * 4, 1e300, -1e300, math.inf, -math.inf], dtype=torch.float64)
    assert mx.decode_elements(mx.encode_elements(big, element), element).tolist() == [vmax, vmax, vmax, -vmax,
                                                                                      vmax, -vmax]


@pytest.mark.parametrize("element,dtype", [("e4m3", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)])
def test_fp8_elements_are_torchs_casts(element, dtype):
    """Inside the finite range (torch's cast does not saturate): the same bits as torch's float32 cast."""
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(0)) * torch.finfo(dtype).max / 8
    x = x.clamp(-torch.finfo(dtype).max, torch.finfo(dtype).max)
    x = x[x != 0]
    assert torch.equal(mx.encode_elements(x, element), x.to(dtype).view(torch.uint8))


def _blocks(rows, generator, scale_range=40):
    e = torch.randint(-scale_range, scale_range, (rows, 1), generator=generator).double()
    return torch.randn(rows, 32, generator=generator, dtype=torch.float64) * torch.exp2(e)


@pytest.mark.parametrize("element", ELEMENTS)
def test_floor_scale_is_the_spec_formula(element):
    """X = 2**(floor(log2(amax)) - emax_elem), from Python's exact math (math.frexp), per block."""
    g = torch.Generator().manual_seed(1)
    x = _blocks(300, g).float()  # float32 data, as weights are
    # powers of two and their neighbours: where a log2 rounding would move the floor
    top = torch.exp2(torch.arange(-10, 10).float())
    x[:40] = x[:40] / x[:40].abs().amax(-1, keepdim=True) * torch.cat([top, top])[:, None] / 2
    x[:20, 0] = top
    x[20:40, 0] = torch.nextafter(x[:20, 0], torch.zeros(20))
    codes, scales = mx.quantize_mx(x, element, mode="floor")
    emax = mx.MX_ELEMENTS[element][2]
    for row, code in zip(x.abs().amax(-1).tolist(), scales.view(-1).tolist()):
        assert code == min(254, max(0, math.frexp(row)[1] - 1 - emax + 127)), (row, code)


@pytest.mark.parametrize("element", ELEMENTS)
def test_rceil_scale_rounds_the_float32_quotient_up(element):
    """X = 2**ceil(log2(float32(amax / elem_max))): no element saturates, and half that X would."""
    g = torch.Generator().manual_seed(2)
    x = _blocks(300, g).float()
    vmax = mx.MX_ELEMENTS[element][3]
    top = vmax * torch.exp2(torch.arange(-10, 10).float())  # quotients exactly powers of two
    x[:20] = x[:20] / x[:20].abs().amax(-1, keepdim=True) * top[:, None] / 2
    x[:20, 0] = top
    codes, scales = mx.quantize_mx(x, element, mode=mx.ScaleCalculationMode.RCEIL)
    amax = x.abs().amax(-1).double()
    s = mx.decode_e8m0(scales.view(-1))
    assert bool((amax / s <= vmax).all()), "RCEIL never saturates"
    assert bool((amax / (s / 2) > vmax).all()), "and its scale is the smallest power of two that does not"
    assert torch.equal(scales[:20].view(-1).long(), torch.arange(-10, 10) + 127)


@pytest.mark.parametrize("mode", ["floor", "rceil"])
def test_zero_blocks_nan_blocks_and_range_ends(mode):
    x = torch.randn(6, 64, generator=torch.Generator().manual_seed(3))
    x[0, :32] = 0  # an all-zero block
    x[1, 40] = math.nan  # NaN and inf blocks: the NaN scale code, elements 0
    x[2, 3] = math.inf
    x[3, 32:] = 2.0**-140  # below the code's range: clamped to 2**-127 (code 0), elements flush
    x[4, :32] = 3e38  # above: FLOOR's exponent 127 - 8 fits, elements saturate only if it did not
    codes, scales = mx.quantize_mx(x, "e4m3", mode=mode)
    assert scales[0, 0] == 0 and bool((codes[0, :32] == 0).all())
    assert scales[1, 1] == mx.E8M0_NAN and bool((codes[1, 32:] == 0).all()) and scales[1, 0] != mx.E8M0_NAN
    assert scales[2, 0] == mx.E8M0_NAN and scales[2, 1] != mx.E8M0_NAN
    assert scales[3, 1] == 0
    back = mx.dequantize_mx(codes, scales, "e4m3")
    assert bool((back[0, :32] == 0).all()) and bool(back[1, 32:].isnan().all()) and bool(back[2, :32].isnan().all())
    assert not bool(back[1, :32].isnan().any()) and not bool(back[2, 32:].isnan().any())
    rel = ((back[4, :32] - x[4, :32].double()) / x[4, :32].double()).abs()
    assert float(rel.max()) <= 2.0**-4


@pytest.mark.parametrize("element", ELEMENTS)
def test_mx_round_trip_is_nearest(element):
    """Each element is the nearest representable value of x / X (x itself when it is representable)."""
    g = torch.Generator().manual_seed(4)
    x = _blocks(64, g, scale_range=8).float()
    codes, scales = mx.quantize_mx(x, element, mode="rceil")
    back = mx.dequantize_mx(codes, scales, element)
    assert torch.equal(mx.dequantize_mx(*mx.quantize_mx(back, element, mode="rceil"), element), back)
    grid = mx.decode_elements(torch.arange(1 << mx.element_bits(element), dtype=torch.int32).to(torch.uint8),
                              element)
    grid = grid[torch.isfinite(grid)]
    s = mx.decode_e8m0(scales).repeat_interleave(32, -1)
    best = ((x.double() / s)[..., None] - grid).abs().amin(-1)
    assert torch.equal(((back - x.double()) / s).abs(), best)


def test_nvfp4_scales_are_the_formula_and_torchs_e4m3():
    g = torch.Generator().manual_seed(5)
    x = (torch.randn(8, 64, generator=g) * torch.exp2(torch.randint(-6, 6, (8, 1), generator=g).float()))
    x[0, :16] = 0
    codes, scales, ts = mx.quantize_nvfp4(x)
    amax = x.abs().amax()
    assert ts.dtype == torch.float32 and float(ts) == float(amax / 2688.0)
    want = ((x.view(8, 4, 16).abs().amax(-1) / 6.0) / ts).to(torch.float8_e4m3fn).view(torch.uint8)
    assert torch.equal(scales, want)
    assert scales[0, 0] == 0 and bool((codes[0, :16] == 0).all())
    assert int(scales.max()) == 0x7E  # the block holding amax gets 448
    back = mx.dequantize_nvfp4(codes, scales, ts)
    s = mx.decode_e4m3(scales).repeat_interleave(16, -1) * float(ts)
    assert bool((back[s == 0] == 0).all())
    ok = s > 0
    u = x.double()[ok] / s[ok]  # each element: the nearest e2m1 value of x / scale, saturating at 6
    grid = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)
    nearest = (u.abs().clamp(max=6.0)[:, None] - grid).abs().amin(-1)
    assert torch.equal((back[ok] / s[ok] - u.clamp(-6.0, 6.0)).abs(), nearest)


def test_nvfp4_without_tensor_scale_and_zero_tensor():
    x = torch.zeros(2, 32)
    codes, scales, ts = mx.quantize_nvfp4(x)
    assert float(ts) == 1.0 and bool((codes == 0).all()) and bool((scales == 0).all())
    y = torch.full((1, 16), 1000.0)  # tensor scale 1: the block scale 1000 / 6 fits e4m3 (168)
    codes, scales, ts = mx.quantize_nvfp4(y, tensor_scale=torch.ones(1))
    assert float(mx.decode_e4m3(scales)) == 160.0 and float(mx.dequantize_nvfp4(codes, scales, ts)[0, 0]) == 960.0


def test_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="MX element 'e3m3'"):
        mx.quantize_mx(torch.zeros(1, 32), "e3m3")
    with pytest.raises(ValueError, match="multiple of the MX block size 32"):
        mx.quantize_mx(torch.zeros(1, 48), "e2m1")
    with pytest.raises(ValueError, match="multiple of the NVFP4 block size 16"):
        mx.quantize_nvfp4(torch.zeros(1, 40))
    with pytest.raises(ValueError):
        mx.e8m0_scale(torch.ones(1), "e2m1", mode="even")


# --- the run-time activation quantizers (tqk/quant/activation.py: float32 torch ops) --------------------
def _hard_activations(dtype) -> torch.Tensor:
    """[24, 128] in `dtype`: magnitudes over many binades, a zero block, NaN and Inf blocks, exact ties
    (multiples of half an e2m1 / e3m2 / e2m3 step on blocks whose amax is a power of two), and for float32
    a subnormal row and one near float32's largest value."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(24, 128, generator=g) * torch.exp2(torch.randint(-12, 12, (24, 1), generator=g).float())
    x[1, :32] = 0
    x[2, 40] = math.nan
    x[3, 100] = math.inf
    ties = torch.randint(-64, 65, (4, 128), generator=g).float() / 16  # multiples of 2**-4 in [-4, 4]
    ties[:, ::32] = 4.0  # amax 4 in every block
    x[4:8] = ties
    if dtype == torch.float32:
        x[8] = torch.randn(128, generator=g) * 2.0**-140
        x[9] = torch.randn(128, generator=g).clamp(-3, 3) * 2.0**125
    return x.to(dtype)


@pytest.mark.parametrize("mode", ["floor", "rceil"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("element", ELEMENTS)
def test_mx_activation_quantizer_is_quantize_mx(element, dtype, mode):
    """The run-time MX quantizer writes quantize_mx's scales and element values exactly (dividing by a
    power of two is exact in float32), NaN and Inf blocks as the NaN scale, every element in the GEMM's
    operand bytes (e5m2 bits for e5m2, else e4m3 bits)."""
    from tqk.quant.activation import dequantize_activation, quantize_mx_activation

    x = _hard_activations(dtype)
    codes, scales = quantize_mx_activation(x, element, mode)
    want_codes, want_scales = mx.quantize_mx(x, element, mode=mode)
    assert codes.dtype == scales.dtype == torch.uint8 and codes.shape == x.shape and scales.shape == (24, 4)
    assert torch.equal(scales, want_scales)
    got = dequantize_activation(codes, scales, element, "mx")
    want = mx.dequantize_mx(want_codes, want_scales, element)
    assert torch.equal(got.isnan(), want.isnan()) and torch.equal(got.nan_to_num(), want.nan_to_num())
    operand = codes.view(torch.float8_e5m2 if element == "e5m2" else torch.float8_e4m3fn)
    assert bool(torch.isfinite(operand.float()).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32], ids=str)
@pytest.mark.parametrize("fixed", [0.0, 1.0], ids=["dynamic", "fixed"])
def test_nvfp4_activation_quantizer_is_quantize_nvfp4(dtype, fixed):
    """float16 values e2m1 * e4m3 block scale and the float32 tensor scale for every row (one value,
    expanded): on the finite rows, quantize_nvfp4's values but where float32's x / (block scale * tensor
    scale) lies within 2**-21 of a rounding boundary (float64 there); a block holding a NaN or an Inf
    is NaN, and no other block."""
    from tqk.quant.activation import dequantize_activation, quantize_nvfp4_activation

    x = _hard_activations(dtype)
    values, rows = quantize_nvfp4_activation(x, fixed)
    assert values.dtype == torch.float16 and rows.dtype == torch.float32 and rows.shape == (24,)
    assert rows.stride() == (0,) and bool(torch.isfinite(rows).all())
    bad = ~torch.isfinite(x.float().view(24, -1, 16)).all(-1)
    nan = values.view(24, -1, 16).isnan()
    assert torch.equal(nan.all(-1), bad) and not nan[~bad].any()
    finite = ~bad.any(-1)
    xf = x.float()[finite]
    codes, scales, ts = mx.quantize_nvfp4(xf, tensor_scale=None if fixed == 0.0 else torch.ones(1))
    assert bool((rows[finite] == float(ts)).all())
    got = dequantize_activation(values, rows, "e2m1", "nvfp4")[finite]
    want = mx.dequantize_nvfp4(codes, scales, ts)
    total = (mx.decode_e4m3(scales) * ts.double()).repeat_interleave(16, -1)
    u = torch.where(total > 0, xf.double() / total, 0.0).abs().clamp(max=6.0)
    mids = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0], dtype=torch.float64)
    near_tie = ((u[..., None] - mids).abs() <= 2.0**-21 * mids).any(-1)
    assert torch.equal(got[~near_tie], want[~near_tie])
    assert float(near_tie.float().mean()) < 0.05  # (mostly the rows of exact ties)


def test_nvfp4_activation_quantizer_zero_tensor():
    from tqk.quant.activation import quantize_nvfp4_activation

    values, rows = quantize_nvfp4_activation(torch.zeros(3, 32, dtype=torch.bfloat16))
    assert bool((values == 0).all()) and rows.tolist() == [1.0, 1.0, 1.0]
