"""The 8-bit tensor-core GEMM of the activation-quantized configs (issue 11):

    out[m, n] = sum_k a[m, k] * w[n, k] * scale_a * scale_w + bias[n]

a: activation codes [M, K], int8 or e4m3 (as uint8 bits), quantized per row (a per-tensor or static
   scale is given as the same value in every row) or per 1x128 block (tqk/quant/activation.py);
   or, with QUANTIZE_A (the prologue), the float activation [M, K] with its scales (activation_scales:
   per row, per 1x128 block, or per tensor as each row's own, whose largest finite value each program
   takes itself), quantized tile by tile in registers exactly as the torch ops would write the codes.
w: weight codes [N, K], int8 or e4m3 bits, with one scale per tensor or row ([N]) or per 128x128
   block ([cdiv(N, 128), K // 128]); or 4-bit codes two to a byte (W4A8) with a scale and an
   integer zero point per group of GROUP codes ([K // GROUP, N]).

Block-scaled floats (issue 13; Hopper has no block-scaled MMA, so the scales are applied around
plain dots):
- OCP MX: activation codes e4m3 (or e5m2) bits [M, K] with an E8M0 byte per 32 ([M, K // 32]); weight
  codes e4m3 / e5m2 bytes, e3m2 / e2m3 bytes or e2m1 two to a byte ([N, K // 2], code 2j in the low
  nibble of byte j), E8M0 bytes [K // 32, N]. Small floats are moved into e4m3's fields in registers
  (decode.fpx_as_e4m3: e4m3 holds every e2m1, e3m2 and e2m3 value), one 32-deep fp8 dot per block,
  and both blocks' powers of two multiply its float32 partial (BLOCK_K is the block).
- NVFP4: e2m1 weight codes two to a byte with an e4m3 byte per 16 ([K // 16, N]), decoded to float16
  values code * block scale (exact: at most 6 significant bits, within [2**-10, 2688]); the activation
  arrives so already (tqk/quant/activation.py), with its float32 tensor scale expanded to the rows
  (stride 0); the weight's tensor scale is the zeros slot (one float32). So the products are exact
  float16 ones, any BLOCK_K (a multiple of 16) takes one dot, and both tensor scales multiply once, in
  the epilogue. Not fp8 dots of 16 per
  block: 8-bit dots take K >= 32, and e4m3 does not hold e2m1 times an e4m3 scale.

The products are exact: int8 x int8 accumulates in int32; e4m3 x e4m3 products are exact in the
fp32 accumulator; a 4-bit weight is decoded to the integer q - z, in [-15, 15], which int8 and e4m3
both hold exactly. Scales that change along K (blocks, groups, MX's E8M0) multiply each K step's
partial dot (BLOCK_K is then the block or the group); the others multiply once, in the epilogue.

Which of the two (codes or prologue) a call runs is `quantize_in_prologue`'s choice, by M and
granularity: the prologue saves the codes' kernel and round trip, and per tensor or per 1x128 block
it is what keeps a linear at two kernels (inductor splits a global amax, and a block amax and its
cast, into kernels of their own); each program quantizes its row tile again for every tile of N, so
at large M the codes win when a kernel fewer does not matter.

Under Triton's interpreter the operands are decoded to float32 before each dot (DOT_F32): its dot
is numpy's, which neither accumulates int8 in int32 nor knows fp8. Each K step's float32 dot of
integer codes is exact (|sum| < 2**24 for BLOCK_K <= 128 x 127 x 127) and is rounded to int32.
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import torch
import triton
import triton.language as tl


from . import tuning
from .decode import decode_codes, fpx_as_e4m3
from .splits import reduce_splits, split_counts

ACTS = ("int8", "e4m3", "e5m2", "f16")
WEIGHTS = ("int8", "e4m3", "int4", "e5m2", "e3m2", "e2m3", "e2m1")
A_SCALES = ("row", "tensor", "block", "e8m0")  # static scales arrive as rows of one value (per tensor too, as codes)
W_SCALES = ("row", "block", "group", "e8m0", "e4m3")
BLOCK = 128  # the block side of PerBlock((1, 128)) and PerBlock((128, 128))


@dataclass(frozen=True)
class ScaledFormat:
    """What the kernel is specialized on: operand kinds and scale granularities."""

    act: str  # "int8", "e4m3", "e5m2" (MX), or "f16" (NVFP4: values with their block scales in)
    # "int8", "e4m3"; "int4" (4-bit codes with a zero point, two to a byte); MX / NVFP4 elements "e5m2",
    # "e3m2", "e2m3" (a byte each) and "e2m1" (two to a byte)
    weight: str
    a_scale: str  # "row" (per row or static), "tensor", "block" or "e8m0" (MX)
    w_scale: str  # "row", "block", "group", "e8m0" (MX) or "e4m3" (NVFP4's block scale bytes)
    group: int = 0  # K per scale: 128 for blocks, the group size for "group", 32 for MX, 16 for NVFP4, else 0

    def __post_init__(self):
        assert self.act in ACTS and self.weight in WEIGHTS, self
        assert self.a_scale in A_SCALES and self.w_scale in W_SCALES, self
        assert (self.weight == "int4") == (self.w_scale == "group"), self
        mx, nvfp4 = self.w_scale == "e8m0", self.w_scale == "e4m3"
        assert mx == (self.a_scale == "e8m0"), "MX scales on both operands or neither"
        assert not mx or self.act in ("e4m3", "e5m2"), "MX activations are e4m3 or e5m2 codes"
        assert nvfp4 == (self.act == "f16") and (not nvfp4 or (self.weight, self.a_scale) == ("e2m1", "row")), self
        assert mx or nvfp4 or self.weight in ("int8", "e4m3", "int4"), f"{self.weight} weights are MX / NVFP4's"
        assert mx or self.weight != "e4m3" or self.act == "e4m3", "an e4m3 weight takes e4m3 activations"
        assert self.weight != "int8" or self.act == "int8", "an int8 weight takes int8 activations"

    @property
    def k_steps(self) -> bool:
        """Whether scales change along K, multiplying each K step's partial dot (BLOCK_K = group)."""
        return self.a_scale in ("block", "e8m0") or self.w_scale in ("block", "group", "e8m0")


