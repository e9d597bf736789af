"""Tests of tqk.quant.hqq (HQQ qparams through the optional `hqq` package)."""
from __future__ import annotations

import sys

import pytest
import torch

import tqk.quant.hqq as tqk_hqq
from tqk.quant import MappingType, choose_qparams_affine, dequantize_affine, quantize_affine
from tqk.quant.hqq import choose_qparams_hqq


def _dequant(q, scale, zero, group_size):
    return dequantize_affine(q, (1, group_size), scale, zero, output_dtype=torch.float32)


def _seeded_weight(dtype=torch.float32, shape=(256, 512), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).to(dtype)


# ----------------------------------------------------------------------------------------------
# Without hqq: the import error, and the conversion from hqq's convention (fake optimizer)
# ----------------------------------------------------------------------------------------------
def test_missing_hqq_raises_clear_import_error(monkeypatch):
    for name in ("hqq", "hqq.core", "hqq.core.optimize"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import hqq...` fail
    with pytest.raises(ImportError, match=r"^use_hqq=True needs the 'hqq' package: pip install hqq$"):
        choose_qparams_hqq(torch.randn(8, 64), 4, 32)


def test_conversion_from_hqq_convention(monkeypatch):
    """hqq hands back an inverse scale and a zero per row of the (-1, group_size) view; we must
    return scale = 1 / inv_scale and zero as (N, K // group_size), and q = round(w / s + z)."""
    seen = {}

    def fake_optimizer(tensor, scale, zero, min_max, axis, device):
        seen.update(tensor=tensor.clone(), scale=scale.clone(), zero=zero.clone(), min_max=min_max,
                    axis=axis, device=device)
        new_zero = zero + 0.25  # a non-integer zero point, as HQQ produces
        return torch.round(tensor * scale + new_zero).clamp(*min_max), scale, new_zero

    monkeypatch.setattr(tqk_hqq, "_hqq_optimizer", lambda: fake_optimizer)
    N, K, gs = 6, 32, 8
    w = torch.randn(N, K)
    q, scale, zero = choose_qparams_hqq(w, 4, gs)

    # what hqq was given: float32 groups along K, axis=1, on CPU
    assert seen["tensor"].dtype == torch.float32 and seen["tensor"].shape == (N * K // gs, gs)
    assert torch.equal(seen["tensor"], w.reshape(-1, gs))
    assert seen["axis"] == 1 and seen["device"] == "cpu" and seen["min_max"] == [0, 15]
    # ... starting from the plain int4 path's parameters (clipped min-max), as an inverse scale
    from tqk.quant.affine import choose_qparams_affine_clipped
    init_scale, init_zero = choose_qparams_affine_clipped(w.reshape(-1, gs), (1, gs), torch.uint4)
    torch.testing.assert_close(seen["scale"], 1.0 / init_scale.reshape(-1, 1))
    assert torch.equal(seen["zero"], init_zero.reshape(-1, 1))

    # what we return
    assert q.shape == (N, K) and q.dtype == torch.uint8
    assert scale.shape == (N, K // gs) and zero.shape == (N, K // gs)
    assert torch.equal(scale, (1.0 / seen["scale"]).reshape(N, K // gs))
    assert torch.equal(zero, (seen["zero"] + 0.25).reshape(N, K // gs))
    s_full = scale.repeat_interleave(gs, 1)
    z_full = zero.repeat_interleave(gs, 1)
    assert torch.equal(q.float(), torch.round(w / s_full + z_full).clamp(0, 15))
    dq = _dequant(q, scale, zero, gs)
    assert torch.equal(dq, (q.float() - z_full) * s_full)
    # min-max scale, zero rounded (+-0.5) then shifted by 0.25: the ends clip by at most 0.75 step
    assert ((dq - w).abs() <= s_full * (0.75 + 1e-5)).all()


def test_bad_arguments(monkeypatch):
    monkeypatch.setattr(tqk_hqq, "_hqq_optimizer", lambda: pytest.fail("validated after the import"))
    w = torch.randn(8, 64)
    with pytest.raises(ValueError, match="2-D"):
        choose_qparams_hqq(w.reshape(-1), 4, 32)
    with pytest.raises(ValueError, match="does not divide"):
        choose_qparams_hqq(w, 4, 48)
    with pytest.raises(ValueError, match="does not divide"):
        choose_qparams_hqq(w, 4, 0)
    for nbits in (0, 9, 2.5):
        with pytest.raises(ValueError, match="nbits"):
            choose_qparams_hqq(w, nbits, 32)
    with pytest.raises(TypeError, match="floating-point"):
        choose_qparams_hqq(w.to(torch.int32), 4, 32)


# ----------------------------------------------------------------------------------------------
# With hqq
# ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hqq():
    return pytest.importorskip("hqq")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("group_size", [64, 128])
def test_hqq_mse_no_worse_than_affine(hqq, dtype, group_size):
    w = _seeded_weight(dtype)
    q, scale, zero = choose_qparams_hqq(w, 4, group_size)
    mse_hqq = (_dequant(q, scale, zero, group_size) - w.float()).pow(2).mean()

    block = (1, group_size)
    s, z = choose_qparams_affine(w, MappingType.ASYMMETRIC, block, torch.uint4)
    qa = quantize_affine(w, block, s, z, torch.uint4)
    mse_affine = (dequantize_affine(qa, block, s, z, torch.uint4) - w.float()).pow(2).mean()
    assert mse_hqq <= mse_affine, (mse_hqq.item(), mse_affine.item())


@pytest.mark.parametrize("nbits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_hqq_range_shapes_dtypes(hqq, nbits, dtype):
    N, K, gs = 32, 256, 64
    w = _seeded_weight(dtype, (N, K), seed=nbits)
    w[0, :4] *= 20  # a few outliers
    q, scale, zero = choose_qparams_hqq(w, nbits, gs)
    assert q.dtype == torch.uint8 and q.shape == (N, K)
    assert int(q.min()) >= 0 and int(q.max()) <= 2**nbits - 1
    assert scale.dtype == dtype and scale.shape == (N, K // gs)
    assert zero.dtype == dtype and zero.shape == (N, K // gs)
    assert (scale.float() > 0).all() and torch.isfinite(scale.float()).all()
    assert torch.isfinite(zero.float()).all()
    if nbits >= 3:
        assert not torch.equal(zero.float(), zero.float().round())  # a float zero point

    s_full = scale.float().repeat_interleave(gs, 1)
    z_full = zero.float().repeat_interleave(gs, 1)
    dq = _dequant(q, scale, zero, gs)
    assert torch.equal(dq, (q.float() - z_full) * s_full)
    err = (dq - w.float()).abs()
    # q is the nearest level for the stored (scale, zero): half a step wherever w is not clipped
    inside = (w.float() >= (0 - z_full - 0.5) * s_full) & (w.float() <= (2**nbits - 1 - z_full + 0.5) * s_full)
    assert (err[inside] <= s_full[inside] * (0.5 + 1e-4)).all()
    assert (err <= 1.5 * s_full).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_hqq_constant_and_zero_groups_are_exact(hqq, dtype):
    gs = 32
    c = torch.tensor([[0.0, 0.5, -3.0, 7.25], [1e-3, -2.0, 0.0, 40.0]])
    w = c.repeat_interleave(gs, 1).to(dtype)
    w[1, -gs:] = torch.linspace(-1, 1, gs)  # one ordinary group next to the constant ones
    q, scale, zero = choose_qparams_hqq(w, 4, gs)
    dq = _dequant(q, scale, zero, gs)
    assert torch.isfinite(dq).all()
    assert torch.equal(dq[:, : 3 * gs], w[:, : 3 * gs].float())
    assert torch.equal(dq[0, 3 * gs:], w[0, 3 * gs:].float())
    q0, s0, z0 = choose_qparams_hqq(torch.zeros(4, 64, dtype=dtype), 4, gs)
    assert torch.equal(_dequant(q0, s0, z0, gs), torch.zeros(4, 64))


def test_hqq_optimize_imports_without_cuda(hqq):
    import hqq.core.optimize as opt

    assert callable(opt.optimize_weights_proximal_legacy)
