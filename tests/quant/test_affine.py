"""Tests of tqk.quant.affine against torchao's semantics.

The deterministic tests redo the examples of torchao's test/quantization/test_quant_primitives.py.
torchao is not a dependency, so the expected numbers come from hand-written formulas, literal
values, or torch's own `quantized_decomposed` reference ops (which torchao's tests compare with).
"""
from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tqk.quant import (
    MappingType,
    PerAxis,
    PerBlock,
    PerGroup,
    PerRow,
    PerTensor,
    choose_qparams_affine,
    dequantize_affine,
    dtype_range,
    quantize_affine,
)

SYM = MappingType.SYMMETRIC
NOCLIP = MappingType.SYMMETRIC_NO_CLIPPING_ERR
ASYM = MappingType.ASYMMETRIC
ALL_MAPPINGS = [SYM, NOCLIP, ASYM]
F32_EPS = torch.finfo(torch.float32).eps
TARGETS = [torch.int8, torch.uint8, torch.uint4, torch.int4]
STORAGE = {torch.int8: torch.int8, torch.uint8: torch.uint8, torch.uint4: torch.uint8, torch.int4: torch.int8}


# ----------------------------------------------------------------------------------------------
# An independent reference: loops over the blocks with explicit slicing, formulas from torchao.
# ----------------------------------------------------------------------------------------------
def _grid(shape, block):
    return [s // b for s, b in zip(shape, block)]


def _expand(per_block: torch.Tensor, block) -> torch.Tensor:
    """Per-block values of shape grid -> one value per element."""
    out = per_block
    for d, b in enumerate(block):
        out = out.repeat_interleave(b, dim=d)
    return out


def ref_qparams(x, mapping, block, qmin, qmax, eps, scale_dtype=None):
    grid = _grid(x.shape, block)
    scales, zps = [], []
    for idx in itertools.product(*(range(g) for g in grid)):
        blk = x[tuple(slice(i * b, (i + 1) * b) for i, b in zip(idx, block))].float()
        mn = torch.clamp(blk.min(), max=0.0)
        mx = torch.clamp(blk.max(), min=0.0)
        if mapping is SYM:
            s = torch.clamp(torch.maximum(-mn, mx) / ((qmax - qmin) / 2), min=eps)
            zp = torch.tensor(float(int((qmax + qmin + 1) / 2)))
        elif mapping is NOCLIP:
            smin, smax = mn / qmin, mx / qmax
            s = torch.clamp(smin if bool(smin > smax) else smax, min=eps)
            zp = torch.tensor(float(int((qmax + qmin + 1) / 2)))
        else:
            s = torch.clamp((mx - mn) / (qmax - qmin), min=eps)
            zp = torch.clamp(qmin - torch.round(mn / s), qmin, qmax)
        scales.append(s)
        zps.append(zp)
    scale = torch.stack(scales).reshape(grid).to(scale_dtype or x.dtype)
    return scale, torch.stack(zps).reshape(grid).to(torch.int32)


def ref_quantize(x, block, scale, zp, qmin, qmax):
    s = _expand(scale.float(), block)
    z = _expand(zp.float(), block)
    return torch.clamp(torch.round(x.float() * (1.0 / s)) + z, qmin, qmax)


def ref_dequantize(q, block, scale, zp):
    return (q.float() - _expand(zp.float(), block)) * _expand(scale.float(), block)


def _flat_grid(t, shape, block):
    """Our qparams drop the fully-blocked dims; compare against the full grid by flattening."""
    assert t.numel() == torch.Size(_grid(shape, block)).numel()
    return t.reshape(_grid(shape, block))


# ----------------------------------------------------------------------------------------------
# Literal examples
# ----------------------------------------------------------------------------------------------
def test_symmetric_int8_per_tensor_literal():
    x = torch.tensor([[-1.0, 0.5], [0.25, 2.0]])
    scale, zp = choose_qparams_affine(x, SYM, (2, 2), torch.int8)
    assert scale.shape == () and zp.shape == ()
    assert scale.dtype == torch.float32 and zp.dtype == torch.int32
    assert scale.item() == (torch.tensor(2.0) / 127.5).item()
    assert zp.item() == 0
    q = quantize_affine(x, (2, 2), scale, zp, torch.int8)
    # -63.75 -> -64, 31.875 -> 32, 15.94 -> 16, 127.5 -> 128 (half to even) -> clamped to 127
    assert q.dtype == torch.int8
    assert q.tolist() == [[-64, 32], [16, 127]]
    dq = dequantize_affine(q, (2, 2), scale, zp, torch.int8)
    assert torch.equal(dq, q.float() * scale)


def test_round_half_to_even():
    x = torch.tensor([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 4.5])
    one = torch.tensor(1.0)
    q = quantize_affine(x, (9,), one, torch.tensor(0), torch.int8)
    assert q.tolist() == [-4, -2, -2, 0, 0, 2, 2, 4, 4]
    # The zero point is added after rounding (integer zero-point domain).
    q = quantize_affine(x, (9,), one, torch.tensor(3), torch.int8)
    assert q.tolist() == [-1, 1, 1, 3, 3, 5, 5, 7, 7]
    # A scale of 0.5 doubles: 1.25 -> 2.5 -> 2, 1.75 -> 3.5 -> 4
    q = quantize_affine(torch.tensor([1.25, 1.75]), (2,), torch.tensor(0.5), None, torch.int8)
    assert q.tolist() == [2, 4]


def test_asymmetric_uint8_literal_and_zero_exact():
    x = torch.tensor([-1.0, 0.0, 0.5, 3.0])
    scale, zp = choose_qparams_affine(x, ASYM, (4,), torch.uint8)
    assert scale.item() == (torch.tensor(4.0) / 255.0).item()
    assert zp.item() == 64  # 0 - round(-1 / (4/255)) = round(63.75)
    q = quantize_affine(x, (4,), scale, zp, torch.uint8)
    assert q.dtype == torch.uint8
    assert q.tolist() == [0, 64, 96, 255]
    dq = dequantize_affine(q, (4,), scale, zp, torch.uint8)
    assert dq[1].item() == 0.0
    assert torch.equal(dq, (q.float() - 64) * scale)


def test_asymmetric_all_positive_int8():
    x = torch.tensor([0.0, 1.0, 3.0, 4.0])
    scale, zp = choose_qparams_affine(x, ASYM, (4,), torch.int8)
    assert scale.item() == (torch.tensor(4.0) / 255.0).item()
    assert zp.item() == -128  # min clamps to 0, so 0.0 maps to quant_min
    q = quantize_affine(x, (4,), scale, zp, torch.int8)
    assert q.tolist() == [-128, -64, 63, 127]
    assert dequantize_affine(q, (4,), scale, zp, torch.int8)[0].item() == 0.0


def test_symmetric_no_clipping_err_literal():
    # int4: quant range [-8, 7]. min -8 and max 1: smin = 8/8 = 1 wins over smax = 1/7.
    x = torch.tensor([-8.0, -3.0, 0.0, 1.0])
    scale, zp = choose_qparams_affine(x, NOCLIP, (4,), torch.int4)
    assert scale.item() == 1.0 and zp.item() == 0
    q = quantize_affine(x, (4,), scale, zp, torch.int4)
    assert q.dtype == torch.int8 and q.tolist() == [-8, -3, 0, 1]
    # Max side wins: max 7 -> smax = 1 > smin = 2/8.
    x = torch.tensor([-2.0, 7.0])
    scale, _ = choose_qparams_affine(x, NOCLIP, (2,), torch.int4)
    assert scale.item() == 1.0
    # Plain SYMMETRIC on the same data: 7 / 7.5, so 7 / s = 7.5 -> 8 -> clamped to 7.
    scale, zp = choose_qparams_affine(x, SYM, (2,), torch.int4)
    assert scale.item() == (torch.tensor(7.0) / 7.5).item()
    assert quantize_affine(x, (2,), scale, zp, torch.int4).tolist() == [-2, 7]


def test_symmetric_no_clipping_err_unsigned_range_has_no_nan():
    # quant_min == 0: min/quant_min is 0/0 for non-negative data; torchao picks the max side.
    x = torch.tensor([0.0, 1.0, 2.0, 3.0])
    scale, zp = choose_qparams_affine(x, NOCLIP, (4,), torch.uint8)
    assert torch.isfinite(scale).all()
    assert scale.item() == (torch.tensor(3.0) / 255.0).item()
    assert zp.item() == 128


def test_quant_min_max_override():
    x = torch.tensor([[-127.0, 63.5, 31.75, 127.0], [0.1, -0.4, 0.3, 0.25]])
    scale, zp = choose_qparams_affine(x, SYM, (1, 4), torch.int8, quant_min=-127, quant_max=127)
    assert torch.equal(scale, torch.tensor([127.0, 0.4]) / 127.0)
    assert zp.tolist() == [0, 0]  # int((127 - 127 + 1) / 2)
    q = quantize_affine(x, (1, 4), scale, zp, torch.int8, -127, 127)
    assert q[0].tolist() == [-127, 64, 32, 127]  # 63.5 -> 64 (even), 31.75 -> 32
    assert q[1].tolist() == [32, -127, 95, 79]
    assert q.min() >= -127

    # 4-bit range stored in a uint8 container (torchao's groupwise int4 uses this).
    xu = torch.tensor([-1.0, 0.0, 2.0])
    scale, zp = choose_qparams_affine(xu, ASYM, (3,), torch.uint8, quant_min=0, quant_max=15)
    assert scale.item() == (torch.tensor(3.0) / 15.0).item()
    assert zp.item() == 5
    q = quantize_affine(xu, (3,), scale, zp, torch.uint8, 0, 15)
    assert q.tolist() == [0, 5, 15]


def test_eps():
    # default: the smallest normal number of the input dtype (current torchao)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        z = torch.zeros(10, 10, dtype=dtype)
        for mapping in ALL_MAPPINGS:
            scale, zp = choose_qparams_affine(z, mapping, (10, 10), torch.int8)
            assert scale.item() == torch.finfo(dtype).smallest_normal
            q = quantize_affine(z, (10, 10), scale, zp, torch.int8)
            assert torch.equal(dequantize_affine(q, (10, 10), scale, zp, torch.int8), z.float())
    # explicit eps floors the scale
    x = torch.full((4,), 1e-6)
    scale, _ = choose_qparams_affine(x, SYM, (4,), torch.int8, eps=1e-3)
    assert scale.item() == torch.tensor(1e-3).item()
    scale, _ = choose_qparams_affine(x, ASYM, (4,), torch.int8, eps=F32_EPS)
    assert scale.item() == F32_EPS


def test_small_bf16_weights_keep_precision():
    # A bf16 weight with |w| <= 0.05 needs an int8 scale of ~4e-4, far below bf16's eps (2**-7).
    w = (torch.linspace(-0.05, 0.05, 256)).to(torch.bfloat16).reshape(2, 128)
    scale, zp = choose_qparams_affine(w, SYM, (1, 128), torch.int8)
    assert scale.dtype == torch.bfloat16
    assert (scale.float() < 1e-3).all()
    q = quantize_affine(w, (1, 128), scale, zp, torch.int8)
    dq = dequantize_affine(q, (1, 128), scale, zp, torch.int8)
    assert (dq - w.float()).abs().max() <= scale.float().max() * 0.51


@pytest.mark.parametrize(
    "dtype, rng, storage",
    [
        (torch.int8, (-128, 127), torch.int8),
        (torch.uint8, (0, 255), torch.uint8),
        (torch.uint4, (0, 15), torch.uint8),
        (torch.int4, (-8, 7), torch.int8),
        (torch.uint2, (0, 3), torch.uint8),
        (torch.int2, (-2, 1), torch.int8),
        (torch.int1, (-1, 0), torch.int8),
        (torch.int16, (-32768, 32767), torch.int16),
    ],
)
def test_target_dtypes(dtype, rng, storage):
    assert dtype_range(dtype) == rng
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    for mapping in ALL_MAPPINGS:
        scale, zp = choose_qparams_affine(x, mapping, (1, 8), dtype)
        q = quantize_affine(x, (1, 8), scale, zp, dtype)
        assert q.dtype == storage
        assert int(q.min()) >= rng[0] and int(q.max()) <= rng[1]
        # both ends of the range are used by an asymmetric quantizer
        if mapping is ASYM:
            assert int(q.max()) == rng[1]
        dq = dequantize_affine(q, (1, 8), scale, zp, dtype)
        assert torch.equal(quantize_affine(dq, (1, 8), scale, zp, dtype), q)


@pytest.mark.parametrize("mapping", ALL_MAPPINGS, ids=lambda m: m.name)
@pytest.mark.parametrize("target", TARGETS, ids=str)
@pytest.mark.parametrize(
    "shape, block",
    [
        ((8, 16), (8, 16)),  # per tensor
        ((8, 16), (1, 16)),  # per row / per axis 0
        ((8, 16), (8, 1)),  # per axis 1
        ((8, 16), (1, 4)),  # per group
        ((8, 16), (4, 8)),  # per block
        ((8, 16), (1, 1)),  # per element
        ((2, 4, 8), (1, 4, 4)),  # 3-d, grouped last dim
        ((3, 3, 10, 10), (3, 3, 2, 2)),  # torchao's multi-dim reduction example
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_matches_reference(mapping, target, shape, block, dtype):
    g = torch.Generator().manual_seed(hash((shape, block)) % 2**31)
    x = (torch.randn(shape, generator=g) * 3).to(dtype)
    qmin, qmax = dtype_range(target)
    eps = torch.finfo(dtype).smallest_normal
    scale, zp = choose_qparams_affine(x, mapping, block, target)
    rs, rz = ref_qparams(x, mapping, block, qmin, qmax, eps)
    assert scale.dtype == dtype and zp.dtype == torch.int32
    assert torch.equal(_flat_grid(scale, shape, block), rs)
    assert torch.equal(_flat_grid(zp, shape, block), rz)
    q = quantize_affine(x, block, scale, zp, target)
    assert q.dtype == STORAGE[target]
    assert torch.equal(q.float(), ref_quantize(x, block, rs, rz, qmin, qmax))
    dq = dequantize_affine(q, block, scale, zp, target)
    assert dq.dtype == torch.float32
    assert torch.equal(dq, ref_dequantize(q, block, rs, rz))
    dq16 = dequantize_affine(q, block, scale, zp, target, output_dtype=dtype)
    assert dq16.dtype == dtype and torch.equal(dq16, dq.to(dtype))


def test_scale_shapes_follow_block_size():
    x = torch.randn(6, 8)
    for block, shape in [((6, 8), ()), ((1, 8), (6,)), ((6, 1), (8,)), ((1, 4), (6, 2)), ((3, 4), (2, 2))]:
        s, z = choose_qparams_affine(x, ASYM, block, torch.int8)
        assert s.shape == shape and z.shape == shape, block


def test_granularities_block_size():
    shape = (6, 8)
    assert PerTensor().block_size(shape) == (6, 8)
    assert PerAxis(0).block_size(shape) == (1, 8)
    assert PerAxis(1).block_size(shape) == (6, 1)
    assert PerAxis(-1).block_size(shape) == (6, 1)
    assert PerRow().block_size(shape) == (1, 8)
    assert PerRow().block_size((2, 3, 8)) == (1, 1, 8)
    assert PerGroup(4).block_size(shape) == (1, 4)
    assert PerBlock((3, 4)).block_size(shape) == (3, 4)
    with pytest.raises(ValueError, match="group_size"):
        PerGroup(3).block_size(shape)
    with pytest.raises(ValueError, match="does not tile"):
        PerBlock((4, 4)).block_size(shape)
    with pytest.raises(ValueError, match="does not match"):
        PerBlock((3,)).block_size(shape)


def test_scale_and_zero_point_dtypes():
    x = torch.randn(4, 8)
    s, z = choose_qparams_affine(x, ASYM, (1, 8), torch.int8, scale_dtype=torch.float64, zero_point_dtype=torch.int64)
    assert s.dtype == torch.float64 and z.dtype == torch.int64
    s, z = choose_qparams_affine(x, SYM, (1, 2), torch.int8, scale_dtype=torch.float32, zero_point_dtype=torch.float32)
    assert z.dtype == torch.float32 and (z == 0).all()
    xh = x.half()
    s, _ = choose_qparams_affine(xh, SYM, (1, 8), torch.int8)
    assert s.dtype == torch.float16


# ----------------------------------------------------------------------------------------------
# torchao's test_quant_primitives.py examples, against torch's quantized_decomposed ops
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qd():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers the ops)

            ops = torch.ops.quantized_decomposed
            ops.quantize_per_channel_group  # noqa: B018
        except (ImportError, AttributeError, RuntimeError):
            pytest.skip("torch has no quantized_decomposed ops")
    return ops


def test_torchao_choose_qparams_group_sym():
    torch.manual_seed(1234)
    x = torch.randn(10, 10)
    for mapping in (SYM, NOCLIP):
        scale, zp = choose_qparams_affine(
            x, mapping, (1, 2), torch.int8, eps=F32_EPS, scale_dtype=torch.float32, zero_point_dtype=torch.float32
        )
        g = x.reshape(10, 5, 2)
        mn = g.amin(-1).clamp(max=0)
        mx = g.amax(-1).clamp(min=0)
        if mapping is SYM:
            ref = torch.maximum(-mn, mx) / 127.5
        else:
            smin, smax = mn / -128.0, mx / 127.0
            ref = torch.where(smin > smax, smin, smax)
        assert torch.equal(scale, ref.clamp(min=F32_EPS))
        assert torch.equal(zp, torch.zeros(10, 5))


def test_torchao_get_group_qparams_symmetric_vs_observer():
    # per-channel symmetric int4 scales in fp16 equal PerChannelMinMaxObserver's
    torch.manual_seed(123)
    w = torch.randn(100, 256).to(torch.float16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            from torch.ao.quantization import PerChannelMinMaxObserver
        except ImportError:
            pytest.skip("torch has no torch.ao.quantization observers")
        obs = PerChannelMinMaxObserver(
            ch_axis=0, qscheme=torch.per_channel_symmetric, quant_min=-8, quant_max=7,
            factory_kwargs={"dtype": torch.float16},
        )
        obs(w)
        scale_obs, _ = obs.calculate_qparams()
    scale, _ = choose_qparams_affine(w, SYM, (1, 256), torch.int4, eps=F32_EPS, scale_dtype=torch.float16)
    assert torch.equal(scale, scale_obs.to(torch.float16))


def test_torchao_choose_qparams_token_asym(qd):
    torch.manual_seed(1234)
    x = torch.randn(10, 10)
    scale, zp = choose_qparams_affine(
        x, ASYM, (1, 10), torch.int8, eps=F32_EPS, scale_dtype=torch.float64, zero_point_dtype=torch.int64
    )
    scale_ref, zp_ref = qd.choose_qparams_per_token_asymmetric(x, torch.int8)
    torch.testing.assert_close(scale, scale_ref.squeeze(), atol=10e-3, rtol=10e-3)
    assert torch.equal(zp, zp_ref.squeeze())


@pytest.mark.parametrize("mapping", [ASYM, SYM], ids=lambda m: m.name)
def test_torchao_choose_qparams_tensor(qd, mapping):
    torch.manual_seed(1234)
    x = torch.randn(10, 10)
    scale, zp = choose_qparams_affine(x, mapping, (10, 10), torch.int8, eps=F32_EPS)
    op = qd.choose_qparams if mapping is ASYM else qd.choose_qparams_symmetric
    scale_ref, zp_ref = op(x, -128, 127, F32_EPS, torch.int8)
    assert torch.equal(scale.double(), scale_ref.squeeze())
    assert torch.equal(zp.long(), zp_ref.squeeze())


def test_torchao_quantize_activation_per_token_absmax():
    torch.manual_seed(1234)
    x = torch.randn(10, 10)
    scale, zp = choose_qparams_affine(x, SYM, (1, 10), torch.int8, -127, 127, eps=1e-5, scale_dtype=torch.float)
    q = quantize_affine(x, (1, 10), scale, zp, torch.int8, -127, 127)
    ref_scale = (x.abs().amax(-1) / 127.0).clamp(min=1e-5)
    ref_q = torch.round(x * (1.0 / ref_scale[:, None])).clamp(-127, 127).to(torch.int8)
    assert torch.equal(scale, ref_scale)
    assert torch.equal(q, ref_q)
    # zero input still works
    z = torch.zeros(10, 10)
    scale, zp = choose_qparams_affine(z, SYM, (1, 10), torch.int8, -127, 127, eps=1e-5)
    assert torch.equal(quantize_affine(z, (1, 10), scale, zp, torch.int8, -127, 127), torch.zeros(10, 10, dtype=torch.int8))


def test_torchao_quantize_dequantize_group_sym(qd):
    torch.manual_seed(1234)
    x = torch.randn(10, 10)
    scale, zp = choose_qparams_affine(x, SYM, (1, 2), torch.int8, eps=F32_EPS)
    q = quantize_affine(x, (1, 2), scale, zp, torch.int8)
    dq = dequantize_affine(q, (1, 2), scale, zp, torch.int8, output_dtype=torch.float32)
    q_ref = qd.quantize_per_channel_group(x, scale, zp, -128, 127, torch.int8, 2)
    dq_ref = qd.dequantize_per_channel_group(q_ref, scale, zp, -128, 127, torch.int8, 2, torch.float32)
    assert torch.equal(q, q_ref)
    assert torch.equal(dq, dq_ref)


@pytest.mark.parametrize(
    "shape, block, axis", [((10, 10), (10, 1), 1), ((3, 3, 10, 10), (3, 3, 1, 10), 2)], ids=["2d", "4d"]
)
def test_torchao_quantize_dequantize_channel_asym(qd, shape, block, axis):
    torch.manual_seed(1234)
    x = torch.randn(shape)
    scale, zp = choose_qparams_affine(x, ASYM, block, torch.int8, eps=F32_EPS)
    q = quantize_affine(x, block, scale, zp, torch.int8)
    dq = dequantize_affine(q, block, scale, zp, torch.int8)
    assert torch.equal(dq, dequantize_affine(q, block, scale, zp, torch.int8))  # idempotent
    q_ref = qd.quantize_per_channel(x, scale, zp, axis, -128, 127, torch.int8)
    dq_ref = qd.dequantize_per_channel(q_ref, scale, zp, axis, -128, 127, torch.int8, out_dtype=torch.float32)
    assert torch.equal(q, q_ref)
    assert torch.equal(dq, dq_ref)


def test_torchao_quantize_dequantize_tensor_asym(qd):
    torch.manual_seed(1234)
    x = torch.randn(10, 10)
    scale, zp = choose_qparams_affine(x, ASYM, (10, 10), torch.int8, eps=F32_EPS)
    q = quantize_affine(x, (10, 10), scale, zp, torch.int8)
    dq = dequantize_affine(q, (10, 10), scale, zp, torch.int8)
    q_ref = qd.quantize_per_tensor(x, scale.item(), zp.item(), -128, 127, torch.int8)
    dq_ref = qd.dequantize_per_tensor(q_ref, scale.item(), zp.item(), -128, 127, torch.int8, out_dtype=torch.float32)
    assert torch.equal(q, q_ref)
    assert torch.equal(dq, dq_ref)


def test_torchao_multi_dim_reduction_close():
    torch.manual_seed(1234)
    x = torch.randn(3, 3, 10, 10)
    block = (3, 3, 2, 2)
    scale, zp = choose_qparams_affine(x, ASYM, block, torch.int8, eps=F32_EPS)
    assert scale.shape == (5, 5)
    q = quantize_affine(x, block, scale, zp, torch.int8)
    dq = dequantize_affine(q, block, scale, zp, torch.int8)
    torch.testing.assert_close(dq, x, rtol=2, atol=0.02)


def test_torchao_groupwise_asym_4bit_in_int8():
    # test_get_groupwise_affine_qparams, integer zero-point domain: (1, 128) groups, range [0, 15]
    torch.manual_seed(1234)
    x = torch.randn(10, 256)
    scale, zp = choose_qparams_affine(
        x, ASYM, (1, 128), torch.int8, 0, 15, 1e-6, scale_dtype=torch.bfloat16, zero_point_dtype=torch.int32
    )
    g = x.reshape(10, 2, 128)
    mn, mx = g.amin(-1).clamp(max=0), g.amax(-1).clamp(min=0)
    s = ((mx - mn) / 15).clamp(min=1e-6)
    assert torch.equal(scale, s.to(torch.bfloat16))
    assert torch.equal(zp, torch.clamp(0 - torch.round(mn / s), 0, 15).to(torch.int32))


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------
def test_errors():
    x = torch.randn(10, 10)
    scale, zp = choose_qparams_affine(x, ASYM, (10, 10), torch.int8)
    # block_size that does not tile the shape / has the wrong rank
    with pytest.raises(ValueError, match="does not tile"):
        choose_qparams_affine(x, ASYM, (3, 10), torch.int8)
    with pytest.raises(ValueError, match="does not tile"):
        quantize_affine(x, (10, 4), scale, zp, torch.int8)
    with pytest.raises(ValueError, match="does not tile"):
        choose_qparams_affine(x, ASYM, (0, 10), torch.int8)
    with pytest.raises(ValueError, match="dims"):
        choose_qparams_affine(x, ASYM, (10,), torch.int8)
    with pytest.raises(ValueError, match="dims"):
        dequantize_affine(torch.zeros(10, 10, dtype=torch.int8), (1, 10, 1), scale, zp, torch.int8)
    # float / bool target dtype
    for bad in (torch.float32, torch.bfloat16, torch.float8_e4m3fn, torch.bool):
        with pytest.raises(TypeError, match="integer target dtype"):
            choose_qparams_affine(x, SYM, (10, 10), bad)
        with pytest.raises(TypeError, match="integer target dtype"):
            quantize_affine(x, (10, 10), scale, zp, bad)
    # integer input
    for bad in (torch.int32, torch.int8, torch.uint8):
        with pytest.raises(TypeError, match="floating-point input"):
            choose_qparams_affine(x.to(bad), SYM, (10, 10), torch.int8)
        with pytest.raises(TypeError, match="floating-point input"):
            quantize_affine(x.to(bad), (10, 10), scale, zp, torch.int8)
    # bad quant range
    for qmin, qmax, dtype in [(-129, 127, torch.int8), (0, 256, torch.uint8), (0, 16, torch.uint4),
                              (-9, 7, torch.int4), (5, 5, torch.int8), (7, 3, torch.int8)]:
        with pytest.raises(ValueError, match="quant range"):
            choose_qparams_affine(x, ASYM, (10, 10), dtype, qmin, qmax)
        with pytest.raises(ValueError, match="quant range"):
            quantize_affine(x, (10, 10), scale, zp, dtype, qmin, qmax)
    # unknown mapping
    with pytest.raises(ValueError, match="mapping_type"):
        choose_qparams_affine(x, "symmetric", (10, 10), torch.int8)


# ----------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------
@st.composite
def shapes_and_blocks(draw):
    ndim = draw(st.integers(1, 3))
    shape, block = [], []
    for _ in range(ndim):
        b = draw(st.integers(1, 8))
        n = draw(st.integers(1, 4))
        kind = draw(st.sampled_from(["one", "full", "split"]))
        shape.append(b * n)
        block.append({"one": 1, "full": b * n, "split": b}[kind])
    return tuple(shape), tuple(block)


KINDS = ["normal", "heavy", "zero_blocks", "constant", "with_zeros"]
MAGS = {
    torch.float32: [1e-30, 1e-3, 1.0, 1e3, 1e30],
    torch.bfloat16: [1e-30, 1e-3, 1.0, 1e30],
    torch.float16: [1e-2, 1.0, 10.0],
}


def make_values(seed, shape, block, kind, mag, dtype):
    g = torch.Generator().manual_seed(seed)
    grid = _grid(shape, block)
    x = torch.randn(shape, generator=g)
    if kind == "heavy":  # Cauchy tails plus a few big outliers
        x = torch.tan(torch.pi * (torch.rand(shape, generator=g) - 0.5)).clamp(-1e3, 1e3)
        x = torch.where(torch.rand(shape, generator=g) < 0.03, x * 1e3, x)
        if dtype == torch.float16:
            x = x.clamp(-3e3, 3e3)
    elif kind == "zero_blocks":
        x = x * _expand((torch.rand(grid, generator=g) < 0.5).float(), block)
    elif kind == "constant":
        c = torch.randn(grid, generator=g) * (torch.rand(grid, generator=g) < 0.8)
        x = _expand(c, block).clone()
    elif kind == "with_zeros":
        x = torch.where(torch.rand(shape, generator=g) < 0.3, torch.zeros(()), x)
    return (x * mag).to(dtype)


@st.composite
def cases(draw):
    shape, block = draw(shapes_and_blocks())
    dtype = draw(st.sampled_from([torch.float32, torch.float32, torch.bfloat16, torch.float16]))
    kind = draw(st.sampled_from(KINDS))
    mag = draw(st.sampled_from(MAGS[dtype]))
    seed = draw(st.integers(0, 2**31 - 1))
    mapping = draw(st.sampled_from(ALL_MAPPINGS))
    target = draw(st.sampled_from(TARGETS))
    x = make_values(seed, shape, block, kind, mag, dtype)
    return x, block, mapping, target


PROPS = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(cases())
def test_property_range_error_zero(case):
    x, block, mapping, target = case
    qmin, qmax = dtype_range(target)
    scale, zp = choose_qparams_affine(x, mapping, block, target)
    assert torch.isfinite(scale.float()).all() and (scale.float() > 0).all()
    assert ((zp >= qmin) & (zp <= qmax)).all()
    q = quantize_affine(x, block, scale, zp, target)
    assert q.dtype == STORAGE[target] and q.shape == x.shape
    assert int(q.min()) >= qmin and int(q.max()) <= qmax

    dq = dequantize_affine(q, block, scale, zp, target)
    s = _expand(scale.reshape(_grid(x.shape, block)).double(), block)
    z = _expand(zp.reshape(_grid(x.shape, block)).double(), block)
    x64 = x.double()
    err = (x64 - dq.double()).abs()
    slack = 1e-6 * x64.abs()
    # where not clamped (x inside the covered range), at most half a step
    inside = (x64 >= (qmin - z - 0.5) * s) & (x64 <= (qmax - z + 0.5) * s)
    assert (err[inside] <= s[inside] * (0.5 + 1e-4) + slack[inside]).all()
    # where clamped, at most one step (plus the rounding of a low-precision scale)
    # (not for SYMMETRIC_NO_CLIPPING_ERR on an unsigned range: there, as in torchao, min / 0 is
    # ignored and the scale only covers half the range: a meaningless combination)
    tol = 1 + 1e-4 + torch.finfo(scale.dtype).eps * (qmax - qmin)
    if not (mapping is NOCLIP and qmin == 0):
        assert (err <= s * tol + slack).all()
    if mapping is ASYM and x.dtype == torch.float32:  # the scale covers [min, max]: nothing clamps
        assert inside.all()
    # 0.0 is exactly representable, for every mapping type
    assert (dq[x == 0] == 0).all()


@PROPS
@given(cases(), st.integers(0, 2**31 - 1))
def test_property_round_trip(case, seed):
    x, block, mapping, target = case
    qmin, qmax = dtype_range(target)
    scale, zp = choose_qparams_affine(x, mapping, block, target)
    q = quantize_affine(x, block, scale, zp, target)
    dq = dequantize_affine(q, block, scale, zp, target)
    assert torch.equal(quantize_affine(dq, block, scale, zp, target), q)
    # any integer tensor in range, not only the ones quantize produces
    g = torch.Generator().manual_seed(seed)
    qr = torch.randint(qmin, qmax + 1, x.shape, generator=g).to(STORAGE[target])
    dqr = dequantize_affine(qr, block, scale, zp, target)
    assert torch.equal(quantize_affine(dqr, block, scale, zp, target), qr)
    # also when dequantizing to the input's own dtype, for 4-bit (bf16 keeps 8 significant bits)
    if target in (torch.uint4, torch.int4) and x.dtype != torch.float16:
        dq_lp = dequantize_affine(qr, block, scale, zp, target, output_dtype=x.dtype)
        assert torch.equal(quantize_affine(dq_lp, block, scale, zp, target), qr)
