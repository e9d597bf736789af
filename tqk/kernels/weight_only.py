"""Weight-only quantized linear: out = x @ dequantize(W).T + bias, W decoded in registers.

One family, two schedules, both specialized by the same format constexprs:
  gemv: one program column per row of x, CUDA-core FMAs. For decode (M = 1..few), where the
        time is the weight's bytes: each program streams BLOCK_N packed rows once, multiplies
        every plane into a [BLOCK_N, SPAN] accumulator and reduces once at the end. A scale
        shared by a whole K block is applied once per block, using
        sum((q - z) * s * x) = s * (sum(q * x) - z * sum(x)).
  gemm: tensor-core tiles computing out.T = W @ x.T, so the decoded weight is the left operand
        (it can stay in registers) and M is the narrow side of the MMA. Split-K for small M.
        Per-row scales go to the epilogue; a group scale shared by a whole K block goes to the
        block's partial product when the tile is thin, else to each weight element.
Both split K in one launch: a tile's last split adds the others' partials (tqk/kernels/splits.py).

Format constexprs (see WeightFormat): BITS, PER_WORD, SPAN, ELEMENT ("uint", "e4m3", "e5m2", "fpx<e><m>", "lut"),
ZERO_MODE ("none": value = code, "offset": code - ZERO_OFFSET, "tensor": code - zero[group]),
GROUP_SIZE (0: one scale per row). Scales and zeros are stored [n_groups, N].
SCALE_FMT: how a group scale is stored and decoded where it is loaded (_load_scale): "float" (the model
dtype), "e8m0" (OCP MX: a uint8 code, 2**(code - 127), its exponent shifted into place) or "e4m3"
(NVFP4: a uint8 float8_e4m3fn pattern, and `zeros` holds the float32 [1] tensor scale, which
multiplies each output once, in the epilogue).
Codebooks (ELEMENT "lut"): table_ptr, the kernels' last argument, points at the 2**BITS entries that
each program loads once into registers (decode.load_table); the code is an index into them
(decode.lookup). The other formats never read it.
Vector codebooks (VEC > 1, WeightFormat.vector_size): a code stands for VEC consecutive input
features and its entry is VEC floats. The kernels then walk K in codes (K and GROUP_SIZE are divided
by VEC), plane j of a block still being SPAN consecutive codes, so SPAN * VEC consecutive features.
Feature t of a plane's codes (decode.lookup_feature) is a plane of scalar values against
x[code * VEC + t]: the GEMV sums a code's VEC products before the scale (vals is then the code's
products, and the plane's x is 1), the GEMM makes each feature a dot of its own.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..layouts import packing
from .decode import (biased_pos, decode_codes, decode_plane, decode_plane_biased, is_dense, load_slices, load_table,
                     lookup_feature, plane_bias, plane_gain, slice_columns, slices, unpack_plane, unpack_planes,
                     words_per_block)
from .splits import reduce_splits, shared_counters, split_counts


MAX_VECTOR = 8  # the longest codebook vector: features per code


@dataclass(frozen=True)
class WeightFormat:
    """What the kernels must know about a packed weight; a layout produces one."""

    bits: int
    element: str = "uint"  # "uint" | "e4m3" | "e5m2" | "fpx<e><m>" | "lut" (a codebook: the table is a tensor)
    zero_mode: str = "none"  # "none" | "offset" | "tensor"
    zero_offset: int = 0
    group_size: int = 0  # 0: one scale per row
    span: int = 16  # words per packed block
    scale_fmt: str = "float"  # "float" | "e8m0" | "e4m3" (see the module docstring)
    vector_size: int = 1  # input features per code: > 1 for vector codebooks (a table of vector entries)

    def __post_init__(self):
        if self.scale_fmt not in ("float", "e8m0", "e4m3"):
            raise ValueError(f"scale_fmt must be 'float', 'e8m0' or 'e4m3', got {self.scale_fmt!r}")
        if self.scale_fmt != "float" and (self.group_size == 0 or self.zero_mode != "none"):
            raise ValueError(f"{self.scale_fmt} scales are group scales without zero points: got group_size="
                             f"{self.group_size}, zero_mode={self.zero_mode!r}")
        if not 1 <= self.vector_size <= MAX_VECTOR:
            raise ValueError(f"vector_size must be in 1..{MAX_VECTOR}, got {self.vector_size}")
        if self.vector_size > 1:
            if self.element != "lut" or self.zero_mode != "none" or self.scale_fmt != "float":
                raise ValueError(f"vector codes index a codebook (element 'lut', no zero point, float scales): "
                                 f"got element={self.element!r}, zero_mode={self.zero_mode!r}, "
                                 f"scale_fmt={self.scale_fmt!r}")
            if self.group_size % (self.span * self.vector_size):  # a plane of `span` codes never straddles a group
                raise ValueError(f"group_size={self.group_size} of {self.vector_size}-vector codes must be a multiple "
                                 f"of {self.span * self.vector_size} (a plane of {self.span} codes)")

    @property
    def per_word(self) -> int:
        """Planes per packed block (tqk/layouts/packing.py): the codes per int32 word for 1, 2, 4 and 8
        bits, 8 for the dense widths (a lane's 8 codes spread over its slices' words). A power of two,
        so a block is a power-of-two tile."""
        return packing.planes_per_block(self.bits)

    @property
    def block_codes(self) -> int:
        """Codes per packed block."""
        return self.per_word * self.span

    @property
    def block_k(self) -> int:
        """Input features per packed block: its codes times vector_size."""
        return self.block_codes * self.vector_size

    @property
    def words_per_block(self) -> int:
        """int32 words per packed block of block_codes codes: span, or bits * span / 4 if dense."""
        return packing.words_per_block(self.bits, self.span)

    def packed_words(self, k: int) -> int:
        """int32 words of a packed row of k input features (K padded to whole blocks)."""
        return -(-k // self.block_k) * self.words_per_block

    @property
    def gemv_bias(self) -> int:
        """The largest bias, in code units, that the GEMV (KernelConfig.biased) leaves on decoded
        values and takes off a block later with the zero point (decode_plane_biased): 2**11 for
        4-bit codes whose groups hold whole blocks, else 0. A block's float32 sums then round at
        that scale: it is part of the error bound."""
        whole_blocks = self.group_size > 0 and self.group_size % self.block_k == 0
        return 1 << 11 if self.element == "uint" and self.bits == 4 and whole_blocks else 0

    @property
    def key(self) -> str:
        group = f"g{self.group_size}" if self.group_size else "row"
        scale = "" if self.scale_fmt == "float" else f"_{self.scale_fmt}"
        vector = "" if self.vector_size == 1 else f"v{self.vector_size}"
        return f"{self.element}{self.bits}{vector}_{group}_{self.zero_mode}{scale}"

    def constexprs(self) -> dict:
        # The kernels walk K in codes: GROUP_SIZE counts codes (K too, from the kernels' first line on),
        # and each code decodes to VEC consecutive input features.
        return dict(
            BITS=self.bits, PER_WORD=self.per_word, SPAN=self.span, ELEMENT=self.element,
            ZERO_MODE=self.zero_mode, ZERO_OFFSET=self.zero_offset, GROUP_SIZE=self.group_size // self.vector_size,
            SCALE_FMT=self.scale_fmt, VEC=self.vector_size,
        )


@triton.jit
def _load_f32(ptrs, mask, IN_PLACE: tl.constexpr):
    """tl.load(...).to(float32), or with IN_PLACE an inline-PTX load that keeps the pointers'
    register layout. A [BLOCK_N] scale vector sliced from a tile that gives each thread several
    rows is otherwise re-laid out by Triton's coalescing (one element per thread) and brought back
    through shared memory with two barriers, once per block. mask None: every pointer is valid
    (rows clamped, K even), and the load is not predicated."""
    if mask is None:
        if IN_PLACE:
            if ptrs.dtype.element_ty == tl.float32:
                return tl.inline_asm_elementwise("ld.global.nc.b32 $0, [$1];", "=r,l", [ptrs], dtype=tl.float32,
                                                 is_pure=True, pack=1)
            else:
                CVT0: tl.constexpr = "cvt.f32.bf16" if ptrs.dtype.element_ty == tl.bfloat16 else "cvt.f32.f16"
                return tl.inline_asm_elementwise("{ .reg .b16 h; ld.global.nc.b16 h, [$1]; " + CVT0 + " $0, h; }",
                                                 "=r,l", [ptrs], dtype=tl.float32, is_pure=True, pack=1)
        else:
            return tl.load(ptrs).to(tl.float32)
    elif IN_PLACE:
        if ptrs.dtype.element_ty == tl.float32:
            asm: tl.constexpr = "{ .reg .pred p; setp.ne.b32 p, $2, 0; mov.b32 $0, 0; @p ld.global.nc.b32 $0, [$1]; }"
        else:
            CVT: tl.constexpr = "cvt.f32.bf16" if ptrs.dtype.element_ty == tl.bfloat16 else "cvt.f32.f16"
            asm: tl.constexpr = ("{ .reg .pred p; .reg .b16 h; setp.ne.b32 p, $2, 0; mov.b16 h, 0; "
                                 "@p ld.global.nc.b16 h, [$1]; " + CVT + " $0, h; }")
        return tl.inline_asm_elementwise(asm, "=r,l,r", [ptrs, mask.to(tl.int32)], dtype=tl.float32,
                                         is_pure=True, pack=1)
    else:
        return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _load_scale(ptrs, mask, SCALE_FMT: tl.constexpr, IN_PLACE: tl.constexpr):
    """A group scale as float32: a float as stored ("float"), or a byte decoded by decode_codes
    ("e8m0": one shift into the exponent field; "e4m3"). IN_PLACE: the byte by an inline-PTX load
    that keeps the pointers' register layout, as _load_f32 does for floats."""
    # (if / else all the way down: compiled Triton also traces code after a static branch's return)
    if SCALE_FMT == "float":
        return _load_f32(ptrs, mask, IN_PLACE)
    else:
        if mask is None:
            if IN_PLACE:
                code = tl.inline_asm_elementwise("ld.global.nc.u8 $0, [$1];", "=r,l", [ptrs], dtype=tl.int32,
                                                 is_pure=True, pack=1)
            else:
                code = tl.load(ptrs).to(tl.int32)
        elif IN_PLACE:
            asm: tl.constexpr = "{ .reg .pred p; setp.ne.b32 p, $2, 0; mov.b32 $0, 0; @p ld.global.nc.u8 $0, [$1]; }"
            code = tl.inline_asm_elementwise(asm, "=r,l,r", [ptrs, mask.to(tl.int32)], dtype=tl.int32,
                                             is_pure=True, pack=1)
        else:
            code = tl.load(ptrs, mask=mask, other=0).to(tl.int32)
        return decode_codes(code, SCALE_FMT)


