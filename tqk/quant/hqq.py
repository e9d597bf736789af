"""HQQ (half-quadratic quantization) qparams, via the optional `hqq` package's own optimizer.

HQQ keeps min-max groups but optimizes each group's zero point (a float, not an integer) with a
proximal solver that minimizes an lp-norm (p < 1) of the dequantization error.

Conventions. hqq works with an *inverse* scale: q = round(w * inv_scale + zero), and stores
scale = 1 / inv_scale so that w ~= (q - zero) * scale. With axis=1 its groups are runs of
`group_size` consecutive elements of the flattened weight, i.e. for a row-major (N, K) weight,
groups along K. That is our per-group layout, so the outputs below are simply reshaped to
(N, K // group_size), and dequantize as

    w ~= (q - zero) * scale        (dequantize_affine with block_size (1, group_size)).

Install on a CPU-only machine without pulling a CUDA torch (the sdist's setup.py would otherwise
try to build CUDA kernels, and its Requires-Dist pulls transformers/accelerate):
    DISABLE_CUDA=1 pip install --no-deps hqq "numpy>=1.24.4"
"""
from __future__ import annotations

import torch

from .affine import choose_qparams_affine_clipped

_IMPORT_ERROR = "use_hqq=True needs the 'hqq' package: pip install hqq"


def _hqq_optimizer():
    try:
        from hqq.core import optimize
    except ImportError as e:
        raise ImportError(_IMPORT_ERROR) from e
    fn = getattr(optimize, "optimize_weights_proximal_legacy", None) or getattr(
        optimize, "optimize_weights_proximal", None
    )
    if fn is None:
        raise ImportError(f"{_IMPORT_ERROR} (the installed hqq has no optimize_weights_proximal_legacy)")
    return fn


@torch.no_grad()
def choose_qparams_hqq(
    weight: torch.Tensor, nbits: int, group_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """HQQ-optimized groupwise quantization of a 2-D weight (N, K), groups of `group_size` along K.

    Returns (q, scale, zero):
      q:     uint8 (N, K), values in [0, 2**nbits - 1]
      scale: (N, K // group_size), weight.dtype
      zero:  (N, K // group_size), weight.dtype, a float zero point in the integer domain
    with weight ~= (q - zero) * scale per group. The optimizer runs on CPU in float32; the results
    are moved back to weight's device. q is chosen as the nearest level for the scale and zero
    as they are stored (rounded to weight.dtype).
    """
    if weight.dim() != 2:
        raise ValueError(f"choose_qparams_hqq needs a 2-D weight (N, K), got shape {tuple(weight.shape)}")
    if not weight.dtype.is_floating_point:
        raise TypeError(f"choose_qparams_hqq needs a floating-point weight, got {weight.dtype}")
    if int(nbits) != nbits or not 1 <= nbits <= 8:
        raise ValueError(f"nbits must be an integer in [1, 8], got {nbits}")
    N, K = weight.shape
    if group_size <= 0 or K % group_size:
        raise ValueError(f"group_size={group_size} does not divide K={K}")
    optimize = _hqq_optimizer()

    max_q = 2**int(nbits) - 1
    W = weight.detach().to(device="cpu", dtype=torch.float32).reshape(-1, group_size)
    w_min = W.amin(dim=1, keepdim=True)
    w_max = W.amax(dim=1, keepdim=True)
    amax = torch.maximum(w_min.abs(), w_max.abs())
    finfo = torch.finfo(weight.dtype)

    # Initial inverse scale from min-max (as hqq and torchao do), bounded so that
    #  - the stored scale 1 / inv_scale stays a normal number of weight.dtype (hqq clamps it at
    #    2e4 for fp16, about 1 / smallest_normal(fp16)),
    #  - |w| * inv_scale, and so |zero|, stays finite in weight.dtype for near-constant groups.
    zero_cap = min(2.0**20, finfo.max / 4)
    inv_cap = torch.clamp(zero_cap / amax.clamp(min=1e-30), max=1.0 / finfo.smallest_normal)
    # Start from the clipped min-max fit (the plain int4 path's parameters), so HQQ refines the
    # same starting point that use_hqq=False returns.
    init_scale, init_zero = choose_qparams_affine_clipped(W, (1, group_size), _uint_dtype(nbits))
    inv_scale = torch.minimum(1.0 / init_scale.reshape(-1, 1), inv_cap)
    zero = init_zero.reshape(-1, 1)
    # Constant groups (all-zero ones included) are stored exactly: c = (q - zero) * scale with
    # scale = |c| (1 for c == 0), zero = 1 if c < 0 else 0, so q is 1 or 0.
    constant = w_max == w_min
    const_scale = torch.where(w_min == 0, torch.ones_like(w_min), w_min.abs())
    const_zero = (w_min < 0).float()
    inv_scale = torch.where(constant, 1.0 / const_scale, inv_scale)
    zero = torch.where(constant, const_zero, zero)

    _, inv_scale, zero = optimize(
        tensor=W, scale=inv_scale, zero=zero, min_max=[0, max_q], axis=1, device="cpu"
    )
    scale = torch.where(constant, const_scale, 1.0 / inv_scale.float())
    zero = torch.where(constant, const_zero, zero.float())

    scale = scale.reshape(N, K // group_size).to(weight.dtype)
    zero = zero.reshape(N, K // group_size).to(weight.dtype)
    # nearest level for the parameters as stored
    q = torch.round(W / scale.float().reshape(-1, 1) + zero.float().reshape(-1, 1))
    q = q.clamp_(0, max_q).to(torch.uint8).reshape(N, K)
    dev = weight.device
    return q.to(dev), scale.to(dev), zero.to(dev)


def _uint_dtype(nbits: int) -> torch.dtype:
    return torch.uint8 if nbits == 8 else getattr(torch, f"uint{nbits}")