@triton.jit
def _typed(ptr, KIND: tl.constexpr, DOT_F32: tl.constexpr):
    """ptr to e4m3 / e5m2 codes (stored as bytes) as a pointer to that fp8 type, so a loaded tile goes from
    shared memory to the wgmma as it lies: a bitcast of a loaded uint8 tile in registers takes each weight
    tile shared -> registers -> shared again, and the activation's through registers (offline sm_90 SASS:
    loop 139 instructions with LDS / STS against int8's 72). The interpreter keeps bytes (numpy has no fp8)."""
    if DOT_F32:
        out = ptr
    elif KIND == "e4m3":
        out = ptr.to(tl.pointer_type(tl.float8e4nv), bitcast=True)
    elif KIND == "e5m2":
        out = ptr.to(tl.pointer_type(tl.float8e5), bitcast=True)
    else:
        out = ptr
    return out


@triton.jit
def _operand(codes, KIND: tl.constexpr, DOT_F32: tl.constexpr):
    """A tile of codes as the dot's operand: int8, e4m3 or e5m2 from its bits (or as loaded through a
    _typed pointer), float16 as it is, or float32 (interpreter)."""
    if codes.dtype == tl.float8e4nv or codes.dtype == tl.float8e5:
        out = codes
    elif DOT_F32:
        if KIND == "e4m3" or KIND == "e5m2":
            out = decode_codes(codes.to(tl.int32) & 0xFF, KIND)
        else:
            out = codes.to(tl.float32)
    elif KIND == "e4m3":
        out = codes.to(tl.uint8).to(tl.float8e4nv, bitcast=True)
    elif KIND == "e5m2":
        out = codes.to(tl.uint8).to(tl.float8e5, bitcast=True)
    elif KIND == "f16":
        out = codes
    else:
        out = codes.to(tl.int8)
    return out