@triton.jit
def _zero_of(zero_ptr, offs, mask, ZERO_MODE: tl.constexpr, ZERO_OFFSET: tl.constexpr, IN_PLACE: tl.constexpr = False):
    """The zero point to subtract from codes at `offs` (a [n_groups, N] index), as float32."""
    if ZERO_MODE == "tensor":
        return _load_f32(zero_ptr + offs, mask, IN_PLACE)
    elif ZERO_MODE == "offset":
        return tl.zeros(offs.shape, tl.float32) + ZERO_OFFSET
    else:
        return tl.zeros(offs.shape, tl.float32)


@triton.jit
def _scale_and_zs(scale_ptr, zero_ptr, offs, mask, ZERO_MODE: tl.constexpr, ZERO_OFFSET: tl.constexpr,
                  IN_PLACE: tl.constexpr = False, SCALE_FMT: tl.constexpr = "float"):
    """Scale s and zero-point-times-scale z * s at `offs`, so that (q - z) * s = q * s - z * s."""
    scale = _load_scale(scale_ptr + offs, mask, SCALE_FMT, IN_PLACE)
    return scale, _zero_of(zero_ptr, offs, mask, ZERO_MODE, ZERO_OFFSET, IN_PLACE) * scale


@triton.jit
def _rows_and(mask, in_k):
    """mask & in_k for a tensor mask and a scalar condition, as a bool tensor. Triton's interpreter
    types a scalar comparison as its int32 operands, so `mask & in_k` alone is an int32 mask, which
    3.9's interpreter tl.load rejects (tests/kernels/test_triton_interpreter.py); `!= 0` makes it
    bool again there, and compiled it folds away (SASS unchanged, scripts/offline_sass.py)."""
    return (mask & in_k) != 0


