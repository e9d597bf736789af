"""The 8-bit tensor-core GEMM of the activation-quantized configs (issue 11):

    out[m, n] = sum_k a[m, k] * w[n, k] * scale_a * scale_w + bias[n]

a: activation codes [M, K], int8 or e4m3 (as uint8 bits), quantized per row (a per-tensor or static
   scale is given as the same value in every row) or per 1x128 block (tqk/quant/activation.py).
w: weight codes [N, K], int8 or e4m3 bits, with one scale per tensor or row ([N]) or per 128x128
   block ([cdiv(N, 128), K // 128]); or 4-bit codes two to a byte (W4A8) with a scale and an
   integer zero point per group of GROUP codes ([K // GROUP, N]).

The products are exact: int8 x int8 accumulates in int32; e4m3 x e4m3 products are exact in the
fp32 accumulator; a 4-bit weight is decoded to the integer q - z, in [-15, 15], which int8 and e4m3
both hold exactly. Scales that change along K (blocks, groups) multiply each K step's partial
dot (BLOCK_K is then the block or the group); the others multiply once, in the epilogue.

Under Triton's interpreter the operands are decoded to float32 before each dot (DOT_F32): its dot
is numpy's, which neither accumulates int8 in int32 nor knows fp8. Each K step's float32 dot of
integer codes is exact (|sum| < 2**24 for BLOCK_K <= 128 x 127 x 127) and is rounded to int32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .decode import decode_codes

A_SCALES = ("row", "block")  # per-tensor and static scales arrive as rows of one value
W_SCALES = ("row", "block", "group")
BLOCK = 128  # the block side of PerBlock((1, 128)) and PerBlock((128, 128))


@dataclass(frozen=True)
class ScaledFormat:
    """What the kernel is specialized on: operand kinds and scale granularities."""

    act: str  # "int8" or "e4m3"
    weight: str  # "int8", "e4m3" or "int4" (4-bit codes with a zero point, two to a byte)
    a_scale: str  # "row" or "block"
    w_scale: str  # "row", "block" or "group"
    group: int = 0  # K per scale step: 128 for blocks, the group size for "group", else 0

    def __post_init__(self):
        assert self.act in ("int8", "e4m3") and self.weight in ("int8", "e4m3", "int4"), self
        assert self.a_scale in A_SCALES and self.w_scale in W_SCALES, self
        assert (self.weight == "int4") == (self.w_scale == "group"), self
        assert self.weight != "e4m3" or self.act == "e4m3", "an e4m3 weight takes e4m3 activations"
        assert self.weight != "int8" or self.act == "int8", "an int8 weight takes int8 activations"


@triton.jit
def _operand(codes, KIND: tl.constexpr, DOT_F32: tl.constexpr):
    """A tile of codes as the dot's operand: int8, or e4m3 from its bits, or float32 (interpreter)."""
    if DOT_F32:
        if KIND == "e4m3":
            out = decode_codes(codes.to(tl.int32) & 0xFF, "e4m3")
        else:
            out = codes.to(tl.float32)
    elif KIND == "e4m3":
        out = codes.to(tl.uint8).to(tl.float8e4nv, bitcast=True)
    else:
        out = codes.to(tl.int8)
    return out


@triton.jit
def _int4_as(values, ACT: tl.constexpr, DOT_F32: tl.constexpr):
    """Decoded 4-bit weights (int32 q - z in [-15, 15]) in the activations' operand type."""
    if DOT_F32:
        out = values.to(tl.float32)
    elif ACT == "e4m3":
        out = values.to(tl.float16).to(tl.float8e4nv)  # exact: integers up to 16
    else:
        out = values.to(tl.int8)
    return out


@triton.jit
def _dot(a, w, acc_dtype: tl.constexpr, DOT_F32: tl.constexpr):
    if DOT_F32:
        d = tl.dot(a, w, out_dtype=tl.float32)
        if acc_dtype == tl.int32:
            d = (d + tl.where(d >= 0, 0.5, -0.5)).to(tl.int32)  # exact integers in float32: round
    else:
        d = tl.dot(a, w, out_dtype=acc_dtype)
    return d


