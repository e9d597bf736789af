"""Tests of tqk.quant.float8 against torch's own float8 casts and torchao's float8 examples."""
from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tqk.quant import FLOAT8_DTYPES, choose_scale_float8, dequantize_float8, quantize_float8

E4M3, E5M2 = torch.float8_e4m3fn, torch.float8_e5m2


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Bit patterns, so that comparisons are exact (signed zeros and all)."""
    return t.view(torch.uint8)


def _expand(per_block, block):
    out = per_block
    for d, b in enumerate(block):
        out = out.repeat_interleave(b, dim=d)
    return out


def test_dtypes():
    assert FLOAT8_DTYPES == (E4M3, E5M2)
    assert torch.finfo(E4M3).max == 448.0 and torch.finfo(E5M2).max == 57344.0


@pytest.mark.parametrize("f8", FLOAT8_DTYPES, ids=str)
def test_literal_per_tensor(f8):
    fmax = torch.finfo(f8).max
    x = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    scale = choose_scale_float8(x, (2, 2), f8)
    assert scale.dtype == torch.float32 and scale.shape == ()
    assert scale.item() == (torch.tensor(2.0) / fmax).item()
    q = quantize_float8(x, (2, 2), scale, f8)
    assert q.dtype == f8 and q.shape == x.shape
    # the block's largest magnitude lands on the format's largest finite value
    assert q[0, 0].float().item() == fmax
    assert torch.equal(_bits(q), _bits((x / scale).to(f8)))
    dq = dequantize_float8(q, (2, 2), scale)
    assert dq.dtype == torch.float32
    assert torch.equal(dq, q.float() * scale)
    assert dq[1, 1].item() == 0.0
    assert dequantize_float8(q, (2, 2), scale, torch.bfloat16).dtype == torch.bfloat16


@pytest.mark.parametrize("f8", FLOAT8_DTYPES, ids=str)
def test_round_to_nearest_even(f8):
    one = torch.tensor(1.0)
    # e4m3 steps by 1/8 above 1.0, e5m2 by 1/4. Ties go to the even mantissa.
    if f8 == E4M3:
        x = torch.tensor([1.0625, 1.1875, 1.3125, -1.0625, 1.05, 1.07])
        expect = [1.0, 1.25, 1.25, -1.0, 1.0, 1.125]
    else:
        x = torch.tensor([1.125, 1.375, 1.625, -1.125, 1.1, 1.13])
        expect = [1.0, 1.5, 1.5, -1.0, 1.0, 1.25]
    q = quantize_float8(x, (x.numel(),), one, f8)
    assert q.float().tolist() == expect
    assert torch.equal(_bits(q), _bits(x.to(f8)))


@pytest.mark.parametrize("f8", FLOAT8_DTYPES, ids=str)
def test_saturates_at_max(f8):
    fmax = torch.finfo(f8).max
    x = torch.tensor([1e6, -1e6, 2 * fmax, -fmax * 1.01, float("inf"), -float("inf")])
    q = quantize_float8(x, (6,), torch.tensor(1.0), f8)
    assert q.float().tolist() == [fmax, -fmax, fmax, -fmax, fmax, -fmax]
    if f8 == E5M2:  # torch's plain cast overflows to inf here; ours must not
        assert torch.isinf(torch.tensor([1e6]).to(f8).float()).all()


@pytest.mark.parametrize("f8", FLOAT8_DTYPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(
    "shape, block", [((8, 16), (8, 16)), ((8, 16), (1, 16)), ((8, 16), (8, 1)), ((8, 16), (1, 4)), ((8, 16), (4, 8))]
)
def test_matches_torch_cast(f8, dtype, shape, block):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(shape, generator=g) * 5).to(dtype)
    grid = [s // b for s, b in zip(shape, block)]
    scale = choose_scale_float8(x, block, f8)
    assert scale.dtype == torch.float32 and scale.numel() == torch.Size(grid).numel()
    # reference: amax per block by explicit slicing
    amax = torch.empty(grid)
    for i in range(grid[0]):
        for j in range(grid[1]):
            blk = x[i * block[0]:(i + 1) * block[0], j * block[1]:(j + 1) * block[1]]
            amax[i, j] = blk.float().abs().max()
    ref_scale = amax / torch.finfo(f8).max
    assert torch.equal(scale.reshape(grid), ref_scale)
    q = quantize_float8(x, block, scale, f8)
    s_full = _expand(ref_scale, block)
    ref_q = (x.float() / s_full).to(f8)  # never out of range: |x| <= amax
    assert torch.equal(_bits(q), _bits(ref_q))
    dq = dequantize_float8(q, block, scale, output_dtype=dtype)
    assert dq.dtype == dtype
    assert torch.equal(dq, (ref_q.float() * s_full).to(dtype))


def test_torchao_float8_blockwise_scaling():
    # torchao's test_float8_blockwise_scaling, with its _tensor_to_scale_block reference
    g = torch.Generator().manual_seed(0)
    M, K = 512, 1024
    x = torch.randn(M, K, generator=g)
    x[0:128, 0:128] *= 3.0
    x[0:128, 128:256] *= 7.0
    x[128:256, 0:128] *= 2.0
    x[128:256, 128:256] *= 100.0
    scale = choose_scale_float8(x, (128, 128), E4M3)
    q = quantize_float8(x, (128, 128), scale, E4M3)

    xb = x.unflatten(1, (-1, 128)).unflatten(0, (-1, 128))
    ref_scale = xb.abs().amax(dim=[1, 3], keepdim=True).float() / torch.finfo(E4M3).max
    ref_q = (xb / ref_scale).to(E4M3).flatten(2, 3).flatten(0, 1)
    assert scale.shape == (4, 8)
    assert torch.equal(scale, ref_scale.flatten(2, 3).flatten(0, 1))
    assert torch.equal(_bits(q), _bits(ref_q))
    # the scales really differ between blocks
    assert scale[1, 1] > 10 * scale[1, 0]


def test_torchao_float8_rowwise_3d_axis_1():
    # (B, K, N) weight scaled across K: one scale per (b, n). torchao keeps dims ((B, 1, N));
    # ours drops the reduced dim like choose_qparams_affine does: (B, N).
    B, K, N = 8, 16, 32
    x = torch.randn(B, K, N)
    scale = choose_scale_float8(x, (1, K, 1), E4M3)
    q = quantize_float8(x, (1, K, 1), scale, E4M3)
    assert scale.shape == (B, N) and q.shape == (B, K, N)
    ref_scale = x.abs().amax(dim=1) / 448.0
    assert torch.equal(scale, ref_scale)
    assert torch.equal(_bits(q), _bits((x / ref_scale[:, None, :]).to(E4M3)))


def test_zero_and_tiny_blocks():
    x = torch.zeros(4, 8)
    x[1] = 3.0
    x[2] = 1e-20  # below the amax floor (eps=1e-12): flushed to zero, never a nan
    scale = choose_scale_float8(x, (1, 8), E4M3)
    assert scale[0].item() == (torch.tensor(1e-12) / 448.0).item()
    q = quantize_float8(x, (1, 8), scale, E4M3)
    assert not torch.isnan(q.float()).any()
    assert (q[0].float() == 0).all() and (q[1].float() == 448.0).all() and (q[2].float() == 0).all()
    dq = dequantize_float8(q, (1, 8), scale)
    assert torch.equal(dq[1], x[1])
    # a smaller eps keeps the tiny block
    scale = choose_scale_float8(x, (1, 8), E4M3, eps=1e-30)
    q = quantize_float8(x, (1, 8), scale, E4M3)
    assert (q[2].float() == 448.0).all()


def test_errors():
    x = torch.randn(4, 8)
    scale = choose_scale_float8(x, (1, 8))
    for bad in (torch.int8, torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match="float8 dtype"):
            choose_scale_float8(x, (1, 8), bad)
        with pytest.raises(TypeError, match="float8 dtype"):
            quantize_float8(x, (1, 8), scale, bad)
    with pytest.raises(ValueError, match="does not tile"):
        choose_scale_float8(x, (3, 8))
    with pytest.raises(ValueError, match="does not tile"):
        quantize_float8(x, (1, 5), scale)
    with pytest.raises(ValueError, match="dims"):
        dequantize_float8(quantize_float8(x, (1, 8), scale), (8,), scale)


# ----------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------
@st.composite
def cases(draw):
    ndim = draw(st.integers(1, 3))
    shape, block = [], []
    for _ in range(ndim):
        b, n = draw(st.integers(1, 8)), draw(st.integers(1, 4))
        shape.append(b * n)
        block.append(draw(st.sampled_from([1, b, b * n])))
    f8 = draw(st.sampled_from(FLOAT8_DTYPES))
    dtype = draw(st.sampled_from([torch.float32, torch.bfloat16]))
    mag = draw(st.sampled_from([1e-6, 1e-2, 1.0, 1e3, 1e30]))
    kind = draw(st.sampled_from(["normal", "heavy", "zero_blocks", "constant"]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    grid = [s // b for s, b in zip(shape, block)]
    x = torch.randn(shape, generator=g)
    if kind == "heavy":
        x = torch.tan(torch.pi * (torch.rand(shape, generator=g) - 0.5)).clamp(-1e3, 1e3)
        x = torch.where(torch.rand(shape, generator=g) < 0.03, x * 1e3, x)
    elif kind == "zero_blocks":
        x = x * _expand((torch.rand(grid, generator=g) < 0.5).float(), block)
    elif kind == "constant":
        x = _expand(torch.randn(grid, generator=g), block).clone()
    return (x * mag).to(dtype), tuple(block), f8


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_property(case):
    x, block, f8 = case
    fi = torch.finfo(f8)
    scale = choose_scale_float8(x, block, f8)
    assert torch.isfinite(scale).all() and (scale > 0).all()
    q = quantize_float8(x, block, scale, f8)
    assert q.dtype == f8 and q.shape == x.shape
    qf = q.float()
    assert torch.isfinite(qf).all() and (qf.abs() <= fi.max).all()

    grid = [s // b for s, b in zip(x.shape, block)]
    s = _expand(scale.reshape(grid).double(), block)
    # same as torch's own cast of the scaled values
    assert torch.equal(_bits(q), _bits((x.float() / s.float()).to(f8)))
    # error: half an fp8 ulp relative, or half a subnormal step absolute (in the scaled domain)
    dq = dequantize_float8(q, block, scale)
    x64 = x.double()
    err = (x64 - dq.double()).abs()
    bound = torch.maximum(x64.abs() * fi.eps / 2, s * fi.smallest_normal * fi.eps / 2)
    assert (err <= bound * (1 + 1e-5) + 1e-6 * x64.abs()).all()
    # round trip
    assert torch.equal(_bits(quantize_float8(dq, block, scale, f8)), _bits(q))