@triton.jit
def _vector_products(words, words1, words2, j: tl.constexpr, codes_at, x_row, K, table, BITS: tl.constexpr,
                     SPAN: tl.constexpr, VEC: tl.constexpr, EVEN_K: tl.constexpr, PTX: tl.constexpr):
    """sum over t of table[c, t] * x[c * VEC + t] for the codes c of plane j of a word tile ([R, C];
    codes_at [C]: each column's code index, K in codes): a vector plane's products, feature by feature,
    each feature a lookup of its own (decode.lookup_feature) against a strided load of x."""
    codes = unpack_plane(words, j, BITS, SPAN, words1, words2, PTX)
    for t in tl.static_range(VEC):
        if EVEN_K:
            x_t = tl.load(x_row + codes_at * VEC + t, eviction_policy="evict_last").to(tl.float32)
        else:
            x_t = tl.load(x_row + codes_at * VEC + t, mask=codes_at < K, other=0.0,
                          eviction_policy="evict_last").to(tl.float32)
        if t == 0:
            vals = lookup_feature(table, codes, t, VEC) * x_t[None, :]
        else:
            vals += lookup_feature(table, codes, t, VEC) * x_t[None, :]
    return vals


@triton.jit
def _gemv_block(acc, x_sum, words, words1, words2, k0, x_cols, x_row, scale_ptr, zero_ptr, rn, mask_n, N, K,
                BITS: tl.constexpr, PER_WORD: tl.constexpr, SPAN: tl.constexpr, ELEMENT: tl.constexpr,
                ZERO_MODE: tl.constexpr, ZERO_OFFSET: tl.constexpr, GROUP_SIZE: tl.constexpr,
                EVEN_K: tl.constexpr, PTX: tl.constexpr, WIDE: tl.constexpr, BIASED: tl.constexpr,
                SCALE_FMT: tl.constexpr = "float", table=0, VEC: tl.constexpr = 1):
    """Add a tile of packed words starting at code k0 to acc (dense widths: a tile per slice,
    words, words1, words2, from load_slices): one block (PER_WORD planes of SPAN
    codes per row), or with WIDE several blocks side by side. x_cols: the offset from k0 of
    each word column's plane-0 code (plane j adds j * SPAN). x_sum: the running sum of x by
    column, kept only for a per-row zero-point tensor."""
    BLOCK_K: tl.constexpr = PER_WORD * SPAN
    PER_BLOCK: tl.constexpr = (GROUP_SIZE > 0) and (GROUP_SIZE % BLOCK_K == 0)
    PER_PLANE: tl.constexpr = (GROUP_SIZE > 0) and (GROUP_SIZE % BLOCK_K != 0)
    # Groups of a few planes that tile the block (MX: 32 codes, NVFP4: 16, g64 with 8 planes of 16):
    # each group's planes are summed first and its scale applied once, 1 FMA per code instead of 2.
    PER_GROUP: tl.constexpr = PER_PLANE and not WIDE and (BLOCK_K % GROUP_SIZE == 0)
    PLANES: tl.constexpr = GROUP_SIZE // SPAN if PER_GROUP else 1  # planes per group
    # A constant zero point goes into the decode's FADD (exact: the values are integers < 2**24);
    # only a zero-point tensor needs sums of x, for the z * s * sum(x) term.
    MINUS: tl.constexpr = ZERO_OFFSET if (ZERO_MODE == "offset" and (PER_GROUP or not PER_PLANE)) else 0
    SUM_X: tl.constexpr = (ZERO_MODE == "tensor") and not PER_PLANE
    # BIASED (WeightFormat.gemv_bias, 4-bit, a group per block): planes decode to code + bias with
    # no FADD (decode_plane_biased) and the bias goes with the zero point: (z + b) times the sums
    # of x of the planes at bit 16 and at bit 12 (b = 128, 2048). The int4 loop is bound by
    # instruction issue: 627 -> ~570 instructions per 128 codes; but with one block per trip the
    # shorter loop hides less load latency (perf notes 19), so it is a tuned choice.
    tl.static_assert(not BIASED or (BITS == 4 and PER_BLOCK and not WIDE), "biased: 4-bit, narrow, group per block")
    if WIDE:  # blocks side by side: each column's own block start, for its group's scale
        k_col = k0 + x_cols - x_cols % SPAN
    for j in tl.static_range(PER_WORD):
        kk = k0 + j * SPAN + x_cols
        if VEC > 1:  # vector codes: each code's entry meets its VEC activations here, so vals is already
            #          sum_t table[code, t] * x[code * VEC + t] (a code's products), and the plane's x is 1
            vals = _vector_products(words, words1, words2, j, kk, x_row, K, table, BITS, SPAN, VEC, EVEN_K, PTX)
            xj = tl.full(x_cols.shape, 1.0, tl.float32)
        elif EVEN_K:  # K is a multiple of a split's step: no mask, so the x loads vectorize
            xj = tl.load(x_row + kk, eviction_policy="evict_last").to(tl.float32)
        else:
            xj = tl.load(x_row + kk, mask=kk < K, other=0.0, eviction_policy="evict_last").to(tl.float32)
        if BIASED:
            vals = decode_plane_biased(words, j, BITS, PTX)
        elif VEC == 1:
            vals = decode_plane(words, j, BITS, ELEMENT, PTX, MINUS, SPAN, words1, words2, table, UNSCALED=True)
        if PER_GROUP:  # the group's sums of q * x (and of x for a zero-point tensor), then s and z * s
            if j % PLANES == 0:
                grp = vals * xj[None, :]
                if ZERO_MODE == "tensor":
                    x_grp = xj
            else:
                grp += vals * xj[None, :]
                if ZERO_MODE == "tensor":
                    x_grp += xj
            if j % PLANES == PLANES - 1:
                offs = (k0 // GROUP_SIZE + j // PLANES) * N + rn  # k0: a multiple of BLOCK_K, so of the group
                ok = None if EVEN_K else _rows_and(mask_n, k0 + j * SPAN < K)  # rows are clamped
                scale = _load_scale(scale_ptr + offs, ok, SCALE_FMT, PTX)
                acc += grp * scale[:, None]
                if ZERO_MODE == "tensor":
                    zs = _zero_of(zero_ptr, offs, ok, ZERO_MODE, ZERO_OFFSET, PTX) * scale
                    acc -= zs[:, None] * x_grp[None, :]
        elif PER_PLANE and WIDE:  # [BLOCK_N, COLS] scales: a column's group depends on its block
            offs = ((k_col + j * SPAN) // GROUP_SIZE)[None, :] * N + rn[:, None]
            ok = mask_n[:, None] & (k_col + j * SPAN < K)[None, :]
            scale, zs = _scale_and_zs(scale_ptr, zero_ptr, offs, ok, ZERO_MODE, ZERO_OFFSET, False, SCALE_FMT)
            acc += (vals * scale - zs) * xj[None, :]
        elif PER_PLANE:  # this plane's own group: w = vals * s - z * s, one FMA
            offs = ((k0 + j * SPAN) // GROUP_SIZE) * N + rn
            ok = _rows_and(mask_n, k0 + j * SPAN < K)
            scale, zs = _scale_and_zs(scale_ptr, zero_ptr, offs, ok, ZERO_MODE, ZERO_OFFSET, PTX, SCALE_FMT)
            acc += (vals * scale[:, None] - zs[:, None]) * xj[None, :]
        elif PER_BLOCK and BIASED:  # x sums by bias: planes at bit 16 (even j) and at bit 12 (odd j)
            if j == 0:
                blk = vals * xj[None, :]
                x_16 = xj
            elif j == 1:
                blk += vals * xj[None, :]
                x_12 = xj
            else:
                blk += vals * xj[None, :]
                if biased_pos(j, BITS) == 16:
                    x_16 += xj
                else:
                    x_12 += xj
        elif PER_BLOCK:
            if j == 0:  # start the block's sums from its first plane: no zero-fill
                blk = vals * xj[None, :]
                if SUM_X:
                    x_blk = xj
            else:
                blk += vals * xj[None, :]
                if SUM_X:
                    x_blk += xj
        else:
            acc += vals * xj[None, :]
            if SUM_X:
                x_sum += xj
    if PER_BLOCK and WIDE:
        offs = (k_col // GROUP_SIZE)[None, :] * N + rn[:, None]
        ok = mask_n[:, None] & (k_col < K)[None, :]
        scale = _load_scale(scale_ptr + offs, ok, SCALE_FMT, False)
        acc += blk * scale
        if SUM_X:
            zs = _zero_of(zero_ptr, offs, ok, ZERO_MODE, ZERO_OFFSET) * scale
            acc -= zs * x_blk[None, :]
    elif PER_BLOCK:
        offs = (k0 // GROUP_SIZE) * N + rn
        ok = None if EVEN_K else _rows_and(mask_n, k0 < K)  # rows are clamped
        if BIASED:  # s * (sum((q + b) * x) - (z + b) * sum(x)) by bias b. The bias comes off before
            #         the scale: scaled biased sums overflowed float32 for weights near 1e37
            zero = _zero_of(zero_ptr, offs, ok, ZERO_MODE, ZERO_OFFSET, PTX)
            blk -= (zero + plane_bias(0, BITS))[:, None] * x_16[None, :]
            blk -= (zero + plane_bias(1, BITS))[:, None] * x_12[None, :]
            acc += blk * _load_f32(scale_ptr + offs, ok, PTX)[:, None]
        else:  # sum((q - z) * s * x) = s * sum(q * x) - (z * s) * sum(x) over the block
            scale = _load_scale(scale_ptr + offs, ok, SCALE_FMT, PTX)
            acc += blk * scale[:, None]  # two separate updates: each is one FFMA
            if SUM_X:
                zs = _zero_of(zero_ptr, offs, ok, ZERO_MODE, ZERO_OFFSET, PTX) * scale
                acc -= zs[:, None] * x_blk[None, :]
    return acc, x_sum


@triton.jit
def stored_pointers(data_ptr, x_ptr, scale_off, zero_off, table_off, SCALE_FMT: tl.constexpr,
                    ZERO_MODE: tl.constexpr, ELEMENT: tl.constexpr):
    """The scale, zero-point and table pointers of a layer stored in one int32 buffer (tqk/layouts/storage.py:
    data_ptr, its codes at offset 0, the rest at byte offsets). Float scales, zero points and tables are
    in the model's dtype, which is x's; byte scales are uint8; NVFP4's tensor scale (the zeros slot with
    e4m3 scales) is float32. A pointer the format does not read is the buffer's start. (Constexpr switches
    only: a None passed to a compiled helper is not None there.)"""
    base = data_ptr.to(tl.pointer_type(tl.uint8), bitcast=True)
    if SCALE_FMT == "float":
        scale_ptr = (base + scale_off).to(x_ptr.dtype, bitcast=True)
    else:
        scale_ptr = base + scale_off
    if SCALE_FMT == "e4m3":
        zero_ptr = (base + zero_off).to(tl.pointer_type(tl.float32), bitcast=True)
    elif ZERO_MODE == "tensor":
        zero_ptr = (base + zero_off).to(x_ptr.dtype, bitcast=True)
    else:
        zero_ptr = base
    if ELEMENT == "lut":
        table_ptr = (base + table_off).to(x_ptr.dtype, bitcast=True)
    else:
        table_ptr = base
    return scale_ptr, zero_ptr, table_ptr


@triton.jit
def weight_only_gemv_kernel(
    x_ptr, w_ptr, scale_ptr, zero_ptr, bias_ptr, out_ptr, part_ptr, count_ptr,
    M, N, K, words_per_row, n_groups, stride_xm, stride_om, trips_per_split, num_tiles,
    BITS: tl.constexpr, PER_WORD: tl.constexpr, SPAN: tl.constexpr, ELEMENT: tl.constexpr,
    ZERO_MODE: tl.constexpr, ZERO_OFFSET: tl.constexpr, GROUP_SIZE: tl.constexpr,
    HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT_K: tl.constexpr, EVEN_K: tl.constexpr,
    TRIP_BLOCKS: tl.constexpr, ADJACENT_SPLITS: tl.constexpr, PTX: tl.constexpr,
    WIDE: tl.constexpr = False, BIASED: tl.constexpr = False, SCALE_FMT: tl.constexpr = "float",
    VEC: tl.constexpr = 1, table_ptr=None,  # a codebook's entries (ELEMENT "lut"), of VEC features each
    scale_off=0, zero_off=0, table_off=0, STORED: tl.constexpr = False,  # one buffer (stored_pointers)
):
    # Everything stays in the [BLOCK_N, SPAN] layout of the packed-word tile: each plane is
    # multiplied into a 2-D accumulator, and the only cross-thread reduction is the last one.
    # TRIP_BLOCKS (1 or 2) blocks are decoded per trip while the next trip's are already loading
    # (registers as a double buffer: Triton's pipeliner does not stage loads that feed no tl.dot,
    # and staging them through shared memory measured slower). One block per trip holds fewer
    # registers (more warps per SM); two amortize the loop.
    # WIDE: the trip's TRIP_BLOCKS (2 to 16) blocks are one [BLOCK_N, TRIP_BLOCKS * SPAN] tile,
    # so a program of a few rows reads 0.5-1 KB of each row per load: long stretches of DRAM,
    # which is what a byte-bound format (int8, fp8) needs (perf notes 17).
    # SPLIT_K > 1: program (n, s) takes trips_per_split steps of max(2, TRIP_BLOCKS) blocks from step
    # s * trips_per_split, so narrow N still fills the GPU. With ADJACENT_SPLITS the splits of one
    # row tile are neighbours in launch order, so the rows are read as one contiguous stretch.
    # Each program stores its partial sums in part[s, m, :] and counts itself in count[m, n]; the
    # tile's last program to arrive adds them and writes out (reduce_splits).
    BLOCK_K: tl.constexpr = PER_WORD * SPAN
    if VEC > 1:  # K in codes from here on, as GROUP_SIZE is (WeightFormat.constexprs)
        K = K // VEC
    if STORED:
        scale_ptr, zero_ptr, table_ptr = stored_pointers(w_ptr, x_ptr, scale_off, zero_off, table_off, SCALE_FMT,
                                                         ZERO_MODE, ELEMENT)
    pid = tl.program_id(0)
    if ADJACENT_SPLITS:
        pid_n = pid // SPLIT_K
        pid_s = pid % SPLIT_K
    else:
        pid_n = pid % num_tiles
        pid_s = pid // num_tiles
    m = tl.program_id(1).to(tl.int64)
    UNIT: tl.constexpr = TRIP_BLOCKS if TRIP_BLOCKS > 2 else 2  # blocks per step of a split
    k_chunk = trips_per_split * (UNIT * BLOCK_K)  # written as a product so the compiler sees the
    k_start = pid_s * k_chunk                   # alignment, and word and x loads stay vectorized
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = rn < N
    rn = tl.where(mask_n, rn, 0)  # clamp instead of masking: unmasked loads vectorize
    # WIDE: word column c is word c % SPAN of the trip's block c // SPAN; a group scale is then
    # loaded per element (a column's block decides its group).
    COLS: tl.constexpr = TRIP_BLOCKS * SPAN if WIDE else SPAN
    col = tl.arange(0, COLS)
    x_cols = (col // SPAN) * BLOCK_K + col % SPAN if WIDE else col
    WPB: tl.constexpr = words_per_block(BITS, SPAN)  # SPAN, or BITS * SPAN / 4 when dense
    if is_dense(BITS):  # blocks of WPB words, a tile per slice: w_ptrs at each row's first word (load_slices)
        words_per_row = words_per_row // 4 * 4  # as it is: a block is 4 * BITS words, so loads stay 16-byte
        w_ptrs = w_ptr + rn[:, None].to(tl.int64) * words_per_row + (k_start // BLOCK_K) * WPB
        k_end = tl.minimum((words_per_row // WPB) * BLOCK_K, k_start + k_chunk)
    else:  # the block's words
        w_ptrs = w_ptr + rn[:, None].to(tl.int64) * words_per_row + (k_start // PER_WORD + col)[None, :]
        k_end = tl.minimum(words_per_row * PER_WORD, k_start + k_chunk)
    x_row = x_ptr + m * stride_xm
    table = load_table(table_ptr, ELEMENT, BITS, VEC)  # once per program; 0 without a codebook

    acc = tl.zeros([BLOCK_N, COLS], dtype=tl.float32)
    x_sum = tl.zeros([COLS], dtype=tl.float32)  # sum of x, for a per-row zero point
    STEP: tl.constexpr = TRIP_BLOCKS * BLOCK_K
    col_k = ((col // SPAN) * BLOCK_K)[None, :]  # each column's block, from the trip's start (0 unless WIDE)
    # words_a: the trip's (first) block, one tile per slice (a, a1, a2); words_b: the second block
    words_a, words_a1, words_a2 = load_slices(w_ptrs, col, BITS, SPAN, k_start + col_k < k_end, 0, "evict_first")
    if TRIP_BLOCKS == 2 and not WIDE:
        # + col_k (0 when not WIDE) makes each mask a tensor, as 3.9's interpreter needs (same SASS)
        words_b, words_b1, words_b2 = load_slices(w_ptrs + WPB, col, BITS, SPAN, k_start + BLOCK_K + col_k < k_end,
                                                  0, "evict_first")
    for k0 in range(k_start, k_end, STEP):
        w_ptrs += TRIP_BLOCKS * WPB
        next_a, next_a1, next_a2 = load_slices(w_ptrs, col, BITS, SPAN, k0 + STEP + col_k < k_end, 0, "evict_first")
        if TRIP_BLOCKS == 2 and not WIDE:
            next_b, next_b1, next_b2 = load_slices(w_ptrs + WPB, col, BITS, SPAN, k0 + STEP + BLOCK_K + col_k < k_end,
                                                   0, "evict_first")
        acc, x_sum = _gemv_block(acc, x_sum, words_a, words_a1, words_a2, k0, x_cols, x_row, scale_ptr, zero_ptr, rn,
                                 mask_n, N, K, BITS, PER_WORD, SPAN, ELEMENT, ZERO_MODE, ZERO_OFFSET, GROUP_SIZE,
                                 EVEN_K, PTX, WIDE, BIASED, SCALE_FMT, table, VEC)
        words_a = next_a
        if slices(BITS) > 1:  # (a slice the format lacks is not carried through the loop)
            words_a1 = next_a1
        if slices(BITS) > 2:
            words_a2 = next_a2
        if TRIP_BLOCKS == 2 and not WIDE:
            acc, x_sum = _gemv_block(acc, x_sum, words_b, words_b1, words_b2, k0 + BLOCK_K, x_cols, x_row, scale_ptr,
                                     zero_ptr, rn, mask_n, N, K, BITS, PER_WORD, SPAN, ELEMENT, ZERO_MODE, ZERO_OFFSET,
                                     GROUP_SIZE, EVEN_K, PTX, WIDE, BIASED, SCALE_FMT, table, VEC)
            words_b = next_b
            if slices(BITS) > 1:
                words_b1 = next_b1
            if slices(BITS) > 2:
                words_b2 = next_b2

    out = tl.sum(acc, axis=1)
    if plane_gain(ELEMENT, BITS) != 1.0:  # small floats decoded through float16 (decode_plane, UNSCALED)
        out *= plane_gain(ELEMENT, BITS)
    if SCALE_FMT == "e4m3":  # NVFP4's float32 tensor scale (in the zeros slot), once per output
        out *= tl.load(zero_ptr)
    if GROUP_SIZE == 0:
        if ZERO_MODE == "tensor":
            out -= _zero_of(zero_ptr, rn, mask_n, ZERO_MODE, ZERO_OFFSET) * tl.sum(x_sum, axis=0)
        out *= tl.load(scale_ptr + rn).to(tl.float32)
    if HAS_BIAS:
        out += tl.load(bias_ptr + rn).to(tl.float32) * (k_start == 0)
    if SPLIT_K == 1:
        tl.store(out_ptr + m * stride_om + rn, out.to(out_ptr.dtype.element_ty), mask=mask_n)
    else:
        last, total = reduce_splits(out, part_ptr + m * N + rn, M * N, mask_n, count_ptr + m * num_tiles + pid_n,
                                    pid_s, SPLIT_K)
        if last:
            tl.store(out_ptr + m * stride_om + rn, total.to(out_ptr.dtype.element_ty), mask=mask_n)


@triton.jit
def _dot(w, xt, acc, DOT_F32: tl.constexpr):
    """acc + w @ xt with w rounded to the activation dtype, as the tensor cores take it."""
    w = w.to(xt.dtype)
    if DOT_F32:  # Triton's interpreter multiplies bf16 dot operands as raw integers
        return tl.dot(w.to(tl.float32), xt.to(tl.float32), acc)
    return tl.dot(w, xt, acc)


@triton.jit
def _tile_ids(pid, num_n, num_m, GROUP_N: tl.constexpr):
    """Swizzled order: GROUP_N weight tiles sweep all M tiles together, so each x tile is
    reused from L2 across GROUP_N weight tiles."""
    per_group = GROUP_N * num_m
    first_n = (pid // per_group) * GROUP_N
    size = tl.minimum(num_n - first_n, GROUP_N)
    pid_n = first_n + (pid % per_group) % size
    pid_m = (pid % per_group) // size
    return pid_n, pid_m


@triton.jit
def weight_only_gemm_kernel(
    x_ptr, w_ptr, scale_ptr, zero_ptr, bias_ptr, out_ptr, part_ptr, count_ptr,
    M, N, K, words_per_row, n_groups, stride_xm, stride_om,
    BITS: tl.constexpr, PER_WORD: tl.constexpr, SPAN: tl.constexpr, ELEMENT: tl.constexpr,
    ZERO_MODE: tl.constexpr, ZERO_OFFSET: tl.constexpr, GROUP_SIZE: tl.constexpr,
    HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_M: tl.constexpr,
    SPLIT_K: tl.constexpr, GROUP_N: tl.constexpr, ONE_DOT: tl.constexpr, BLOCK_SCALE: tl.constexpr,
    DOT_F32: tl.constexpr, EVEN_K: tl.constexpr, PTX: tl.constexpr, SCALE_FMT: tl.constexpr = "float",
    VEC: tl.constexpr = 1, table_ptr=None,  # a codebook's entries (ELEMENT "lut"), of VEC features each
    scale_off=0, zero_off=0, table_off=0, STORED: tl.constexpr = False,  # one buffer (stored_pointers)
):
    BLOCK_K: tl.constexpr = PER_WORD * SPAN
    if VEC > 1:  # K in codes from here on, as GROUP_SIZE is (WeightFormat.constexprs)
        K = K // VEC
    if STORED:
        scale_ptr, zero_ptr, table_ptr = stored_pointers(w_ptr, x_ptr, scale_off, zero_off, table_off, SCALE_FMT,
                                                         ZERO_MODE, ELEMENT)
    # Where the group scale is applied: per row (GROUP_SIZE == 0) in the epilogue; when a whole
    # K block shares one group and the tile is thin (or BLOCK_SCALE asks), to the block's partial
    # product (a second accumulator, cheap when BLOCK_M is small); otherwise to each element.
    PER_BLOCK: tl.constexpr = (GROUP_SIZE > 0) and (GROUP_SIZE % BLOCK_K == 0) and (BLOCK_M <= 32 or BLOCK_SCALE)
    PER_ELEMENT: tl.constexpr = (GROUP_SIZE > 0) and not PER_BLOCK
    MINUS: tl.constexpr = ZERO_OFFSET if (ZERO_MODE == "offset" and not PER_ELEMENT) else 0  # in the decode's FADD
    num_n = tl.cdiv(N, BLOCK_N)
    pid_n, pid_m = _tile_ids(tl.program_id(0), num_n, tl.cdiv(M, BLOCK_M), GROUP_N)
    pid_k = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    mask_n = rn < N
    mask_m = rm < M
    rn_c = tl.where(mask_n, rn, 0)
    rm_c = tl.where(mask_m, rm, 0)
    span = tl.arange(0, SPAN)
    WPB: tl.constexpr = words_per_block(BITS, SPAN)  # SPAN, or BITS * SPAN / 4 when dense
    if is_dense(BITS):  # w_ptrs at each row's first word (load_slices)
        words_per_row = words_per_row // 4 * 4  # as it is: a block is 4 * BITS words, so loads stay 16-byte
        w_ptrs = w_ptr + rn_c[:, None].to(tl.int64) * words_per_row
    else:
        w_ptrs = w_ptr + rn_c[:, None].to(tl.int64) * words_per_row + span[None, :]
    x_ptrs = x_ptr + rm_c[None, :].to(tl.int64) * stride_xm + span[:, None]  # x.T tile [SPAN, BLOCK_M]

    x_rows = x_ptr + rm_c[None, :].to(tl.int64) * stride_xm  # [1, BLOCK_M]: x's rows, for vector codes' x.T
    table = load_table(table_ptr, ELEMENT, BITS, VEC)  # once per program; 0 without a codebook
    acc = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32)
    for blk in range(pid_k, words_per_row // WPB, SPLIT_K):
        words, words1, words2 = load_slices(w_ptrs + blk * WPB, span, BITS, SPAN, EVICT="evict_first")
        k0 = blk * BLOCK_K
        if not PER_ELEMENT:
            offs = (k0 // GROUP_SIZE) * N + rn_c if PER_BLOCK else rn_c
            zero = _zero_of(zero_ptr, offs, _rows_and(mask_n, k0 < K), ZERO_MODE, ZERO_OFFSET)
        if PER_BLOCK:
            part = tl.zeros([BLOCK_N, BLOCK_M], dtype=tl.float32)
        # Vector codes (VEC > 1): feature t of every code is a block (or plane) of its own, against
        # x[code * VEC + t]; the VEC of them share the codes, the scales and the accumulator.
        if ONE_DOT:  # all planes as one [BLOCK_N, BLOCK_K] operand: plane-major is K order
            plane = tl.arange(0, PER_WORD)
            codes = unpack_planes(words, BITS, PER_WORD, SPAN, words1, words2)
            kk = k0 + tl.arange(0, BLOCK_K)
            for t in tl.static_range(VEC):
                if VEC > 1:
                    vals = lookup_feature(table, codes, t, VEC)
                else:
                    vals = decode_codes(codes, ELEMENT, table)
                if PER_ELEMENT:
                    if t == 0:
                        k_plane = k0 + plane * SPAN
                        offs_p = (k_plane // GROUP_SIZE)[None, :] * N + rn_c[:, None]
                        ok = mask_n[:, None] & (k_plane < K)[None, :]
                        scale, zs = _scale_and_zs(scale_ptr, zero_ptr, offs_p, ok, ZERO_MODE, ZERO_OFFSET, False,
                                                  SCALE_FMT)
                    w3 = vals * scale[:, :, None] - zs[:, :, None]
                else:
                    w3 = vals - zero[:, None, None]
                xt = tl.load(x_rows + (kk * VEC + t)[:, None],
                             mask=None if EVEN_K else (kk < K)[:, None], other=None if EVEN_K else 0.0)
                w = tl.reshape(w3, [BLOCK_N, BLOCK_K])
                if PER_BLOCK:
                    part = _dot(w, xt, part, DOT_F32)
                else:
                    acc = _dot(w, xt, acc, DOT_F32)
        else:
            if PER_ELEMENT and GROUP_SIZE % BLOCK_K == 0:  # one group for the whole block: load once
                offs = (k0 // GROUP_SIZE) * N + rn_c
                scale, zs = _scale_and_zs(scale_ptr, zero_ptr, offs, _rows_and(mask_n, k0 < K), ZERO_MODE,
                                          ZERO_OFFSET, False, SCALE_FMT)
            for j in tl.static_range(PER_WORD):
                kk = k0 + j * SPAN
                if VEC > 1:
                    codes = unpack_plane(words, j, BITS, SPAN, words1, words2, PTX)
                for t in tl.static_range(VEC):
                    if VEC > 1:
                        vals = lookup_feature(table, codes, t, VEC)
                        xt = tl.load(x_rows + ((kk + span) * VEC + t)[:, None],
                                     mask=None if EVEN_K else (kk + span < K)[:, None], other=None if EVEN_K else 0.0)
                    elif EVEN_K:  # no K padding: every block is whole, no mask to compute
                        xt = tl.load(x_ptrs + kk)
                    else:
                        xt = tl.load(x_ptrs + kk, mask=(kk + span < K)[:, None], other=0.0)
                    if VEC == 1:  # (not UNSCALED: its gain folded into the scale overflows float32 near its top)
                        vals = decode_plane(words, j, BITS, ELEMENT, PTX, MINUS, SPAN, words1, words2, table)
                    if PER_ELEMENT:
                        if GROUP_SIZE % BLOCK_K != 0 and t == 0:  # this plane's own group
                            offs_j = (kk // GROUP_SIZE) * N + rn_c
                            scale, zs = _scale_and_zs(scale_ptr, zero_ptr, offs_j, _rows_and(mask_n, kk < K),
                                                      ZERO_MODE, ZERO_OFFSET, False, SCALE_FMT)
                        w = vals * scale[:, None] - zs[:, None]  # (q - z) * s as one FMA
                    elif ZERO_MODE == "offset":
                        w = vals
                    else:
                        w = vals - zero[:, None]
                    if PER_BLOCK:
                        part = _dot(w, xt, part, DOT_F32)
                    else:
                        acc = _dot(w, xt, acc, DOT_F32)
        if PER_BLOCK:
            scale = _load_scale(scale_ptr + offs, _rows_and(mask_n, k0 < K), SCALE_FMT, False)
            acc += part * scale[:, None]

    if SCALE_FMT == "e4m3":  # NVFP4's float32 tensor scale (in the zeros slot)
        acc *= tl.load(zero_ptr)
    if GROUP_SIZE == 0:
        acc *= tl.load(scale_ptr + rn_c).to(tl.float32)[:, None]
    if HAS_BIAS:
        acc += tl.load(bias_ptr + rn_c).to(tl.float32)[:, None] * (pid_k == 0)
    out_ptrs = out_ptr + rm[None, :].to(tl.int64) * stride_om + rn[:, None]
    mask = mask_n[:, None] & mask_m[None, :]
    if SPLIT_K == 1:
        tl.store(out_ptrs, acc.to(out_ptr.dtype.element_ty), mask=mask)
    else:  # the tile's last split adds the partials and writes out
        parts = part_ptr + rm[None, :].to(tl.int64) * N + rn[:, None]  # as out_ptrs, masked: shared addresses
        last, total = reduce_splits(acc, parts, M * N, mask, count_ptr + pid_m * num_n + pid_n, pid_k, SPLIT_K)
        if last:
            tl.store(out_ptrs, total.to(out_ptr.dtype.element_ty), mask=mask)


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def ptx_ok(device: torch.device) -> bool:
    """Inline PTX is for compiled kernels on NVIDIA GPUs (not the interpreter, not ROCm)."""
    return device.type == "cuda" and torch.version.cuda is not None and not interpreting()


def split_counter_slots(fmt: WeightFormat, n: int, k: int, device: torch.device) -> int:
    """How many int32 counters this weight's split-K calls need on `device`, for the largest M each
    bucket's tuned config serves (tuning.largest_m): the GEMV's one per (row of x, N tile), the GEMM's
    one per (M tile, N tile)."""
    from .tuning import M_BUCKETS, largest_m, select_config

    slots = 0
    for bucket in M_BUCKETS:
        config = select_config(fmt.key, n, k, bucket, device)
        if config.split_k > 1:
            m = largest_m(bucket)
            per_n_tile = m if config.kernel == "gemv" else triton.cdiv(m, config.block_m)  # rows of x, or M tiles
            slots = max(slots, per_n_tile * triton.cdiv(n, config.block_n))
    return slots


def split_counters(fmt: WeightFormat, n: int, k: int, device: torch.device) -> torch.Tensor | None:
    """Zeroed counters for this weight's split-K calls (the device's shared buffer), or None if it never
    splits: made when a layer is quantized or moved, never in a call (tqk/kernels/splits.py)."""
    return shared_counters(split_counter_slots(fmt, n, k, device), device)


def launch_weight_only(x2d, packed, scales, zeros, bias, fmt: WeightFormat, n: int, k: int, config,
                       counters: torch.Tensor | None = None, wrap=None,
                       table: torch.Tensor | None = None, stored: list[int] | None = None) -> torch.Tensor:
    """Launch the kernel that `config` names. Inputs are checked by the caller (tqk.ops).

    counters: zeroed int32 slots for split-K (split_counter_slots), which it leaves at zero; without
    them (or too few) a zeroed buffer is made for this call, which costs a memset.
    wrap: torch.library.wrap_triton inside a triton_op, so inductor launches the kernel itself.
    table: a codebook's [2**bits] entries ([2**bits, vector_size] for vector codes), else None.
    stored: the layer's tensors are one buffer, `packed` (scales, zeros and table None), and this is its
    Storage.kernel_args(): words per row, n_groups and the byte offsets of scales, zeros and table."""
    m = x2d.shape[0]
    wrap = wrap or (lambda kernel: kernel)
    consts = fmt.constexprs()
    # An argument the kernel does not read (no zero points, no bias, no table, no split) is passed as
    # None: Triton makes it a constant, so it is neither an argument of the launch nor a view that
    # inductor's generated code must build per call.
    if stored is not None:  # the kernel finds scales, zeros and table in the one buffer (stored_pointers)
        words_per_row, n_groups, scale_off, zero_off, table_off = stored
        if (fmt.element == "lut") != (table_off >= 0):
            raise ValueError(f"a {fmt.element!r} weight's buffer {'lacks' if table_off < 0 else 'holds'} a codebook table")
        scales = zeros = table = None
        consts.update(scale_off=scale_off, zero_off=max(zero_off, 0), table_off=max(table_off, 0), STORED=True)
    else:
        words_per_row, n_groups = packed.shape[1], scales.shape[0]
        if (fmt.element == "lut") != (table is not None):
            raise ValueError(f"a {fmt.element!r} weight {'needs' if table is None else 'takes no'} codebook table")
        consts.update(STORED=False)  # passed, not left to its default: inductor's copy of a launch names every switch
    if config.kernel == "gemv":
        unit = max(2, config.trip_blocks)  # blocks per step of a split (the kernel's UNIT)
        trips = triton.cdiv(words_per_row // fmt.words_per_block, unit)
        chunk = triton.cdiv(trips, max(1, config.split_k))  # trips per split
        split_k = triton.cdiv(trips, chunk)
        tiles = triton.cdiv(n, config.block_n)
        out = x2d.new_empty((m, n))
        parts = counts = None  # never read without split-K
        if split_k > 1:
            parts = torch.empty((split_k, m, n), dtype=torch.float32, device=x2d.device)
            counts = split_counts(counters, m * tiles, x2d.device)
        wrap(weight_only_gemv_kernel)[(tiles * split_k, m)](
            x2d, packed, scales, zeros, bias, out, parts, counts, m, n, k, words_per_row, n_groups,
            x2d.stride(0), out.stride(0), chunk, tiles, HAS_BIAS=bias is not None,
            BLOCK_N=config.block_n, SPLIT_K=split_k, PTX=ptx_ok(x2d.device),
            TRIP_BLOCKS=config.trip_blocks, ADJACENT_SPLITS=config.adjacent_splits, WIDE=config.wide,
            BIASED=config.biased and fmt.gemv_bias > 0,  # wide=True rules biased out (KernelConfig)
            EVEN_K=k % (unit * fmt.block_k) == 0 and words_per_row // fmt.words_per_block * fmt.block_k == k,
            num_warps=config.num_warps, num_stages=config.num_stages, **consts,
            table_ptr=table,
        )
        return out
    split_k = max(1, min(config.split_k, words_per_row // fmt.words_per_block))
    tiles = triton.cdiv(n, config.block_n) * triton.cdiv(m, config.block_m)
    out = x2d.new_empty((m, n))
    parts = counts = None  # never read without split-K
    if split_k > 1:
        parts = torch.empty((split_k, m, n), dtype=torch.float32, device=x2d.device)
        counts = split_counts(counters, tiles, x2d.device)
    wrap(weight_only_gemm_kernel)[(tiles, split_k)](
        x2d, packed, scales, zeros, bias, out, parts, counts, m, n, k, words_per_row, n_groups,
        x2d.stride(0), out.stride(0), HAS_BIAS=bias is not None, BLOCK_N=config.block_n,
        BLOCK_M=config.block_m, SPLIT_K=split_k, GROUP_N=config.group_n,
        ONE_DOT=config.one_dot or fmt.span < 16,  # a plane narrower than 16 is too thin for a dot
        BLOCK_SCALE=config.block_scale, DOT_F32=interpreting(), PTX=ptx_ok(x2d.device),
        EVEN_K=k % fmt.block_k == 0 and words_per_row // fmt.words_per_block * fmt.block_k == k,
        num_warps=config.num_warps, num_stages=config.num_stages, **consts,
        table_ptr=table,
    )
    return out
