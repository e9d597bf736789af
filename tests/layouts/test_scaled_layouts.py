"""Property tests run for EVERY registered activation-quantized layout (family "scaled":
T.all_layout_examples("scaled")): a new scaled layout is tested here without a new test.

The references are tqk.testing's: the stored weight is decoded from the documented format
(tqk/layouts/scaled.py; 4-bit nibbles located by index arithmetic, not ScaledLayout.unpack) and
multiplied in float64 with the activation as tqk's run-time quantizer leaves it (torch's casts).
The kernel runs through the public path, QuantizedLinearWeight.linear / F.linear."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import tqk
from tqk import testing as T
from tqk.kernels.scaled_mm import PROLOGUE_MAX_M, quantize_in_prologue
from tqk.layouts import LAYOUTS, ScaledLayout
from tqk.quant.activation import dequantize_activation, quantize_activation

DEVICE = T.default_device()  # CUDA when present; else CPU through the interpreter
EXAMPLES = T.all_layout_examples("scaled")
IDS = [repr(ex) for ex in EXAMPLES]
SEEDS = st.integers(0, 2**31 - 1)
DTYPES = st.sampled_from([torch.bfloat16, torch.float16])
# Weight-side tests are torch only (cheap); kernel launches are the slow part in the interpreter.
CHEAP = settings(max_examples=max(5, settings.default.max_examples * 3 // 4))
KERNEL = settings(max_examples=max(4, settings.default.max_examples * 2 // 3))
FEW = settings(max_examples=max(2, settings.default.max_examples // 4))
QMAX = {"int8": 127.0, "e4m3": 448.0}
FP4 = getattr(torch, "float4_e2m1fn_x2", "fp4_e2m1")
INT8_INT8 = [ex for ex in EXAMPLES if ex.act == "int8" and ex.weight == "int8"]
# 8-bit and W4A8 grids; block-scaled floats (MX, NVFP4) have their encodes tested in tests/quant/test_mx.py
INTEGER_GRIDS = [ex for ex in EXAMPLES if not ex.block_scaled]
PROLOGUE = [ex for ex in EXAMPLES if ex.takes_prologue]
NIBBLES = [ex for ex in EXAMPLES if ex.weight in ("int4", "e2m1")]  # two codes a byte
CODE_RANGE = {"int4": 16, "e2m1": 16, "e3m2": 64, "e2m3": 64}  # else every byte


def _random_codes(layout, n, k, gen):
    """Any uint8 code the layout stores: every byte for 8-bit weights, 0..15 for 4-bit ones."""
    top = CODE_RANGE.get(layout.weight, 256)
    return torch.randint(0, top, (n, k), generator=gen, dtype=torch.int32).to(torch.uint8)


def _k_for(layout, units):
    """K = units whole blocks/groups, or (k_multiple 1) any K, odd ones included."""
    mult = layout.k_multiple()
    return mult * units if mult > 1 else 2 * units * 37 + 1


def _weight_for(layout, n, k, dtype, dist, seed):
    if dist == "random_codes":
        return T.random_scaled_weight(layout, n, k, dtype, seed, DEVICE)
    return T.quantize_scaled(T.make_weight((n, k), dtype, dist, seed, DEVICE), layout)


def test_registry_has_scaled_examples():
    """The shared tests below run over these: an empty list would silently test nothing."""
    assert "ScaledLayout" in LAYOUTS
    assert EXAMPLES, "no layout of family 'scaled' has examples()"
    assert INT8_INT8, "the tight int8 x int8 test needs an int8 x int8 example"
    for ex in EXAMPLES:
        hash(ex)  # layouts go into compiled graphs as constants
        assert ex.k_multiple() >= 1


# ------------------------------------------------------------------------------------------
# Storage: pack / unpack / dequantize / quantize
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@CHEAP
@given(n=st.integers(1, 40), units=st.integers(1, 3), seed=SEEDS)
def test_pack_unpack_bit_exact(layout, n, units, seed):
    """unpack inverts pack bit for bit, and the bytes are the documented ones (what the kernel
    reads): decoded by index arithmetic, a swapped nibble order or group layout shows."""
    k = _k_for(layout, units)
    codes = _random_codes(layout, n, k, torch.Generator().manual_seed(seed))
    packed = layout.pack(codes)
    if layout in NIBBLES:
        assert packed.dtype == torch.uint8 and packed.shape == (n, k // 2)
    else:
        assert packed.dtype == (torch.int8 if layout.weight == "int8" else torch.uint8)
        assert packed.shape == (n, k)
    assert torch.equal(layout.unpack(packed, k), codes)
    qw = tqk.QuantizedLinearWeight(packed, torch.ones(n), None, layout, (n, k), torch.float32)
    assert torch.equal(T.scaled_codes_reference(qw), codes)


@pytest.mark.parametrize("layout", NIBBLES, ids=[repr(ex) for ex in NIBBLES])
def test_pack_rejects_codes_that_do_not_fit(layout):
    codes = torch.zeros(2, layout.k_multiple(), dtype=torch.uint8)
    codes[1, 5] = 16
    with pytest.raises(ValueError, match="does not fit"):
        layout.pack(codes)


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@CHEAP
@given(n=st.integers(1, 140), units=st.integers(1, 3), dtype=DTYPES,
       dist=st.sampled_from(T.SCALED_WEIGHT_DISTRIBUTIONS), seed=SEEDS)
def test_dequantize_matches_formula(layout, n, units, dtype, dist, seed):
    """(value - zero) * scale, with the scale read per row, per 128x128 block (N up to 140
    crosses a block) or per group: exact in float64 (8-bit values times 16-bit scales), and
    rounded once to the model dtype. MX / NVFP4: element times E8M0, or e4m3 times the tensor scale,
    with the scales as bytes [K / block, N]."""
    k = _k_for(layout, units)
    qw = _weight_for(layout, n, k, dtype, dist, seed)
    exact = T.scaled_dequantize_reference(qw)
    assert bool(torch.isfinite(exact).all())
    got64 = layout.dequantize(qw.packed, qw.scales, qw.zeros, k, torch.float64)
    assert got64.shape == (n, k)
    assert torch.equal(got64, exact), f"max diff {float((got64 - exact).abs().max())}"
    got = qw.dequantize()
    assert got.dtype == dtype and torch.equal(got, exact.to(dtype))
    assert torch.equal(qw.codes(), T.scaled_codes_reference(qw))
    # stored as documented: scales in the model dtype; 4-bit zero points integers in [0, 15]
    if layout.block_scaled:
        assert qw.scales.dtype == torch.uint8 and qw.scales.shape == (k // layout.k_multiple(), n)
        tensor_scale = qw.zeros  # NVFP4 only: float32 [1]
        assert tensor_scale is None if layout.act_granularity == "mx" else tensor_scale.dtype == torch.float32
        return
    assert qw.scales.dtype == dtype
    if layout.weight == "int4":
        assert qw.scales.shape == qw.zeros.shape == (k // layout.group_size, n)
        z = qw.zeros.double()
        assert bool(((z == z.round()) & (z >= 0) & (z <= 15)).all())
    elif layout.weight_granularity == "block":
        assert qw.scales.shape == (-(-n // 128), k // 128)
    else:
        assert qw.scales.shape == (n,) and qw.zeros is None
        if layout.weight_granularity == "tensor":
            assert bool((qw.scales == qw.scales[0]).all())


def _half_step(values, kind):
    """Half the code grid's spacing at each (float64) target value: 1/2 for integers, half an
    e4m3 ulp (2**(e - 4) for |v| in [2**e, 2**(e + 1)), 2**-10 among subnormals) for e4m3."""
    if kind in ("int8", "int4"):
        return torch.full_like(values, 0.5)
    e = torch.floor(torch.log2(values.abs().clamp(min=2.0**-6)))
    return torch.exp2(e - 4)


def _rounding_excess(target, got, kind, lo, hi):
    """(|got - target| beyond what round-to-nearest then clamp to [lo, hi] allows, the clamp
    distance). Allowed: half a grid step, or, where the target lies outside [lo, hi], the distance
    to the bound it clamps to; plus the quantizer's float32 reciprocal and product (u32 relative each)."""
    clamped = target.clamp(lo, hi)
    dist = (target - clamped).abs()
    allowed = torch.maximum(_half_step(clamped, kind), dist) + 4 * T.unit_roundoff(torch.float32) * target.abs()
    return (got - target).abs() - allowed, dist


