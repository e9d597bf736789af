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
"""
from __future__ import annotations

import torch

QMAX = {"int8": 127.0, "e4m3": 448.0}
GRANULARITIES = ("tensor", "row", "block", "static")
BLOCK = 128


def _codes(x: torch.Tensor, scale: torch.Tensor, kind: str) -> torch.Tensor:
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # zero (or NaN) scale: divide by 1
    q = (x / safe).clamp(-QMAX[kind], QMAX[kind])
    if kind == "int8":
        return torch.round(q).to(torch.int8)
    return q.to(torch.float8_e4m3fn).view(torch.uint8)  # the kernel reads the bits


def quantize_activation(x2d: torch.Tensor, kind: str, granularity: str, static_scale: float = 0.0):
    """x [M, K] float -> (codes [M, K] int8 or uint8 e4m3 bits, scales float32 [M] or [M, K // 128])."""
    x = x2d.float()
    qmax = QMAX[kind]
    if granularity == "block":
        m, k = x.shape
        blocks = x.view(m, k // BLOCK, BLOCK)
        scale = blocks.abs().amax(-1) / qmax  # NaN where a block holds one
        return _codes(blocks, scale[..., None], kind).view(m, k), scale
    row_amax = x.abs().amax(-1, keepdim=True)
    bad = ~torch.isfinite(row_amax)  # a row holding a NaN or an Inf keeps it: that row's scale
    if granularity == "row":
        scale = row_amax / qmax
    elif granularity == "tensor":
        finite = torch.where(bad, torch.zeros_like(row_amax), row_amax)
        scale = torch.where(bad, row_amax, finite.amax() / qmax)  # no host sync
    elif granularity == "static":
        scale = torch.where(bad, row_amax, torch.full_like(row_amax, static_scale))
    else:
        raise ValueError(f"activation granularity {granularity!r}: one of {GRANULARITIES}")
    return _codes(x, scale, kind), scale[:, 0]


def dequantize_activation(codes: torch.Tensor, scales: torch.Tensor, kind: str) -> torch.Tensor:
    """float64 values of quantized activations: what the GEMM multiplies (for references and tests)."""
    values = codes.double() if kind == "int8" else codes.view(torch.float8_e4m3fn).double()
    if scales.dim() == 2:
        m, k = codes.shape
        return (values.view(m, k // BLOCK, BLOCK) * scales.double()[..., None]).view(m, k)
    return values * scales.double()[:, None]