@triton.jit
def scaled_mm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, w_zero_ptr, bias_ptr, out_ptr,
    M, N, K, stride_am, stride_wn, stride_om, a_scale_stride,
    ACT: tl.constexpr, WEIGHT: tl.constexpr, A_SCALE: tl.constexpr, W_SCALE: tl.constexpr,
    HAS_BIAS: tl.constexpr, DOT_F32: tl.constexpr, EVEN_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
):
    pid = tl.program_id(0)
    num_m, num_n = tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N)
    width = GROUP_M * num_n  # GROUP_M row tiles walk N together: their weight tiles share the L2
    first_m = (pid // width) * GROUP_M
    rows = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % width) % rows
    pid_n = (pid % width) // rows
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_m, mask_n = rm < M, rn < N
    rm_c, rn_c = tl.where(mask_m, rm, 0), tl.where(mask_n, rn, 0)  # clamped: loads need no M/N mask
    K_STEPS: tl.constexpr = A_SCALE == "block" or W_SCALE != "row"  # scales that change along K
    ACC: tl.constexpr = tl.int32 if ACT == "int8" else tl.float32
    HALF: tl.constexpr = BLOCK_K // 2
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32 if K_STEPS else ACC)
    a_rows = a_ptr + rm_c[:, None].to(tl.int64) * stride_am
    for k0 in range(0, K, BLOCK_K):
        if WEIGHT == "int4":
            # byte j of a group holds codes j (low nibble) and j + GROUP // 2 (high nibble)
            rk = k0 + tl.arange(0, HALF)
            a_lo = _operand(tl.load(a_rows + rk[None, :]), ACT, DOT_F32)
            a_hi = _operand(tl.load(a_rows + rk[None, :] + HALF), ACT, DOT_F32)
            byte = tl.load(w_ptr + rn_c[None, :].to(tl.int64) * stride_wn + (k0 // 2 + tl.arange(0, HALF))[:, None])
            byte = byte.to(tl.int32) & 0xFF
            zero = tl.load(w_zero_ptr + (k0 // BLOCK_K) * N + rn_c).to(tl.float32).to(tl.int32)
            lo = _int4_as((byte & 15) - zero[None, :], ACT, DOT_F32)
            hi = _int4_as((byte >> 4) - zero[None, :], ACT, DOT_F32)
            part = _dot(a_lo, lo, ACC, DOT_F32) + _dot(a_hi, hi, ACC, DOT_F32)
        else:
            rk = k0 + tl.arange(0, BLOCK_K)
            mask_k = rk < K
            if EVEN_K:
                a = tl.load(a_rows + rk[None, :])
                w = tl.load(w_ptr + rn_c[None, :].to(tl.int64) * stride_wn + rk[:, None])
            else:
                a = tl.load(a_rows + rk[None, :], mask=mask_k[None, :], other=0)
                w = tl.load(w_ptr + rn_c[None, :].to(tl.int64) * stride_wn + rk[:, None], mask=mask_k[:, None],
                            other=0)
            part = _dot(_operand(a, ACT, DOT_F32), _operand(w, WEIGHT, DOT_F32), ACC, DOT_F32)
        if K_STEPS:
            step = part.to(tl.float32)
            kb = k0 // BLOCK_K
            if A_SCALE == "block":
                step = step * tl.load(a_scale_ptr + rm_c * a_scale_stride + kb).to(tl.float32)[:, None]
            if W_SCALE == "block":
                step = step * tl.load(w_scale_ptr + (rn_c // BLOCK_K) * (K // BLOCK_K) + kb).to(tl.float32)[None, :]
            if W_SCALE == "group":
                step = step * tl.load(w_scale_ptr + kb * N + rn_c).to(tl.float32)[None, :]
            acc += step
        else:
            acc += part
    out = acc.to(tl.float32)
    if A_SCALE == "row":
        out = out * tl.load(a_scale_ptr + rm_c).to(tl.float32)[:, None]
    if W_SCALE == "row":
        out = out * tl.load(w_scale_ptr + rn_c).to(tl.float32)[None, :]
    if HAS_BIAS:
        out += tl.load(bias_ptr + rn_c).to(tl.float32)[None, :]
    out_ptrs = out_ptr + rm[:, None].to(tl.int64) * stride_om + rn[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@dataclass(frozen=True)
class ScaledConfig:
    block_m: int
    block_n: int
    block_k: int
    num_warps: int = 4
    num_stages: int = 3
    group_m: int = 8


def scaled_config(fmt: ScaledFormat, m: int, n: int, k: int, interpreted: bool) -> ScaledConfig:
    """Tiles by M (untuned heuristics; autotune_results/ has no entries for this family yet). BLOCK_K is
    the scale step when scales change along K; the interpreter takes few, large tiles."""
    block_k = fmt.group if fmt.group else (128 if k >= 128 else max(16, triton.next_power_of_2(k)))
    if interpreted:
        return ScaledConfig(block_m=min(64, max(16, triton.next_power_of_2(m))),
                            block_n=min(128, max(16, triton.next_power_of_2(n))), block_k=block_k, num_stages=1)
    if m <= 16:
        return ScaledConfig(16, 64, block_k, num_warps=4, num_stages=4)
    if m <= 64:
        return ScaledConfig(64, 64, block_k, num_warps=4, num_stages=4)
    return ScaledConfig(128, 128, block_k, num_warps=8, num_stages=3)


def launch_scaled_mm(a_codes, a_scales, w_codes, w_scales, w_zeros, bias, fmt: ScaledFormat, n: int, k: int,
                     out_dtype: torch.dtype, interpreted: bool, wrap=None) -> torch.Tensor:
    """a_codes [M, K] (int8, or uint8 e4m3 bits) with a_scales [M] or [M, K // 128] (float32); the
    weight's codes, scales and zero points as its layout stores them (tqk/layouts/scaled.py)."""
    m = a_codes.shape[0]
    wrap = wrap or (lambda kernel: kernel)
    config = scaled_config(fmt, m, n, k, interpreted)
    out = torch.empty((m, n), dtype=out_dtype, device=a_codes.device)
    grid = (triton.cdiv(m, config.block_m) * triton.cdiv(n, config.block_n),)
    wrap(scaled_mm_kernel)[grid](
        a_codes, a_scales, w_codes, w_scales, w_scales if w_zeros is None else w_zeros,
        w_scales if bias is None else bias, out, m, n, k, a_codes.stride(0), w_codes.stride(0), out.stride(0),
        a_scales.stride(0) if a_scales.dim() == 2 else 1,
        ACT=fmt.act, WEIGHT=fmt.weight, A_SCALE=fmt.a_scale, W_SCALE=fmt.w_scale, HAS_BIAS=bias is not None,
        DOT_F32=interpreted, EVEN_K=k % config.block_k == 0,
        BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, GROUP_M=config.group_m,
        num_warps=config.num_warps, num_stages=config.num_stages,
    )
    return out
