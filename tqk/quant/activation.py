"""Activation quantization at run time, in plain torch ops.

Why torch ops and not a Triton pass: inside tqk's triton_op inductor traces them with the rest of
the model, so the row max and the cast fuse into one kernel with whatever precedes them (the
norm, the residual add), and the quantized linear launches that kernel and the GEMM, no more. On
the CPU they run as torch's own casts, which the interpreter's fp8 casts are not (Triton 3.9's
saturate and round wrongly).

Scales are float32. A row's NaN or Inf stays in that row: its scale is NaN or Inf, so its output
row is non-finite and no other is, as with F.linear. A per-tensor or static scale is returned as one value per row
(NaN for a row holding a NaN), so the GEMM needs only the row and 1x128 block forms. A zero row
or block has scale 0 and codes 0: its output is the bias exactly.

Two ways into the GEMM (tqk.kernels.scaled_mm.quantize_in_prologue picks one per call):
- codes: `quantize_activation` writes the codes and scales (torch ops: under inductor the scales'
  reduction and the cast are one kernel for rows; per tensor a global amax is a reduction of its
  own and 1x128 blocks came out as two kernels), and the GEMM reads 8-bit codes;
- prologue: `activation_scales` only (one reduction, fused with what precedes it) and the GEMM
  reads the float activation and quantizes each tile in registers exactly as `_codes` does
  (the same float32 multiply by the scale's reciprocal, clamp and round to nearest even), taking the per-tensor scale as
  the largest finite row scale itself: two kernels per linear at every granularity.
"""
from __future__ import annotations

import torch

QMAX = {"int8": 127.0, "e4m3": 448.0}
GRANULARITIES = ("tensor", "row", "block", "static")
BLOCK = 128


def _codes(x: torch.Tensor, scale: torch.Tensor, kind: str) -> torch.Tensor:
    """x times the float32 reciprocal of its scale (1 where the scale is 0 or NaN), clamped to +-qmax,
    rounded to nearest even. A multiply, not a division: the GEMM's prologue does the same per
    element (a division is ~10 instructions there) and must write the same codes."""
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (x * torch.reciprocal(safe)).clamp(-QMAX[kind], QMAX[kind])
    if kind == "int8":
        return torch.round(q).to(torch.int8)
    return q.to(torch.float8_e4m3fn).view(torch.uint8)  # the kernel reads the bits


def activation_scales(x2d: torch.Tensor, kind: str, granularity: str, static_scale: float = 0.0) -> torch.Tensor:
    """float32 scales of x [M, K]: [M] per row, [M, K // 128] per 1x128 block. Per tensor, each row's
    own amax / qmax: the tensor's scale is their largest finite value (division by qmax is monotonic,
    so that is the amax of the finite rows / qmax), and a row whose value is NaN or Inf keeps it. The
    GEMM's prologue takes these and quantizes x itself (tqk/kernels/scaled_mm.py)."""
    x = x2d.float()
    qmax = QMAX[kind]
    if granularity == "block":
        m, k = x.shape
        return x.view(m, k // BLOCK, BLOCK).abs().amax(-1) / qmax  # NaN where a block holds one
    row_amax = x.abs().amax(-1)
    if granularity in ("row", "tensor"):
        return row_amax / qmax
    if granularity == "static":
        bad = ~torch.isfinite(row_amax)  # a row holding a NaN or an Inf keeps it: that row's scale
        return torch.where(bad, row_amax, torch.full_like(row_amax, static_scale))
    raise ValueError(f"activation granularity {granularity!r}: one of {GRANULARITIES}")


def tensor_scale_rows(row_scales: torch.Tensor) -> torch.Tensor:
    """Per-tensor scales as rows [M]: the largest finite row scale in every row (no host sync), the
    row's own where it is NaN or Inf (one such row leaves the others alone)."""
    finite = torch.isfinite(row_scales)
    scale = torch.where(finite, row_scales, torch.zeros_like(row_scales)).amax()
    return torch.where(finite, scale, row_scales)


def quantize_activation(x2d: torch.Tensor, kind: str, granularity: str, static_scale: float = 0.0):
    """x [M, K] float -> (codes [M, K] int8 or uint8 e4m3 bits, scales float32 [M] or [M, K // 128])."""
    scale = activation_scales(x2d, kind, granularity, static_scale)
    x = x2d.float()
    if granularity == "block":
        m, k = x.shape
        return _codes(x.view(m, k // BLOCK, BLOCK), scale[..., None], kind).view(m, k), scale
    if granularity == "tensor":
        scale = tensor_scale_rows(scale)
    return _codes(x, scale[:, None], kind), scale


def dequantize_activation(codes: torch.Tensor, scales: torch.Tensor, kind: str) -> torch.Tensor:
    """float64 values of quantized activations: what the GEMM multiplies (for references and tests)."""
    values = codes.double() if kind == "int8" else codes.view(torch.float8_e4m3fn).double()
    if scales.dim() == 2:
        m, k = codes.shape
        return (values.view(m, k // BLOCK, BLOCK) * scales.double()[..., None]).view(m, k)
    return values * scales.double()[:, None]