@pytest.mark.parametrize("layout", INTEGER_GRIDS, ids=[repr(ex) for ex in INTEGER_GRIDS])
@CHEAP
@given(n=st.integers(1, 140), units=st.integers(1, 3), dtype=DTYPES, dist=st.sampled_from(T.DISTRIBUTIONS),
       seed=SEEDS)
def test_quantize_error_within_half_a_step(layout, n, units, dtype, dist, seed):
    """ScaledLayout.quantize: int8 / int4 codes round to the nearest integer, e4m3 to the nearest
    e4m3 value, so each element is within half a step of its scale (as stored) of the float weight;
    and the scale covers the range, so clamping costs next to nothing: the scale's own rounding to
    the dtype, and for 4-bit weights what the documented grids cost at their ends, up to half a
    step for an integer zero point round(-min / scale), one whole step at +absmax for the symmetric
    grid -8..7 with scale absmax / 8."""
    k = _k_for(layout, units)
    w = T.make_weight((n, k), dtype, dist, seed)
    qw = T.quantize_scaled(w, layout)
    values, zeros, scales = T.scaled_weight_terms(qw)
    target = w.double() / scales + zeros  # where the code would be with exact arithmetic
    lo, hi = (0.0, 15.0) if layout.weight == "int4" else (-QMAX[layout.weight], QMAX[layout.weight])
    excess, clamp = _rounding_excess(target, values, layout.weight, lo, hi)
    i = int(excess.argmax())
    assert float(excess.max()) <= 0, (f"code {float(values.view(-1)[i])} for target {float(target.view(-1)[i])} "
                                      f"(w={float(w.view(-1)[i])}, scale={float(scales.reshape(-1)[i])})")
    ends = 0.0 if layout.weight != "int4" else (1.0 if layout.symmetric else 0.5)
    clamp_allowed = ends + 2 * (hi - lo) * T.unit_roundoff(dtype)
    assert float(clamp.max()) <= clamp_allowed, f"the scale does not cover the range: clamped by {float(clamp.max())}"
    # so the dequantized weight is within that many steps of the scale of w
    err = (qw.dequantize(torch.float64) - w.double()).abs()
    steps = torch.maximum(_half_step(target.clamp(lo, hi), layout.weight), clamp)
    assert bool((err <= steps * scales * (1 + 1e-6) + 4 * T.unit_roundoff(torch.float32) * w.double().abs()).all())