@triton.jit
def _nvfp4_values(codes, w_scale_ptr, rn_c, k0, K, N, EVEN_K: tl.constexpr, BLOCK_K: tl.constexpr,
                  BLOCK_N: tl.constexpr, DOT_F32: tl.constexpr):
    """e2m1 codes [BLOCK_K, BLOCK_N] times their e4m3 block scales (a byte per 16 of K, [K // 16, N]), as
    float16 (float32 under the interpreter): exact either way. The scales are finite (never e4m3's NaN
    code), so the small-float decode reads them, and NVFP4 runs where fp8 types do not (sm_80)."""
    SUB: tl.constexpr = BLOCK_K // 16
    rs = k0 // 16 + tl.arange(0, SUB)
    ptrs = w_scale_ptr + rs[:, None] * N + rn_c[None, :]
    if EVEN_K:
        s = tl.load(ptrs)
    else:
        s = tl.load(ptrs, mask=(rs < K // 16)[:, None], other=0)
    scale = decode_codes(s.to(tl.int32) & 0xFF, "fpx43")
    scale = tl.reshape(tl.broadcast_to(scale[:, None, :], (SUB, 16, BLOCK_N)), (BLOCK_K, BLOCK_N))
    out = decode_codes(codes, "fpx21") * scale
    if not DOT_F32:
        out = out.to(tl.float16)
    return out


@triton.jit
def _weight_operand(w_ptr, w_scale_ptr, rn_c, k0, K, N, stride_wn, WEIGHT: tl.constexpr, W_SCALE: tl.constexpr,
                    EVEN_K: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, DOT_F32: tl.constexpr):
    """The weight's [BLOCK_K, BLOCK_N] tile from k0 as the dot's operand (every weight but int4)."""
    if WEIGHT == "e2m1":
        # two codes a byte, code 2j in the low nibble of byte j: the [BLOCK_N, BLOCK_K / 2] bytes as they lie
        # (K contiguous), each split into its pair beside it
        rb = k0 // 2 + tl.arange(0, BLOCK_K // 2)
        ptrs = w_ptr + rn_c[:, None].to(tl.int64) * stride_wn + rb[None, :]
        if EVEN_K:
            byte = tl.load(ptrs)
        else:
            byte = tl.load(ptrs, mask=(rb < K // 2)[None, :], other=0)
        byte = byte.to(tl.int32) & 0xFF
        codes = tl.trans(tl.reshape(tl.join(byte & 15, byte >> 4), (BLOCK_N, BLOCK_K)))
        if W_SCALE == "e4m3":
            out = _nvfp4_values(codes, w_scale_ptr, rn_c, k0, K, N, EVEN_K, BLOCK_K, BLOCK_N, DOT_F32)
        else:
            out = _operand(fpx_as_e4m3(codes, 2, 1), "e4m3", DOT_F32)
    else:
        rk = k0 + tl.arange(0, BLOCK_K)
        ptrs = _typed(w_ptr, WEIGHT, DOT_F32) + rn_c[None, :].to(tl.int64) * stride_wn + rk[:, None]
        if EVEN_K:
            w = tl.load(ptrs)
        else:
            w = tl.load(ptrs, mask=(rk < K)[:, None], other=0)
        if WEIGHT == "e3m2":
            out = _operand(fpx_as_e4m3(w.to(tl.int32) & 0xFF, 3, 2), "e4m3", DOT_F32)
        elif WEIGHT == "e2m3":
            out = _operand(fpx_as_e4m3(w.to(tl.int32) & 0xFF, 2, 3), "e4m3", DOT_F32)
        else:
            out = _operand(w, WEIGHT, DOT_F32)
    return out


@triton.jit
def _e8m0(ptrs):
    """float32 2**(code - 127) of the E8M0 bytes at ptrs (NaN for 0xFF)."""
    return decode_codes(tl.load(ptrs).to(tl.int32) & 0xFF, "e8m0")


@triton.jit
def _round_to_e4m3(q):
    """float32 q (|q| <= 448, or NaN) rounded to the nearest e4m3 value, ties to even, as float32: the
    interpreter's own fp8 casts are not torch's (Triton 3.9's round and saturate wrongly). Normal
    values keep 3 mantissa bits (the carry may bump the exponent), subnormals are multiples of 2**-9."""
    bits = q.to(tl.int32, bitcast=True)
    mag = bits & 0x7FFFFFFF
    normal = ((mag + 0x7FFFF + ((mag >> 20) & 1)) & 0x7FF00000) | (bits ^ mag)
    a = tl.abs(q)
    sub = ((a * 512.0 + 8388608.0) - 8388608.0) * 0.001953125  # round(a * 2**9) / 2**9, ties to even
    sub = tl.where(q < 0, -sub, sub)
    return tl.where(a < 0.015625, sub, normal.to(tl.float32, bitcast=True))


@triton.jit
def _inverse(scale):
    """1 / scale, correctly rounded (torch.reciprocal's), of the scale or 1 where it is 0 or NaN:
    a zero row or block quantizes to codes 0."""
    safe = tl.where(scale > 0, scale, 1.0)
    return tl.div_rn(tl.full(safe.shape, 1.0, tl.float32), safe)


@triton.jit
def _quantize(x, inv, ACT: tl.constexpr, DOT_F32: tl.constexpr):
    """A float tile x times inv (1 / its scale, broadcast) as _codes in tqk/quant/activation.py writes
    it: clamp to +-qmax, round to nearest even (int8), or the e4m3 cast; returned as the dot's operand
    (float32 values under the interpreter). A NaN row's codes are arbitrary: its NaN scale is what
    makes its output NaN."""
    q = x.to(tl.float32) * inv
    if ACT == "int8":
        q = tl.minimum(tl.maximum(q, -127.0), 127.0)
        if DOT_F32:
            out = (q + 12582912.0) - 12582912.0  # rounds to an integer, ties to even (|q| < 2**22)
            out = tl.where(out == out, out, 0.0)
        else:
            # cvt.rni is libdevice's float2int_rn, written out: inductor's copy of a user kernel takes
            # along the helpers it calls by name but no module (tests/kernels/test_inductor_source.py)
            out = tl.inline_asm_elementwise("cvt.rni.s32.f32 $0, $1;", "=r,r", [q], dtype=tl.int32, is_pure=True,
                                            pack=1).to(tl.int8)
    else:
        q = tl.minimum(tl.maximum(q, -448.0), 448.0)
        if DOT_F32:
            out = _round_to_e4m3(q)
        else:
            out = q.to(tl.float8e4nv)  # round to nearest even
    return out


@triton.jit
def _a_operand(tile, inv, ACT: tl.constexpr, QUANTIZE_A: tl.constexpr, DOT_F32: tl.constexpr):
    """The activation tile as the dot's operand: quantized here (float input), or codes as stored."""
    if QUANTIZE_A:
        out = _quantize(tile, inv, ACT, DOT_F32)
    else:
        out = _operand(tile, ACT, DOT_F32)
    return out


@triton.jit
def _finite_max(scale_ptr, M, CHUNK: tl.constexpr):
    """The largest finite value of scales [M] (0 if none): the per-tensor scale, from the rows' own."""
    best = tl.zeros([CHUNK], dtype=tl.float32)
    for m0 in range(0, M, CHUNK):
        r = m0 + tl.arange(0, CHUNK)
        s = tl.load(scale_ptr + r, mask=r < M, other=0.0)
        best = tl.maximum(best, tl.where(tl.abs(s) <= 3.4028234663852886e38, s, 0.0))
    return tl.max(best, axis=0)


@triton.jit
def _int4_as(q, zero, ACT: tl.constexpr, DOT_F32: tl.constexpr):
    """4-bit codes q (int32 in [0, 15]) minus their integer zero points (float32, broadcast), q - z in
    [-15, 15], in the activations' operand type. For e4m3 with no int -> float conversion (an I2F per
    code, 130 per 128x256 tile): q | 0x6400 is the float16 1024 + q, minus the float16 1024 + z it is
    q - z exactly, and the paired float16 -> e4m3 cvt is exact for integers up to 16."""
    if DOT_F32:
        out = (q - zero.to(tl.int32)).to(tl.float32)
    elif ACT == "e4m3":
        biased = (q | 0x6400).to(tl.int16).to(tl.float16, bitcast=True)
        out = (biased - (zero + 1024.0).to(tl.float16)).to(tl.float8e4nv)
    else:
        out = (q - zero.to(tl.int32)).to(tl.int8)
    return out


@triton.jit
def _int4_pairs_as_int8(byte, zero):
    """Bytes of two 4-bit codes (uint8 [HALF, BLOCK_N], K contiguous) -> int8 q - z of the low and of the
    high nibbles, four bytes in one 32-bit register at a time (pack=4 takes four neighbours along K: one
    column, one zero point): (q | 0x80) - z never borrows across bytes, and xor 0x80 leaves q - z in two's
    complement. 7 instructions per 8 codes, where int32 lanes took ~8 per code (offline sm_90 SASS)."""
    z = tl.broadcast_to(zero.to(tl.int32).to(tl.uint8), byte.shape)
    return tl.inline_asm_elementwise(
        """{
        .reg .b32 t;
        lop3.b32 t, $2, 0x0F0F0F0F, 0x80808080, 0xEA;
        sub.u32 t, t, $3;
        xor.b32 $0, t, 0x80808080;
        shr.u32 t, $2, 4;
        lop3.b32 t, t, 0x0F0F0F0F, 0x80808080, 0xEA;
        sub.u32 t, t, $3;
        xor.b32 $1, t, 0x80808080;
        }""", "=r,=r,r,r", [byte, z], dtype=(tl.int8, tl.int8), is_pure=True, pack=4)


@triton.jit
def _int4_pairs_as_e4m3(byte, zero):
    """_int4_pairs_as_int8's bytes -> e4m3 q - z (exact: integers up to 16), four bytes a register: each pair
    of codes spread into float16 lanes 1024 + q (prmt, or), minus the lanes 1024 + z, and one paired cvt."""
    z = tl.broadcast_to(zero.to(tl.int32).to(tl.uint8), byte.shape)
    lo, hi = tl.inline_asm_elementwise(
        """{
        .reg .b32 r0, z01, z23, m, t01, t23;
        .reg .b16 e01, e23;
        mov.b32 r0, 0;
        prmt.b32 z01, $3, r0, 0x4140;
        prmt.b32 z23, $3, r0, 0x4342;
        or.b32 z01, z01, 0x64006400;
        or.b32 z23, z23, 0x64006400;
        and.b32 m, $2, 0x0F0F0F0F;
        prmt.b32 t01, m, r0, 0x4140;
        prmt.b32 t23, m, r0, 0x4342;
        or.b32 t01, t01, 0x64006400;
        or.b32 t23, t23, 0x64006400;
        sub.f16x2 t01, t01, z01;
        sub.f16x2 t23, t23, z23;
        cvt.rn.satfinite.e4m3x2.f16x2 e01, t01;
        cvt.rn.satfinite.e4m3x2.f16x2 e23, t23;
        mov.b32 $0, {e01, e23};
        shr.u32 m, $2, 4;
        and.b32 m, m, 0x0F0F0F0F;
        prmt.b32 t01, m, r0, 0x4140;
        prmt.b32 t23, m, r0, 0x4342;
        or.b32 t01, t01, 0x64006400;
        or.b32 t23, t23, 0x64006400;
        sub.f16x2 t01, t01, z01;
        sub.f16x2 t23, t23, z23;
        cvt.rn.satfinite.e4m3x2.f16x2 e01, t01;
        cvt.rn.satfinite.e4m3x2.f16x2 e23, t23;
        mov.b32 $1, {e01, e23};
        }""", "=r,=r,r,r", [byte, z], dtype=(tl.uint8, tl.uint8), is_pure=True, pack=4)
    return lo.to(tl.float8e4nv, bitcast=True), hi.to(tl.float8e4nv, bitcast=True)


@triton.jit
def _int4_pairs(byte, zero, ACT: tl.constexpr, DOT_F32: tl.constexpr):
    """Bytes of two 4-bit codes -> the low and high nibbles' q - z in the activations' operand type: four
    bytes a register on a GPU (int8, e4m3), int32 lanes otherwise (float32 under the interpreter)."""
    if ACT == "int8" and not DOT_F32:
        lo, hi = _int4_pairs_as_int8(byte, zero)
    elif ACT == "e4m3" and not DOT_F32:
        lo, hi = _int4_pairs_as_e4m3(byte, zero)
    else:
        q = byte.to(tl.int32) & 0xFF
        lo = _int4_as(q & 15, zero, ACT, DOT_F32)
        hi = _int4_as(q >> 4, zero, ACT, DOT_F32)
    return lo, hi


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
def _dot_acc(a, w, acc, acc_dtype: tl.constexpr, DOT_F32: tl.constexpr):
    """acc + a @ w, the sum inside the dot (the wgmma accumulates in place; an fp8 dot's result added after
    it costs an FADD per accumulator element per K step: Triton does not fold the add into fp8 dots)."""
    if DOT_F32:
        out = acc + _dot(a, w, acc_dtype, DOT_F32)
    else:
        out = tl.dot(a, w, acc, out_dtype=acc_dtype)
    return out


@triton.jit
def _epilogue(acc, a_scale, w_scale_ptr, w_zero_ptr, bias_ptr, out_ptr, rm, rn, rn_c, mask_m, mask_n, stride_om,
              A_SCALE: tl.constexpr, W_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr):
    """The scales that do not change along K, the bias, and the store in the output's dtype."""
    out = acc.to(tl.float32)
    if A_SCALE == "row" or A_SCALE == "tensor":
        out = out * a_scale[:, None]
    if W_SCALE == "e4m3":  # NVFP4: the weight's tensor scale (its zeros slot), here and not a kernel of its own
        out = out * tl.load(w_zero_ptr).to(tl.float32)
    if W_SCALE == "row":
        out = out * tl.load(w_scale_ptr + rn_c).to(tl.float32)[None, :]
    if HAS_BIAS:
        out += tl.load(bias_ptr + rn_c).to(tl.float32)[None, :]
    out_ptrs = out_ptr + rm[:, None].to(tl.int64) * stride_om + rn[None, :]
    tl.store(out_ptrs, out.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def _step_scales(a_scale_ptr, w_scale_ptr, a_step, rm_c, rn_c, pid_n, kb, K, N, a_scale_stride,
                 A_SCALE: tl.constexpr, W_SCALE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """K step kb's scales as a row vector [BLOCK_M] and a column vector [BLOCK_N] (each only where
    scaled_mm_kernel's ROW_STEP / COL_STEP say it is read). A tile no wider than a 128 x 128 weight block
    lies in one: its one scale joins the rows' (a per-column gather was 32 loads of one address and their
    address math per thread per K step)."""
    row = a_step
    col = tl.zeros((BLOCK_N,), dtype=tl.float32)
    if A_SCALE == "e8m0":
        row = _e8m0(a_scale_ptr + rm_c * a_scale_stride + kb)
    if W_SCALE == "block":
        if BLOCK_N <= BLOCK_K:
            w_one = tl.load(w_scale_ptr + (pid_n * BLOCK_N // BLOCK_K) * (K // BLOCK_K) + kb).to(tl.float32)
            if A_SCALE == "block":
                row = a_step * w_one
            else:
                row = tl.zeros_like(a_step) + w_one
        else:
            col = tl.load(w_scale_ptr + (rn_c // BLOCK_K) * (K // BLOCK_K) + kb).to(tl.float32)
    if W_SCALE == "e8m0":
        col = _e8m0(w_scale_ptr + kb * N + rn_c)
    if W_SCALE == "group":
        col = tl.load(w_scale_ptr + kb * N + rn_c).to(tl.float32)
    return row, col


@triton.jit
def _scale_into(acc, part, row, col, ROW_STEP: tl.constexpr, COL_STEP: tl.constexpr, SWAP: tl.constexpr):
    """acc + part scaled by its step's row (M) and column (N) scales; SWAP: acc and part are [N, M]."""
    if SWAP:
        r = row[None, :]
        c = col[:, None]
    else:
        r = row[:, None]
        c = col[None, :]
    if ROW_STEP and COL_STEP:
        out = acc + (part * r) * c
    elif ROW_STEP:
        out = acc + part * r
    else:
        out = acc + part * c
    return out


@triton.jit
def scaled_mm_kernel(
    a_ptr, a_scale_ptr, w_ptr, w_scale_ptr, w_zero_ptr, bias_ptr, out_ptr, part_ptr, count_ptr,
    M, N, K, stride_am, stride_wn, stride_om, a_scale_stride, steps_per_split, stride_part,
    ACT: tl.constexpr, WEIGHT: tl.constexpr, A_SCALE: tl.constexpr, W_SCALE: tl.constexpr,
    HAS_BIAS: tl.constexpr, QUANTIZE_A: tl.constexpr, DOT_F32: tl.constexpr, EVEN_K: tl.constexpr, EVEN_N: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr,
    SPLIT_K: tl.constexpr, LATE_SCALE: tl.constexpr, SWAP_AB: tl.constexpr,
):
    """SPLIT_K > 1 (small M: more programs than N's tiles give): program (tile, s) takes steps_per_split
    K steps from step s * steps_per_split and stores its partial sums (int32 for int8 x int8 with row
    scales: exact, so the result is the unsplit one bit for bit) to part_ptr [SPLIT_K, M, N] (stride_part
    = M * N); the last program of a tile to arrive (count_ptr, one zeroed int32 per tile, left at zero)
    adds the partials in order of s and runs the epilogue (reduce_splits).

    LATE_SCALE (K_STEPS, a tuned choice): step k's partial is scaled into acc during step k + 1's dot, so
    a wgmma (BLOCK_M >= 64) runs under the scaling, where otherwise each step waits for its own dot right
    after issuing it (offline sm_90 SASS: the wait moves after 55 of the 64 FFMAs, and the carried partial
    costs 64 moves a step). The same sums in the same order either way.

    SWAP_AB (int4 weights, a tuned choice): the tile is computed transposed, out^T = W a^T, so the decoded
    weight is the wgmma's A operand, read from registers, where as B it went registers -> shared memory
    (a fence and a barrier a step) first; the weight's bytes load as they lie, K contiguous, and a 16-row
    activation is a wgmma's N of 16 rather than an mma.sync (offline sm_90 SASS, 128x128 int8: loop 368
    -> 279, no shared stores). The accumulator is turned back once, after the loop."""
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
    if EVEN_N:  # no clamp: loads of neighbouring columns' scales stay one vector load from one base address
        rn_c = rn  # (clamped, the 128x128 int4 tile gathered its group scales in 32 16-bit loads a step)
    K_STEPS: tl.constexpr = (A_SCALE == "block" or A_SCALE == "e8m0" or W_SCALE == "block" or W_SCALE == "group"
                             or W_SCALE == "e8m0")  # scales that change along K (ScaledFormat.k_steps)
    ACC: tl.constexpr = tl.int32 if ACT == "int8" else tl.float32
    HALF: tl.constexpr = BLOCK_K // 2
    SWAP: tl.constexpr = SWAP_AB and WEIGHT == "int4"
    if SWAP:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)  # (int4's group scales always change along K)
    else:
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32 if K_STEPS else ACC)
    a_base = a_ptr if QUANTIZE_A else _typed(a_ptr, ACT, DOT_F32)
    a_rows = a_base + rm_c[:, None].to(tl.int64) * stride_am
    a_cols = a_base + rm_c[None, :].to(tl.int64) * stride_am  # (SWAP: a^T)
    if A_SCALE == "row" or A_SCALE == "tensor":  # (stride 0: NVFP4's one tensor scale, expanded)
        a_scale = tl.load(a_scale_ptr + rm_c * a_scale_stride).to(tl.float32)
        if QUANTIZE_A and A_SCALE == "tensor":  # the rows' own scales in: the largest finite one is the tensor's
            a_scale = tl.where(tl.abs(a_scale) <= 3.4028234663852886e38, _finite_max(a_scale_ptr, M, 512), a_scale)
        a_inv = _inverse(a_scale)[:, None]  # (prologue only)
    else:
        a_scale = tl.zeros((BLOCK_M,), dtype=tl.float32)  # (not read: block scales multiply each K step)
        if A_SCALE == "e8m0":
            a_inv = 1.0  # (not read: MX activations arrive as codes)
    if SPLIT_K == 1:
        k_begin, k_end = 0, K
    else:
        k_begin = tl.program_id(1) * steps_per_split * BLOCK_K
        k_end = tl.minimum(K, k_begin + steps_per_split * BLOCK_K)
    ROW_STEP: tl.constexpr = A_SCALE == "block" or A_SCALE == "e8m0" or (W_SCALE == "block" and BLOCK_N <= BLOCK_K)
    COL_STEP: tl.constexpr = W_SCALE == "e8m0" or W_SCALE == "group" or (W_SCALE == "block" and BLOCK_N > BLOCK_K)
    pending = tl.zeros_like(acc)  # LATE_SCALE: the last step's partial, its scales
    row_s = tl.zeros((BLOCK_M,), dtype=tl.float32)
    col_s = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for k0 in range(k_begin, k_end, BLOCK_K):
        kb = k0 // BLOCK_K
        a_step = row_s  # (read only per 1x128 block)
        if A_SCALE == "block":
            a_step = tl.load(a_scale_ptr + rm_c * a_scale_stride + kb).to(tl.float32)
            a_inv = _inverse(a_step)[:, None]  # (prologue only)
        if WEIGHT == "int4":
            # byte j of a group holds codes j (low nibble) and j + GROUP // 2 (high nibble)
            rk = k0 + tl.arange(0, HALF)
            rb = k0 // 2 + tl.arange(0, HALF)
            if SWAP:  # a^T [HALF, BLOCK_M] and the bytes [BLOCK_N, HALF]
                inv = tl.trans(a_inv)
                a_lo = _a_operand(tl.load(a_cols + rk[:, None]), inv, ACT, QUANTIZE_A, DOT_F32)
                a_hi = _a_operand(tl.load(a_cols + rk[:, None] + HALF), inv, ACT, QUANTIZE_A, DOT_F32)
                byte = tl.load(w_ptr + rn_c[:, None].to(tl.int64) * stride_wn + rb[None, :])
                zero = tl.load(w_zero_ptr + kb * N + rn_c).to(tl.float32)[:, None]
            else:
                a_lo = _a_operand(tl.load(a_rows + rk[None, :]), a_inv, ACT, QUANTIZE_A, DOT_F32)
                a_hi = _a_operand(tl.load(a_rows + rk[None, :] + HALF), a_inv, ACT, QUANTIZE_A, DOT_F32)
                byte = tl.load(w_ptr + rn_c[None, :].to(tl.int64) * stride_wn + rb[:, None])
                zero = tl.load(w_zero_ptr + kb * N + rn_c).to(tl.float32)[None, :]
            lo, hi = _int4_pairs(byte, zero, ACT, DOT_F32)
            if SWAP:
                part = _dot_acc(hi, a_hi, _dot(lo, a_lo, ACC, DOT_F32), ACC, DOT_F32)
            else:
                part = _dot_acc(a_hi, hi, _dot(a_lo, lo, ACC, DOT_F32), ACC, DOT_F32)
        else:
            rk = k0 + tl.arange(0, BLOCK_K)
            if EVEN_K:
                a = tl.load(a_rows + rk[None, :])
            else:
                a = tl.load(a_rows + rk[None, :], mask=(rk < K)[None, :], other=0)
            w = _weight_operand(w_ptr, w_scale_ptr, rn_c, k0, K, N, stride_wn, WEIGHT, W_SCALE, EVEN_K, BLOCK_K,
                                BLOCK_N, DOT_F32)
            a = _a_operand(a, a_inv, ACT, QUANTIZE_A, DOT_F32)
            if K_STEPS:
                part = _dot(a, w, ACC, DOT_F32)
            else:
                acc = _dot_acc(a, w, acc, ACC, DOT_F32)
        if K_STEPS and LATE_SCALE:
            acc = _scale_into(acc, pending, row_s, col_s, ROW_STEP, COL_STEP, SWAP)
            pending = part.to(tl.float32)
            row_s, col_s = _step_scales(a_scale_ptr, w_scale_ptr, a_step, rm_c, rn_c, pid_n, kb, K, N, a_scale_stride,
                                        A_SCALE, W_SCALE, BLOCK_N, BLOCK_K)
        elif K_STEPS:
            row_s, col_s = _step_scales(a_scale_ptr, w_scale_ptr, a_step, rm_c, rn_c, pid_n, kb, K, N, a_scale_stride,
                                        A_SCALE, W_SCALE, BLOCK_N, BLOCK_K)
            acc = _scale_into(acc, part.to(tl.float32), row_s, col_s, ROW_STEP, COL_STEP, SWAP)
    if K_STEPS and LATE_SCALE:
        acc = _scale_into(acc, pending, row_s, col_s, ROW_STEP, COL_STEP, SWAP)
    if SWAP:
        acc = tl.trans(acc)
    if SPLIT_K == 1:
        _epilogue(acc, a_scale, w_scale_ptr, w_zero_ptr, bias_ptr, out_ptr, rm, rn, rn_c, mask_m, mask_n, stride_om,
                  A_SCALE, W_SCALE, HAS_BIAS)
    else:
        parts = part_ptr + rm[:, None].to(tl.int64) * N + rn[None, :]  # as the output's, masked: shared addresses
        last, total = reduce_splits(acc, parts, stride_part, mask_m[:, None] & mask_n[None, :],
                                    count_ptr + pid_m * num_n + pid_n, tl.program_id(1), SPLIT_K)
        if last:
            _epilogue(total, a_scale, w_scale_ptr, w_zero_ptr, bias_ptr, out_ptr, rm, rn, rn_c, mask_m, mask_n,
                      stride_om, A_SCALE, W_SCALE, HAS_BIAS)


@dataclass(frozen=True)
class ScaledConfig:
    """A tile of the scaled GEMM: what autotune_results/ stores per (format, N x K, M bucket)."""

    block_m: int
    block_n: int
    block_k: int  # the scale step when scales change along K (blocks, groups); else any power of two >= 16
    num_warps: int = 4
    num_stages: int = 3
    group_m: int = 8
    split_k: int = 1  # > 1: K split across programs (small M), the partials added by the last (counters)
    late_scale: bool = False  # scales along K applied during the next step's dot (scaled_mm_kernel)
    swap_ab: bool = False  # int4 weights: the tile computed transposed, the decoded weight the MMA's A

    def to_json(self) -> dict:
        return asdict(self)


def scaled_table_key(fmt: ScaledFormat, quantize_a: bool) -> str:
    """The format part of the key in autotune_results/ (the prologue reads and quantizes float tiles:
    tuned apart from the codes path)."""
    return (f"scaled_{fmt.act}_{fmt.a_scale}_{fmt.weight}_{fmt.w_scale}{fmt.group or ''}"
            f"{'_prologue' if quantize_a else ''}")


def scaled_heuristic(fmt: ScaledFormat, m: int, n: int, k: int, interpreted: bool = False) -> ScaledConfig:
    """Tiles for shapes never tuned. Small M: 64-wide tiles, K split until about two programs per SM
    of a 132-SM GPU (N / 64 tiles alone leave most of them idle; smaller tiles would also quantize the
    activation in the prologue again for each of them). BLOCK_K is the scale step when scales change
    along K; the interpreter takes few, large tiles and no split."""
    block_k = fmt.group if fmt.k_steps else (128 if k >= 128 else max(16, triton.next_power_of_2(k)))
    if interpreted:
        return ScaledConfig(block_m=min(64, max(16, triton.next_power_of_2(m))),
                            block_n=min(128, max(16, triton.next_power_of_2(n))), block_k=block_k, num_stages=1)
    if m <= 16:
        tiles, steps = triton.cdiv(n, 64), triton.cdiv(k, block_k)
        split = 1
        while split < 8 and tiles * split * 2 <= 264 and steps >= 4 * split * 2:
            split *= 2
        return ScaledConfig(16, 64, block_k, num_warps=4, num_stages=4, split_k=split)
    if m <= 64:
        return ScaledConfig(64, 64, block_k, num_warps=4, num_stages=4)
    return ScaledConfig(128, 128, block_k, num_warps=8, num_stages=3)


@functools.lru_cache(maxsize=4096)
def _scaled_select(fmt: ScaledFormat, n: int, k: int, bucket: int, quantize_a: bool, gpu) -> ScaledConfig:
    found = tuning.tuned_entry(scaled_table_key(fmt, quantize_a), n, k, bucket, gpu)
    return ScaledConfig(**found) if found is not None else scaled_heuristic(fmt, bucket, n, k)


def scaled_config(fmt: ScaledFormat, m: int, n: int, k: int, quantize_a: bool, device: torch.device) -> ScaledConfig:
    """The tile for this call: autotune_results/ (`python -m tqk.tune --family scaled`), keyed by format,
    path (prologue or codes), N x K and M's bucket; else scaled_heuristic. On the CPU (interpreter)
    the interpreter's heuristic."""
    if device.type != "cuda":
        return scaled_heuristic(fmt, m, n, k, interpreted=True)
    return _scaled_select(fmt, n, k, tuning.m_bucket(m), quantize_a, tuning.gpu_traits(device.index or 0))


def split_counter_slots(fmt: ScaledFormat, n: int, k: int, device: torch.device) -> int:
    """int32 counters a layer's split-K calls need: one per (M tile, N tile) of the largest M whose
    config splits (a config of the small-M buckets serves M up to PROLOGUE_MAX_M under dynamic shapes)."""
    slots = 0
    for bucket in tuning.M_BUCKETS:
        for quantize_a in (False, True):
            config = scaled_config(fmt, bucket, n, k, quantize_a, device)
            if config.split_k > 1:
                rows = max(bucket, PROLOGUE_MAX_M)
                slots = max(slots, triton.cdiv(rows, config.block_m) * triton.cdiv(n, config.block_n))
    return slots


ACT_QUANT = ("auto", "prologue", "codes")
PROLOGUE_MAX_M = 64  # the small-M region of tqk.ops.M_REGIONS: one choice per traced region


def quantize_in_prologue(act_quant: str, a_scale: str, m: int) -> bool:
    """Whether the GEMM quantizes the float activation itself (True) or reads codes that torch ops
    wrote (False): the one place that decides. act_quant "prologue" / "codes" force it (ScaledLayout's
    field, for measuring); "auto": the prologue only per tensor and per 1x128 block at M <=
    PROLOGUE_MAX_M, where the codes path costs kernels of its own (a global amax; a block amax and
    its cast came out as two) and decode runs without CUDA graphs pay ~20 us of host time per launch.
    Everywhere else the codes: on the H200 (docs/bench/h200-2026-12-02-s9, same tiles) the prologue
    was slower at every M it ran, per row int8 o 4096x4096 24.5 against 14.9 us at M = 1, gate_up
    57.3 against 34.4 at M = 16, o 203 against 69 at M = 2048: every N tile quantizes the
    activation again, and the converted tile does not pipeline like a loaded one."""
    if act_quant not in ACT_QUANT:
        raise ValueError(f"act_quant must be one of {ACT_QUANT}, got {act_quant!r}")
    if act_quant != "auto":
        return act_quant == "prologue"
    return a_scale in ("tensor", "block") and m <= PROLOGUE_MAX_M


def launch_scaled_mm(a, a_scales, w_codes, w_scales, w_zeros, bias, fmt: ScaledFormat, n: int, k: int,
                     out_dtype: torch.dtype, config: ScaledConfig, quantize_a: bool, interpreted: bool,
                     counters: torch.Tensor | None = None, wrap=None, warmup: bool = False) -> torch.Tensor:
    """a: activation codes [M, K] (int8, or uint8 e4m3 bits) with a_scales [M] or [M, K // 128]
    (float32: quantize_activation's); or, quantize_a, the float activation [M, K] (unit stride along K)
    with activation_scales' scales, quantized in the GEMM's prologue. The weight's codes, scales and
    zero points as its layout stores them (tqk/layouts/scaled.py). counters: zeroed int32 slots for
    split-K (the layer's, split_counter_slots), left at zero; without them (or too few) a split-K call
    zeroes its own, which costs a memset. warmup: compile the kernel for these arguments, launch nothing
    (tqk.tune compiles its candidates in parallel so)."""
    m = a.shape[0]
    wrap = wrap or (lambda kernel: kernel)
    out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    steps = triton.cdiv(k, config.block_k)
    per_split = triton.cdiv(steps, max(1, config.split_k))
    split_k = triton.cdiv(steps, per_split)  # no empty split
    tiles = triton.cdiv(m, config.block_m) * triton.cdiv(n, config.block_n)
    parts = counts = out  # never read without split-K
    if split_k > 1:
        exact = fmt.act == "int8" and fmt.a_scale != "block" and fmt.w_scale == "row"  # int32 partial sums
        parts = torch.empty((split_k, m, n), dtype=torch.int32 if exact else torch.float32, device=a.device)
        counts = split_counts(counters, tiles, a.device)
    args = (a, a_scales, w_codes, w_scales, w_scales if w_zeros is None else w_zeros,
            w_scales if bias is None else bias, out, parts, counts, m, n, k, a.stride(0), w_codes.stride(0),
            out.stride(0), a_scales.stride(0), per_split, m * n)
    consts = dict(ACT=fmt.act, WEIGHT=fmt.weight, A_SCALE=fmt.a_scale, W_SCALE=fmt.w_scale, HAS_BIAS=bias is not None,
                  QUANTIZE_A=quantize_a, DOT_F32=interpreted, EVEN_K=k % config.block_k == 0,
                  EVEN_N=n % config.block_n == 0,
                  BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, GROUP_M=config.group_m,
                  SPLIT_K=split_k, LATE_SCALE=config.late_scale and fmt.k_steps,
                  SWAP_AB=config.swap_ab and fmt.weight == "int4", num_warps=config.num_warps,
                  num_stages=config.num_stages)
    if warmup:
        scaled_mm_kernel.warmup(*args, grid=(tiles, split_k), **consts)
        return out
    wrap(scaled_mm_kernel)[(tiles, split_k)](*args, **consts)
    return out