# ------------------------------------------------------------------------------------------
# Activations (the quantizer inside tqk::scaled_linear): what the references rely on
# ------------------------------------------------------------------------------------------
ACT_KINDS = sorted({(ex.act, ex.act_granularity, ex.static_scale) for ex in INTEGER_GRIDS})


@pytest.mark.parametrize("kind,granularity,static_scale", ACT_KINDS, ids=[f"{a}-{g}" for a, g, _ in ACT_KINDS])
@CHEAP
@given(data=st.data())
def test_activation_quantization_within_half_a_step(kind, granularity, static_scale, data):
    """Dynamic scales: scale = amax / qmax of the row / tensor / 1x128 block, the amax element's
    code at +-qmax exactly (+-448 for e4m3), every code within half a grid step of x / scale;
    a zero row or block has scale 0 and codes 0. A static scale saturates at +-qmax."""
    k = data.draw(st.sampled_from([128, 256]) if granularity == "block" else st.integers(1, 300), label="k")
    x = data.draw(T.activation_batches(k, torch.bfloat16), label="x")
    codes, scales = quantize_activation(x, kind, granularity, static_scale)
    values = codes.double() if kind == "int8" else codes.view(torch.float8_e4m3fn).double()
    m = x.shape[0]
    xd = x.double()
    qmax = QMAX[kind]
    if granularity == "block":
        groups = xd.view(m, k // 128, 128)  # [M, K / 128, 128]: one scale each
        full = scales.double().repeat_interleave(128, 1)
    elif granularity == "tensor":
        groups = xd.view(1, 1, m * k)
        full = scales.double()[:, None].expand(m, k)
    else:
        groups = xd.view(m, 1, k)
        full = scales.double()[:, None].expand(m, k)
    amax = groups.abs().amax(-1)
    if granularity == "static":
        assert bool((scales.double() == float(torch.tensor(static_scale, dtype=torch.float32))).all())
    else:
        expect = (amax.float() / qmax).double()  # float32, as the quantizer computes it
        stored = scales.double().view(m, -1)[:1] if granularity == "tensor" else scales.double().view(amax.shape)
        assert torch.equal(stored.reshape(-1), expect.reshape(-1)), "scale != amax / qmax"
        if granularity == "tensor":
            assert bool((scales == scales[0]).all())
        at_max = (values.view(groups.shape).abs() == qmax) & (groups.abs() == amax[..., None])
        assert bool((at_max.any(-1) | (amax == 0)).all()), "the amax element's code is not +-qmax"
    zero = full == 0
    assert bool((values[zero] == 0).all()), "a zero scale must give zero codes"
    target = torch.where(zero, torch.zeros_like(xd), xd / torch.where(zero, torch.ones_like(full), full))
    excess, _ = _rounding_excess(target, values, kind, -qmax, qmax)
    assert float(excess.max()) <= 0
    deq = dequantize_activation(codes, scales, kind)
    assert torch.equal(deq, values * full)


# ------------------------------------------------------------------------------------------
# The kernel (through QuantizedLinearWeight.linear) against the float64 reference
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@KERNEL
@given(data=st.data(), batch=st.sampled_from([(), (), (2,)]))
def test_kernel_matches_reference(layout, data, batch):
    """Fresh activations (normal, zero rows, one outlier per row, saturating) and weights (quantized
    from make_weight's distributions, or random codes) at odd shapes: M in {1, 7, 33} and now and
    then 2048, N any (not a multiple of a tile, across a 128 block), K whole blocks / groups or,
    where any K goes, odd K. bf16 and fp16, with and without bias, with leading batch dims (F.linear)."""
    case = data.draw(T.scaled_linear_cases(layout, device=DEVICE), label="case")
    x, qw = case.x, case.weight
    if batch:
        x = x.expand(*batch, *x.shape)  # a non-contiguous view
        out = F.linear(x, qw, case.bias)
    else:
        out = qw.linear(x, case.bias)
    assert out.shape == (*batch, x.shape[-2], qw.shape[0]) and out.dtype == x.dtype
    T.assert_close_to_scaled_reference(out, x, qw, case.bias, msg=repr(case))


@pytest.mark.parametrize("layout", INT8_INT8, ids=[repr(ex) for ex in INT8_INT8])
@KERNEL
@given(data=st.data())
def test_int8_kernel_is_integer_dot_times_scales(layout, data):
    """int8 x int8 is exact up to the epilogue: out = (sum_k a_k w_k, an integer) * scale_a * scale_w
    + bias, rounded to the dtype, with only float32's few roundings (a few u32 of |dot| + |bias|,
    not of sum |a w|) besides. The integer dot is taken in int64 from the activation codes and
    the stored bytes."""
    case = data.draw(T.scaled_linear_cases(layout, device=DEVICE), label="case")
    x, qw, b = case.x, case.weight, case.bias
    out = qw.linear(x, b)
    codes, a_scales = quantize_activation(x, layout.act, layout.act_granularity, layout.static_scale)
    w_codes = T.scaled_codes_reference(qw).view(torch.int8)
    dot = codes.to(torch.int64) @ w_codes.to(torch.int64).t()
    scaled = dot.double() * a_scales.double()[:, None] * qw.scales.double()[None, :]
    bias = torch.zeros(qw.shape[0], dtype=torch.float64, device=out.device) if b is None else b.double()
    ref = scaled + bias
    u, u32 = T.unit_roundoff(out.dtype), T.unit_roundoff(torch.float32)
    if T._interpreter_truncates(out.dtype, out):
        u *= 2
    tol = u * ref.abs() + 4 * u32 * (scaled.abs() + bias.abs()) + torch.finfo(out.dtype).smallest_normal * \
        torch.finfo(out.dtype).eps
    err = (out.double() - ref).abs()
    bad = ~(err <= tol)
    assert not bool(bad.any()), (f"{int(bad.sum())}/{bad.numel()} off; worst err/tol "
                                 f"{float((err / tol)[bad].max()):.3g} {case}")


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@FEW
@given(data=st.data(), with_bias=st.booleans(), dtype=DTYPES)
def test_zero_rows_give_exactly_the_bias(layout, data, with_bias, dtype):
    """A zero row (or, per 1x128 block, zero blocks) has scale 0: codes 0, and the output row is the
    bias exactly (0 without bias), never 0 / 0 = NaN. M = 1 makes the whole tensor zero (a per-tensor
    scale of 0)."""
    k = _k_for(layout, data.draw(st.integers(1, 2), label="units"))
    n = data.draw(st.sampled_from([1, 17, 129]), label="n")
    x = data.draw(T.activation_batches(k, dtype, m=T.activation_rows(big_m=None), distribution="zero_rows"),
                  label="x").to(DEVICE)
    qw = _weight_for(layout, n, k, dtype, data.draw(st.sampled_from(["normal", "random_codes"]), label="w"), 0)
    b = torch.randn(n, generator=torch.Generator().manual_seed(1)).to(dtype).to(DEVICE) if with_bias else None
    out = qw.linear(x, b)
    assert not bool(out.isnan().any())
    zero = (x == 0).all(-1)
    assert bool(zero.any())
    expect = (b if with_bias else torch.zeros(n, dtype=dtype, device=DEVICE)).expand(int(zero.sum()), n)
    assert torch.equal(out[zero], expect), "a zero row's output is not exactly the bias"
    T.assert_close_to_scaled_reference(out, x, qw, b)


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@FEW
@given(data=st.data(), dtype=DTYPES)
def test_nan_row_stays_in_its_row(layout, data, dtype):
    """A NaN in one activation row makes that output row NaN (as F.linear does) and no other: a
    per-tensor scale must skip it, and the other rows are what they are without the NaN row."""
    m = data.draw(st.sampled_from([2, 7, 33]), label="m")
    k = _k_for(layout, data.draw(st.integers(1, 2), label="units"))
    n = data.draw(st.sampled_from([5, 33]), label="n")
    x = T.make_activation((m, k), dtype, data.draw(st.sampled_from(["normal", "outlier_rows"])), 3).to(DEVICE)
    row, col = data.draw(st.integers(0, m - 1), label="row"), data.draw(st.integers(0, k - 1), label="col")
    qw = _weight_for(layout, n, k, dtype, "normal", 2)
    b = torch.randn(n, generator=torch.Generator().manual_seed(1)).to(dtype).to(DEVICE)
    x_nan = x.clone()
    x_nan[row, col] = float("nan")
    out = qw.linear(x_nan, b)
    assert bool(out[row].isnan().all()), f"row {row} should be NaN: {out[row]}"
    others = torch.arange(m, device=DEVICE) != row
    assert bool(torch.isfinite(out[others]).all()), "the NaN leaked into other rows"
    clean = x.clone()
    if layout.act_granularity == "nvfp4":
        # NVFP4's dynamic tensor scale is the largest finite |x| (quantize_nvfp4_activation, one reduction):
        # the NaN row's other values count in it, the NaN does not
        clean[row, col] = 0
    else:
        clean[row] = 0  # what the other rows see: the NaN row counts for nothing (nor in a per-tensor scale)
    ref = T.reference_scaled_linear(clean, qw, b)[others]
    mag = T.scaled_linear_magnitude(clean, qw, b)[others]
    u = T.unit_roundoff(dtype) * (2 if T._interpreter_truncates(dtype, out) else 1)
    c = T.scaled_float32_roundings(layout, k)
    tol = u * ref.abs() + 2 * c * T.unit_roundoff(torch.float32) * mag + torch.finfo(dtype).smallest_normal
    err = (out[others].double() - ref).abs()
    assert bool((err <= tol).all()), f"other rows off: worst err/tol {float((err / tol).max()):.3g}"


# ------------------------------------------------------------------------------------------
# The two ways into the GEMM: quantized in its prologue, or codes written by torch ops first
# ------------------------------------------------------------------------------------------
def _forced(qw, act_quant):
    layout = dataclasses.replace(qw.quant_layout, act_quant=act_quant)
    return tqk.QuantizedLinearWeight(qw.packed, qw.scales, qw.zeros, layout, tuple(qw.shape), qw.dtype)


def _mixed_rows(m, k, dtype, seed):
    """[m, k]: row i from ACTIVATION_DISTRIBUTIONS[i % 4] (normal, zero rows and blocks, an outlier,
    near saturation), so one call holds all of them (and, per tensor, one scale spans them)."""
    parts = [T.make_activation((m, k), dtype, d, seed + i) for i, d in enumerate(T.ACTIVATION_DISTRIBUTIONS)]
    return torch.stack([parts[i % len(parts)][i] for i in range(m)]).to(DEVICE)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # numpy's Inf * 0 (interpreter)
@pytest.mark.parametrize("layout", PROLOGUE, ids=[repr(ex) for ex in PROLOGUE])
def test_prologue_and_codes_paths_agree_and_match_reference(layout):
    """ScaledLayout.act_quant forces either path (tqk.kernels.scaled_mm.quantize_in_prologue): the
    float activation quantized tile by tile in the GEMM's prologue (per tensor: each program takes
    the largest finite row scale itself), or codes written by torch ops. At M = 1 (each distribution
    alone: a zero row is then a zero tensor), 7 and 33 (the distributions mixed): both within the
    float64 reference's bound, bit for bit equal (the prologue writes the codes the torch ops write),
    zero rows exactly the bias. A NaN row and an Inf row: those output rows non-finite in both paths,
    the others finite, equal, and what they are without the bad rows."""
    k = _k_for(layout, 2)
    n, dtype = 37, torch.bfloat16
    qw = _weight_for(layout, n, k, dtype, "normal", 5)
    b = torch.randn(n, generator=torch.Generator().manual_seed(1)).to(dtype).to(DEVICE)
    paths = {aq: _forced(qw, aq) for aq in ("prologue", "codes")}
    cases = [T.make_activation((1, k), dtype, d, 7).to(DEVICE) for d in T.ACTIVATION_DISTRIBUTIONS]
    cases += [_mixed_rows(7, k, dtype, 11), _mixed_rows(33, k, dtype, 13)]
    for x in cases:
        outs = {aq: w.linear(x, b) for aq, w in paths.items()}
        for aq, out in outs.items():
            T.assert_close_to_scaled_reference(out, x, paths[aq], b, msg=f"{aq} M={x.shape[0]}")
            zero = (x == 0).all(-1)
            assert torch.equal(out[zero], b.expand(int(zero.sum()), n)), f"{aq}: a zero row is not the bias"
        assert torch.equal(outs["prologue"], outs["codes"]), f"M={x.shape[0]}: the paths differ"
    x = _mixed_rows(7, k, dtype, 17)
    bad = x.clone()
    bad[2, k // 3] = float("nan")
    bad[5, k - 1] = float("inf")
    others = torch.tensor([i not in (2, 5) for i in range(7)], device=DEVICE)
    clean = torch.where(others[:, None], x, torch.zeros_like(x))  # what the other rows see
    outs = {aq: w.linear(bad, b) for aq, w in paths.items()}
    for aq, out in outs.items():
        assert not bool(torch.isfinite(out[2]).any()) and not bool(torch.isfinite(out[5]).any()), aq
        assert bool(torch.isfinite(out[others]).all()), f"{aq}: a NaN or Inf leaked into other rows"
        T.assert_close_to_scaled_reference(out[others], clean[others], paths[aq], b, msg=f"{aq} bad rows")
    assert torch.equal(outs["prologue"][others], outs["codes"][others])


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
def test_split_k_matches_reference_and_leaves_counters_at_zero(layout, monkeypatch):
    """Split-K (a tuned choice for small M): K split over programs, the last program of each tile to
    arrive adds the partials in order and runs the epilogue, leaving its counter at zero. int8 x int8
    with row scales adds int32 partials: the unsplit result bit for bit; the others within the float64
    reference's bound. M = 33 has three row tiles; both activation paths (MX / NVFP4: the codes); with the
    caller's counters and without (then zeroed for the call)."""
    import tqk.ops
    from tqk.kernels.scaled_mm import ScaledConfig

    fmt = layout.scaled_format()
    block_k = fmt.group or 32
    k = block_k * 3 if fmt.group else 5 * 32 - 7  # 3 splits of whole steps (the last step partial if any K goes)
    n, dtype = 45, torch.bfloat16
    qw = _weight_for(layout, n, k, dtype, "normal", 3)
    b = torch.randn(n, generator=torch.Generator().manual_seed(2)).to(dtype).to(DEVICE)
    counters = torch.zeros(64, dtype=torch.int32, device=DEVICE)
    chosen = {}
    monkeypatch.setattr(tqk.ops, "scaled_config", lambda *args: chosen["config"])
    exact = layout.act == "int8" and fmt.a_scale != "block" and fmt.w_scale == "row"
    for m, act_quant in ((1, "prologue" if layout.takes_prologue else "codes"), (33, "codes")):
        x = _mixed_rows(m, k, dtype, m)
        w = _forced(qw, act_quant)
        chosen["config"] = ScaledConfig(16, 32, block_k, num_stages=1)
        unsplit = w.linear(x, b)
        chosen["config"] = ScaledConfig(16, 32, block_k, num_stages=1, split_k=3)
        out = w.linear(x, b, counters)
        assert int(counters.count_nonzero()) == 0, "split-K left a counter set"
        T.assert_close_to_scaled_reference(out, x, w, b, msg=f"split-K M={m} {act_quant}")
        if m == 1:
            assert torch.equal(w.linear(x, b), out)  # its own zeroed counters: the same sums in the same order
        if exact:
            assert torch.equal(out, unsplit), "int32 partial sums must give the unsplit result"


@pytest.mark.parametrize("layout", [l for l in EXAMPLES if l.scaled_format().k_steps],
                         ids=[i for l, i in zip(EXAMPLES, IDS) if l.scaled_format().k_steps])
def test_late_scale_gives_the_same_sums(layout, monkeypatch):
    """Scales along K applied during the next step's dot (ScaledConfig.late_scale, a tuned choice): the same
    products added in the same order, so the output equals the immediate scaling's bit for bit, and both are
    within the float64 reference's bound; with split-K too (each split carries its own last partial)."""
    import tqk.ops
    from tqk.kernels.scaled_mm import ScaledConfig

    fmt = layout.scaled_format()
    n, k, m, dtype = 45, fmt.group * 3, 33, torch.bfloat16
    qw = _weight_for(layout, n, k, dtype, "normal", 5)
    b = torch.randn(n, generator=torch.Generator().manual_seed(3)).to(dtype).to(DEVICE)
    x = _mixed_rows(m, k, dtype, 7)
    chosen = {}
    monkeypatch.setattr(tqk.ops, "scaled_config", lambda *args: chosen["config"])
    for split in (1, 3):
        outs = []
        for late in (False, True):
            chosen["config"] = ScaledConfig(16, 32, fmt.group, num_stages=1, split_k=split, late_scale=late)
            outs.append(qw.linear(x, b))
        T.assert_close_to_scaled_reference(outs[1], x, qw, b, msg=f"late scale, split {split}")
        assert torch.equal(outs[0], outs[1]), f"late scale changed the sums (split {split})"


@pytest.mark.parametrize("layout", [l for l in EXAMPLES if l.scaled_format().weight == "int4"],
                         ids=[i for l, i in zip(EXAMPLES, IDS) if l.scaled_format().weight == "int4"])
def test_transposed_tile_matches_reference(layout, monkeypatch):
    """W4A8's tile computed transposed (ScaledConfig.swap_ab: out^T = W a^T, the decoded weight the MMA's
    A operand), with and without late scaling and split-K, on both activation paths: within the float64
    reference's bound, and with int8 activations (int32 partial sums) the plain tile's output bit for bit."""
    import tqk.ops
    from tqk.kernels.scaled_mm import ScaledConfig

    fmt = layout.scaled_format()
    n, k, dtype = 45, fmt.group * 3, torch.bfloat16
    qw = _weight_for(layout, n, k, dtype, "normal", 6)
    b = torch.randn(n, generator=torch.Generator().manual_seed(4)).to(dtype).to(DEVICE)
    chosen = {}
    monkeypatch.setattr(tqk.ops, "scaled_config", lambda *args: chosen["config"])
    for m, act_quant in ((33, "codes"), (5, "prologue")):
        x = _mixed_rows(m, k, dtype, 8)
        w = _forced(qw, act_quant)
        for split, late in ((1, False), (3, True)):
            outs = []
            for swap in (False, True):
                chosen["config"] = ScaledConfig(16, 32, fmt.group, num_stages=1, split_k=split, late_scale=late,
                                                swap_ab=swap)
                outs.append(w.linear(x, b))
            msg = f"transposed tile M={m} {act_quant} split {split} late {late}"
            T.assert_close_to_scaled_reference(outs[1], x, w, b, msg=msg)
            if layout.act == "int8":
                assert torch.equal(outs[0], outs[1]), msg


def test_quantize_in_prologue_policy():
    """"auto": the prologue only per tensor and per 1x128 block in the small-M region of tqk.ops (two
    kernels per linear where the codes path takes three or four), the codes everywhere else (faster
    on the H200 at every M); forced either way by act_quant; anything else refused."""
    assert not quantize_in_prologue("auto", "row", 1) and not quantize_in_prologue("auto", "row", 4096)
    for a_scale in ("tensor", "block"):
        assert quantize_in_prologue("auto", a_scale, 1) and quantize_in_prologue("auto", a_scale, PROLOGUE_MAX_M)
        assert not quantize_in_prologue("auto", a_scale, PROLOGUE_MAX_M + 1)
    assert quantize_in_prologue("prologue", "row", 4096) and not quantize_in_prologue("codes", "tensor", 1)
    with pytest.raises(ValueError, match="act_quant"):
        quantize_in_prologue("fused", "row", 1)
    with pytest.raises(ValueError, match="act_quant"):
        ScaledLayout(act_quant="fused")


# ------------------------------------------------------------------------------------------
# Accuracy floors of the public configs
# ------------------------------------------------------------------------------------------
SQNR_FLOORS = [
    ("int8-int8-row", lambda: tqk.Int8DynamicActivationInt8WeightConfig(), 38.5),
    ("fp8-tensor", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(granularity=tqk.PerTensor()), 28.0),
    ("fp8-row", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(granularity=tqk.PerRow()), 28.0),
    ("fp8-block", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(
        granularity=[tqk.PerBlock((1, 128)), tqk.PerBlock((128, 128))]), 28.0),
    ("w4a8-int8", lambda: tqk.Int8DynamicActivationIntxWeightConfig(), 19.5),
    ("w4a8-fp8", lambda: tqk.Float8DynamicActivationInt4WeightConfig(), 18.0),
    # issue 13's floors (round-to-nearest simulations give 0.5 dB more)
    ("mxfp8", lambda: tqk.MXDynamicActivationMXWeightConfig(), 27.0),
    ("mxfp8-floor", lambda: tqk.MXDynamicActivationMXWeightConfig(scaling_mode="floor"), 27.0),
    ("mxfp4", lambda: tqk.MXDynamicActivationMXWeightConfig(activation_dtype=FP4, weight_dtype=FP4), 15.3),
    ("mxfp4-floor", lambda: tqk.MXDynamicActivationMXWeightConfig(activation_dtype=FP4, weight_dtype=FP4,
                                                                  scaling_mode="floor"), 15.3),
    ("nvfp4", lambda: tqk.NVFP4DynamicActivationNVFP4WeightConfig(), 16.9),
]


@pytest.mark.parametrize("config,floor", [(c, f) for _, c, f in SQNR_FLOORS], ids=[i for i, _, _ in SQNR_FLOORS])
def test_sqnr_floor(config, floor):
    """Output SQNR against the unquantized float64 x @ W.T on a seeded Linear(1024, 1024), W and x
    ~ N(0, 1) in bf16, M = 64: a quantizer or kernel that loses precision (a scale off, a wrong
    rounding, a coarser grid) drops below its config's floor even where the tolerance tests pass."""
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(1024, 1024, generator=gen).to(torch.bfloat16).to(DEVICE)
    x = torch.randn(64, 1024, generator=gen).to(torch.bfloat16).to(DEVICE)
    qw = tqk.quantize_weight(w, config())
    out = F.linear(x, qw)
    assert out.dtype == torch.bfloat16 and bool(torch.isfinite(out).all())
    db = T.sqnr(x.double() @ w.double().t(), out)
    assert db >= floor, f"SQNR {db:.2f} dB < {floor} dB for {qw.quant_layout}"
    assert not math.isinf(db)


@pytest.mark.parametrize("kwargs,match", [
    (dict(act_granularity="block", weight="int4", weight_granularity="group", group_size=64), "group_size=128"),
    (dict(act_granularity="block", weight="int4", weight_granularity="group", group_size=256), "group_size=128"),
    (dict(act="e4m3", weight="e4m3", group_size=64), "group_size is for 4-bit weights"),
    (dict(act="e4m3", weight="e4m3", act_granularity="mx", weight_granularity="row"), "same granularity"),
    (dict(act="int8", weight="e4m3", act_granularity="mx", weight_granularity="mx"), "MX activations take"),
    (dict(act="e2m1", weight="int8", act_granularity="row"), "MX / NVFP4's"),
    (dict(act="e4m3", weight="e2m1", act_granularity="nvfp4", weight_granularity="nvfp4"), "e2m1 on both"),
    (dict(act="e4m3", weight="e4m3", act_granularity="mx", weight_granularity="mx", group_size=32),
     "group_size is for 4-bit weights"),
    (dict(act="e4m3", weight="e4m3", act_granularity="mx", weight_granularity="mx", act_quant="prologue"),
     "quantized by torch ops"),
    (dict(act="e4m3", weight="e4m3", act_granularity="mx", weight_granularity="mx", scaling_mode="even"),
     "scaling_mode"),
    (dict(act="e2m1", weight="e2m1", act_granularity="nvfp4", weight_granularity="nvfp4", static_scale=-1.0),
     "static_scale"),
])
def test_layouts_the_gemm_cannot_run_are_refused(kwargs, match):
    """1x128 activation scales are read once per K step, which is the 4-bit group: only a group of
    128 lines them up (64 read past the row's scales, 256 used one scale for two blocks)."""
    with pytest.raises(ValueError, match=match):
        ScaledLayout(**kwargs)
