"""Decode helpers shared by every tqk kernel: packed words -> codes -> float32 values.

The packed order (see tqk/layouts/packing.py): a row of K codes is cut into blocks of
PER_WORD * SPAN codes, PER_WORD "planes" of SPAN consecutive codes; plane j of a block is codes
j*SPAN .. j*SPAN + SPAN - 1, lane s of it code j*SPAN + s. So a tile of a block's words decodes
plane by plane into SPAN consecutive codes that line up with SPAN consecutive activations: no
permute or reshape, and a plane never straddles a quantization group (group sizes are multiples
of SPAN).
  1, 2, 4, 8 bits: word s of a block holds lane s of every plane, plane j at bit j * BITS.
  3, 5, 6, 7 bits (dense): PER_WORD = 8 planes; the code is cut into slices of 4, 2 and 1 bits,
    each loaded as its own [rows, SPAN] tile (load_slices: lane s reads word s % (SPAN * w / 4) of
    slice w), plane j of lane s at bit 4j + w * h of it (h = s // (SPAN * w / 4)); decode_plane
    ORs the slices of plane j into one code.
Codebooks (ELEMENT "lut"): the code indexes a table of 2**BITS float entries that each program
loads once (load_table) and reads with `lookup`; the other formats take no table (table=0). Vector
codebooks (VEC > 1): an entry is VEC floats (the table's rows, one after another in registers), and
feature t of a plane's codes, `lookup_feature`, is a plane of scalar values like any other: the
kernels take a vector plane as VEC planes that share their codes.
"""
import triton
import triton.language as tl

# Bare names, never `packing.f`: inductor copies a user kernel's helpers into its generated module by
# name, and a module attribute inside a constexpr_function does not come along (tests/kernels/test_inductor_source.py).
from ..layouts.packing import is_dense, lane_words, slice_bit, slice_widths, slice_word, words_per_block  # noqa: F401 (kernels')


@triton.constexpr_function
def slices(bits):
    """How many slices a code has: 1 (1, 2, 4, 8 bits), 2 (3, 5, 6) or 3 (7)."""
    return len(slice_widths(bits))


@triton.constexpr_function
def slice_width(bits, i):
    return slice_widths(bits)[i]


@triton.constexpr_function
def dense_high(j, bits):
    """Whether plane j's dense code, at bit 4j, would pass float32's 23 mantissa bits: it is then
    taken from the words moved 16 bits down (one shift per word that the high planes share)."""
    return 4 * j + bits > 23


@triton.constexpr_function
def dense_pos(j, bits):
    """The bit where decode_plane assembles plane j's dense code."""
    return 4 * j - (16 if dense_high(j, bits) else 0)


@triton.constexpr_function
def rest_bit(bits):
    """The code bit where a dense code's narrow slices (2 and 1 bits) start: after the 4-bit slice."""
    return bits & 4


@triton.jit
def slice_columns(cols, I: tl.constexpr, BITS: tl.constexpr, SPAN: tl.constexpr):
    """The word, from the start of a tile's first block, that each word column loads for slice I.
    Column c is lane c % SPAN of the tile's block c // SPAN; when not dense the column is the word."""
    if is_dense(BITS):
        return ((cols // SPAN) * words_per_block(BITS, SPAN) + slice_word(BITS, SPAN, I)
                + (cols % SPAN) % lane_words(BITS, SPAN, I))
    else:
        return cols


@triton.jit
def load_slices(ptrs, cols, BITS: tl.constexpr, SPAN: tl.constexpr, mask=None, other=None,
                EVICT: tl.constexpr = ""):
    """The tiles of packed words [R, COLS] of a block (or WIDE: of blocks side by side), one per
    slice. Dense: ptrs [R, 1] points at each row's first word of the tile, and word column c of
    slice I loads word slice_columns(c, I) from there; 1, 2, 4, 8 bits: ptrs [R, COLS] are the
    words themselves. A slice the format lacks gets slice 0's tile (never read)."""
    if is_dense(BITS):
        words = tl.load(ptrs + slice_columns(cols, 0, BITS, SPAN)[None, :], mask=mask, other=other,
                        eviction_policy=EVICT)
    else:
        words = tl.load(ptrs, mask=mask, other=other, eviction_policy=EVICT)
    words1 = words
    words2 = words
    if slices(BITS) > 1:
        words1 = tl.load(ptrs + slice_columns(cols, 1, BITS, SPAN)[None, :], mask=mask, other=other,
                         eviction_policy=EVICT)
    if slices(BITS) > 2:
        words2 = tl.load(ptrs + slice_columns(cols, 2, BITS, SPAN)[None, :], mask=mask, other=other,
                         eviction_policy=EVICT)
    return words, words1, words2


@triton.jit
def _rotl(x, n, PTX: tl.constexpr):
    """x rotated left by n (0..31, an int32 tile) bits: one shf.l.wrap (inline PTX; ptxas makes
    two shifts and an OR of the plain ops when n varies by lane)."""
    if PTX:
        return tl.inline_asm_elementwise("shf.l.wrap.b32 $0, $1, $1, $2;", "=r,r,r", [x, n], dtype=tl.int32,
                                         is_pure=True, pack=1)
    left = x << n
    right = (x.to(tl.uint32, bitcast=True) >> ((32 - n) & 31)).to(tl.int32, bitcast=True)
    return left | right


@triton.jit
def _narrow_slice(words, I: tl.constexpr, BITS: tl.constexpr, SPAN: tl.constexpr, PTX: tl.constexpr):
    """Slice I (2 or 1 bits) rotated so that every lane's field of plane j sits at bit
    4j + slice_bit(I) (mod 32): by slice_bit - w * h, h the lane's place in its word."""
    W: tl.constexpr = slice_width(BITS, I)
    h = (tl.arange(0, words.shape[1]) % SPAN) // lane_words(BITS, SPAN, I)
    n = ((slice_bit(BITS, I) - W * h) & 31)[None, :] + tl.zeros(words.shape, tl.int32)
    return _rotl(words, n, PTX)


@triton.jit
def _dense_rest(words, words1, words2, BITS: tl.constexpr, SPAN: tl.constexpr, PTX: tl.constexpr):
    """A dense code's slices narrower than 4 bits as one word: plane j's bits from rest_bit(BITS) up sit
    at bit 4j + rest_bit (mod 32) of it. Two slices (2 + 1: 3 and 7 bits) are merged by one LOP3 (the
    2-bit slice's fields at bits 4j, 4j + 1 of each nibble, the 1-bit slice's at 4j + 2)."""
    if BITS == 3:
        return select_bits(_narrow_slice(words, 0, BITS, SPAN, PTX), _narrow_slice(words1, 1, BITS, SPAN, PTX),
                           0x33333333, PTX)
    elif BITS == 7:
        return select_bits(_narrow_slice(words1, 1, BITS, SPAN, PTX), _narrow_slice(words2, 2, BITS, SPAN, PTX),
                           0x33333333, PTX)
    else:  # 5 or 6 bits: the 4-bit slice and one narrow slice
        return _narrow_slice(words1, 1, BITS, SPAN, PTX)


@triton.jit
def _dense_code_bits(words, words1, words2, j: tl.constexpr, BITS: tl.constexpr, SPAN: tl.constexpr,
                     EXP: tl.constexpr, PTX: tl.constexpr):
    """Plane j's dense code at bit dense_pos(j) of an int32, OR-ed with EXP: one LOP3 for the 4-bit
    slice (nibble j of its word, as 4-bit codes are read) and one for the rest (_dense_rest), read
    from the words moved 16 bits down for high planes."""
    POS: tl.constexpr = dense_pos(j, BITS)
    HIGH: tl.constexpr = dense_high(j, BITS)
    rest = _dense_rest(words, words1, words2, BITS, SPAN, PTX)
    if HIGH:
        rest = _rotl(rest, tl.full(rest.shape, 16, tl.int32), PTX)
    REST_MASK: tl.constexpr = ((1 << (BITS - rest_bit(BITS))) - 1) << (POS + rest_bit(BITS))
    if rest_bit(BITS) > 0:
        bits = mask_or((words >> 16) if HIGH else words, 15 << POS, EXP, PTX)
        bits = mask_or_into(rest, REST_MASK, bits, PTX)
    else:
        bits = mask_or(rest, REST_MASK, EXP, PTX)
    return bits


@triton.jit
def unpack_plane(words, j: tl.constexpr, BITS: tl.constexpr, SPAN: tl.constexpr = 16, words1=0, words2=0,
                 PTX: tl.constexpr = False):
    """Codes of plane j from a tile of packed int32 words (any shape; dense: [R, COLS] tiles of each
    slice, from load_slices), as int32 in [0, 2**BITS)."""
    if is_dense(BITS):
        return _dense_code_bits(words, words1, words2, j, BITS, SPAN, 0, PTX) >> dense_pos(j, BITS)
    else:
        return (words >> (j * BITS)) & ((1 << BITS) - 1)


@triton.jit
def unpack_planes(words, BITS: tl.constexpr, PER_WORD: tl.constexpr, SPAN: tl.constexpr = 16, words1=0, words2=0):
    """[R, SPAN] words (dense: a tile per slice) -> [R, PER_WORD, SPAN] codes; element (r, j, s) is
    code j * SPAN + s."""
    if is_dense(BITS):
        plane = tl.arange(0, PER_WORD)[:, None]
        lane = tl.arange(0, SPAN)[None, :]
        codes = _slice_fields(words, plane, lane, 0, BITS, SPAN)
        if slices(BITS) > 1:
            codes |= _slice_fields(words1, plane, lane, 1, BITS, SPAN)
        if slices(BITS) > 2:
            codes |= _slice_fields(words2, plane, lane, 2, BITS, SPAN)
    else:
        shifts = tl.arange(0, PER_WORD) * BITS
        codes = (words[:, None, :] >> shifts[None, :, None]) & ((1 << BITS) - 1)
    return codes


@triton.jit
def _slice_fields(words, plane, lane, I: tl.constexpr, BITS: tl.constexpr, SPAN: tl.constexpr):
    """Slice I's fields of every plane, [R, 8, SPAN], in place in the code (shifted by slice_bit)."""
    W: tl.constexpr = slice_width(BITS, I)
    at = 4 * plane + W * (lane // lane_words(BITS, SPAN, I))  # [8, SPAN]: the field's bit in its word
    return ((words[:, None, :] >> at[None, :, :]) & ((1 << W) - 1)) << slice_bit(BITS, I)


@triton.jit
def mask_or(x, MASK: tl.constexpr, BITS: tl.constexpr, PTX: tl.constexpr):
    """(x & MASK) | BITS. ptxas emits this as two LOP3s; PTX=True makes it one lop3.b32
    (inline PTX: NVIDIA GPUs only, never under the interpreter)."""
    if PTX:
        return tl.inline_asm_elementwise(
            "lop3.b32 $0, $1, $2, $3, 0xEA;", "=r,r,r,r",  # 0xEA: (a & b) | c
            [x, tl.full(x.shape, MASK, tl.int32), tl.full(x.shape, BITS, tl.int32)],
            dtype=tl.int32, is_pure=True, pack=1)
    return (x & MASK) | BITS


@triton.jit
def mask_or_into(x, MASK: tl.constexpr, into, PTX: tl.constexpr):
    """(x & MASK) | into, one LOP3 (into: an int32 tile)."""
    if PTX:
        return tl.inline_asm_elementwise(
            "lop3.b32 $0, $1, $2, $3, 0xEA;", "=r,r,r,r",
            [x, tl.full(x.shape, MASK, tl.int32), into], dtype=tl.int32, is_pure=True, pack=1)
    return (x & MASK) | into


@triton.jit
def select_bits(a, b, MASK: tl.constexpr, PTX: tl.constexpr):
    """a's bits where MASK has ones, b's elsewhere: one LOP3 (ptxas makes two of the plain ops)."""
    if PTX:
        return tl.inline_asm_elementwise(
            "lop3.b32 $0, $1, $2, $3, 0xE4;", "=r,r,r,r",  # 0xE4: (a & c) | (b & ~c)
            [a, b, tl.full(a.shape, MASK, tl.int32)], dtype=tl.int32, is_pure=True, pack=1)
    return (a & MASK) | (b & ~MASK)


@triton.constexpr_function
def table_tile(bits, vec):
    """The register table's length: 2**bits entries of vec floats, rounded up to a power of two."""
    return 1 << ((1 << bits) * vec - 1).bit_length()


@triton.jit
def load_table(table_ptr, ELEMENT: tl.constexpr, BITS: tl.constexpr, VEC: tl.constexpr = 1):
    """A codebook's 2**BITS entries as a float32 register tile, loaded once per program (ELEMENT
    "lut"): [2**BITS], or for vector codes (the table stored [2**BITS, VEC]) its rows one after
    another, feature t of entry e at e * VEC + t (a tile of table_tile(BITS, VEC), the tail past the
    entries never read). 0 for the formats without a table."""
    if ELEMENT == "lut":
        if VEC > 1:
            i = tl.arange(0, table_tile(BITS, VEC))
            return tl.load(table_ptr + i, mask=i < (1 << BITS) * VEC, other=0.0).to(tl.float32)
        else:
            return tl.load(table_ptr + tl.arange(0, 1 << BITS)).to(tl.float32)
    else:
        return 0


@triton.jit
def lookup(table, codes):
    """table[codes] for int32 codes of any shape, from the [T] table tile that load_table gave.

    Why tl.gather: the table must not cost a global load per element, and a register method must
    scale to 256 entries. A select tree costs T - 1 selects per code (15 for 4 bits, 255 for 8);
    tl.gather on a 1-D table is one shared-memory load per code (plus, per call, T / threads stores
    of the table and a barrier) when the table spans warps, or warp shuffles when it fits in one
    warp, and the same code in Triton 3.6 and 3.9 (and their interpreters). gather wants index and
    table of the same rank, so the codes are flattened: a reshape that keeps the element order, free
    in registers. To check on a GPU (cuobjdump): one LDS per code and no layout conversion around
    the reshapes; 256 random entries meet bank conflicts (entries 32 apart share a bank)."""
    flat = tl.reshape(codes, [codes.numel])
    return tl.reshape(tl.gather(table, flat, 0), codes.shape)


@triton.jit
def lookup_feature(table, codes, t: tl.constexpr, VEC: tl.constexpr):
    """Feature t of each code's VEC-float entry, for int32 codes of any shape, from the table tile that
    load_table gave for VEC > 1: a plane of scalar values, the same tl.gather as `lookup`. Why a
    lookup per feature and not one of whole rows: the result keeps the codes' layout (a [T, VEC]
    table gathered on its rows makes 3-D tiles whose reduction over VEC crosses threads, and
    Triton 3.6 fails to compile that gather when the table has fewer columns than warps), and an odd
    VEC needs no padding. The VEC lookups of a code share its unpacking."""
    return lookup(table, codes * VEC + t)


@triton.constexpr_function
def via_half(element, bits):
    """Whether decode_plane takes a small float through float16 (half_float_bits): a sign + e + m
    float of 4 to 7 bits with 1 <= e <= 4, whose codes (exponent field <= 15) are all finite f16
    values once placed in f16's fields. Not 8 bits (fp8 has its own cvt), not e5 (f16's top
    exponent is inf and NaN, an fpx's is finite)."""
    return (element.startswith("fpx") and len(element) == 5 and 1 <= int(element[3]) <= 4
            and 4 <= bits <= 7)


@triton.constexpr_function
def plane_gain(element, bits):
    """What decode_plane(UNSCALED=True) leaves off its values: 2**(15 - bias) for a small float
    taken through float16 (its fields placed in f16's, the value is the element's times
    2**(bias - 15), subnormals included), else 1. A power of two: multiplying it back is exact."""
    if not via_half(element, bits):
        return 1.0
    return 2.0 ** (15 - ((1 << (int(element[3]) - 1)) - 1))


@triton.jit
def _shift(x, N: tl.constexpr):
    """x << N, or x >> -N for negative N (the bits it brings in are masked off by the callers)."""
    if N > 0:
        return x << N
    elif N < 0:
        return x >> (-N)
    else:
        return x


@triton.jit
def half_float_bits(bits, POS: tl.constexpr, EBITS: tl.constexpr, MBITS: tl.constexpr, PAIR: tl.constexpr,
                    PTX: tl.constexpr):
    """A small float's code at bit POS of `bits` (other bits may hold anything) placed in float16's
    fields in the low half: exponent and mantissa up to bit 14, the sign at 15. PAIR: the code at
    POS + 16 goes to the high half the same way (one f16x2 for two planes 16 bits apart). Two shifts
    and two LOP3s per register, for one or two codes: no int-to-float conversion, no select for
    subnormals (f16's own subnormals hold them)."""
    MAG: tl.constexpr = ((1 << (EBITS + MBITS)) - 1) << (10 - MBITS)
    MAG2: tl.constexpr = (MAG | (MAG << 16)) if PAIR else MAG
    SIGN: tl.constexpr = (0x8000 | (0x8000 << 16)) - (1 << 32) if PAIR else 0x8000  # as an int32
    mag = _shift(bits, 10 - MBITS - POS) & MAG2
    return mask_or_into(_shift(bits, 15 - (POS + EBITS + MBITS)), SIGN, mag, PTX)


@triton.jit
def half_to_f32(pair, HI: tl.constexpr, PTX: tl.constexpr):
    """The low (or HI: high) float16 of an int32 as float32: one HADD2.F32 (inline PTX reads the
    half in place; the plain ops first move it out)."""
    if PTX:
        PICK: tl.constexpr = "hi" if HI else "lo"
        return tl.inline_asm_elementwise(
            "{ .reg .b16 lo, hi; mov.b32 {lo, hi}, $1; cvt.f32.f16 $0, " + PICK + "; }", "=r,r",
            [pair], dtype=tl.float32, is_pure=True, pack=1)
    else:
        half = (pair >> 16) if HI else pair
        return half.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def decode_plane(words, j: tl.constexpr, BITS: tl.constexpr, ELEMENT: tl.constexpr, PTX: tl.constexpr,
                 MINUS: tl.constexpr = 0, SPAN: tl.constexpr = 16, words1=0, words2=0, table=0,
                 UNSCALED: tl.constexpr = False):
    """Plane j of a tile of packed words, decoded to float32 values (before scale and zero),
    minus the integer constant MINUS ("uint" only: a constant zero point costs nothing more).
    Dense widths (3, 5, 6, 7 bits) take a [R, COLS] tile per slice: words, words1, words2.
    "lut": the code's entry of `table` (load_table).

    For "uint" the code is masked where it lies and OR-ed into the mantissa of 2**(23 - pos),
    whose mantissa unit is 2**-pos at that bit position: the float is 2**(23 - pos) + code with
    no shift per code (planes above bit 23 are read from words >> 16, one shift per word that
    every high plane shares). One LOP3 and one FADD per code instead of shift, mask, or, FADD.
    A dense code is OR-ed together in place the same way from two words at most: nibble j of the
    4-bit slice's word, and the narrower slices rotated once per word into place beside it and
    merged into one word (_dense_rest): one LOP3 per code for 3 bits, two for 5, 6 and 7.
    (Leaving 2**(23 - pos) in and folding it into the zero point saves the FADD, but float32
    then rounds sums at the scale of 2**(23 - pos) instead of the codes': up to 2**23 units at
    bit 0. decode_plane_biased does it with the codes moved up to bits 12-19 first.)

    Small floats of 4 to 7 bits (via_half) are placed in float16's fields (half_float_bits) and
    converted by one HADD2 each; 4-bit planes j and j + 4 share their f16x2. The value is then the
    element's divided by plane_gain: UNSCALED returns it so (the caller multiplies the gain back
    once per output), else it is multiplied here."""
    if ELEMENT == "uint":
        if is_dense(BITS):
            POS: tl.constexpr = dense_pos(j, BITS)
            bits = _dense_code_bits(words, words1, words2, j, BITS, SPAN, (150 - POS) << 23, PTX)
        else:
            OFF: tl.constexpr = j * BITS
            HIGH: tl.constexpr = OFF + BITS > 23
            POS: tl.constexpr = OFF - 16 if HIGH else OFF
            src = (words >> 16) if HIGH else words
            bits = mask_or(src, ((1 << BITS) - 1) << POS, (150 - POS) << 23, PTX)
        return bits.to(tl.float32, bitcast=True) - ((1 << (23 - POS)) + MINUS)  # exact: integers < 2**24
    else:
        tl.static_assert(MINUS == 0, "MINUS is for uint codes")
        if ELEMENT == "lut":
            return lookup(table, unpack_plane(words, j, BITS, SPAN, words1, words2, PTX))
        elif PTX and (ELEMENT == "e4m3" or ELEMENT == "e5m2"):
            return decode_fp8_plane(words, j, ELEMENT)
        elif via_half(ELEMENT, BITS):
            if is_dense(BITS):  # one code per register, assembled at dense_pos(j)
                code_bits = _dense_code_bits(words, words1, words2, j, BITS, SPAN, 0, PTX)
                half = half_float_bits(code_bits, dense_pos(j, BITS), fpx_ebits(ELEMENT), fpx_mbits(ELEMENT), False,
                                       PTX)
                vals = half_to_f32(half, False, PTX)
            else:  # 4 bits: planes j % 4 and j % 4 + 4 in the low and high halves of one f16x2
                pair = half_float_bits(words, 4 * (j % 4), fpx_ebits(ELEMENT), fpx_mbits(ELEMENT), True, PTX)
                vals = half_to_f32(pair, j >= 4, PTX)
            if UNSCALED:
                return vals
            else:
                return vals * plane_gain(ELEMENT, BITS)
        elif is_dense(BITS):  # small floats of 5 to 7 bits: decoded where they are assembled
            code_bits = _dense_code_bits(words, words1, words2, j, BITS, SPAN, 0, PTX)
            return decode_fpx(code_bits, fpx_ebits(ELEMENT), fpx_mbits(ELEMENT), dense_pos(j, BITS))
        else:  # (an else, not a fall-through: compiled Triton also traces code after a static branch's return)
            return decode_codes(unpack_plane(words, j, BITS, SPAN, words1, words2, PTX), ELEMENT)


@triton.constexpr_function
def biased_pos(j, bits):
    """The bit (12 to 19) where decode_plane_biased puts plane j's codes: each plane's word is
    shifted by a multiple of 8 bits, so one shifted copy of a word serves two 4-bit planes."""
    off = j * bits
    return off - ((off + 4) // 8 * 8 - 16)


@triton.constexpr_function
def plane_bias(j, bits):
    """What decode_plane_biased adds to plane j's codes: 2**(23 - pos), 128 or 2048 (4-bit)."""
    return 1 << (23 - biased_pos(j, bits))


@triton.jit
def decode_plane_biased(words, j: tl.constexpr, BITS: tl.constexpr, PTX: tl.constexpr):
    """Plane j of a tile of packed "uint" words as float32 code + plane_bias(j, BITS), BITS 1, 2 or 4:
    a LOP3 per code and a shift per two, no FADD. The caller takes the bias off with the zero
    point, from sums of x: sum(x * (q + b)) - b * sum(x). The codes sit at bit 12 to 19 of the
    mantissa, so the bias is at most 2**11 codes' units: the float32 sums of one block's biased
    values round at up to 2**11 times the scale of their codes' (WeightFormat.gemv_bias)."""
    tl.static_assert(BITS <= 4 and not is_dense(BITS), "biased decode is for 1-, 2- and 4-bit codes")
    POS: tl.constexpr = biased_pos(j, BITS)
    SHIFT: tl.constexpr = j * BITS - POS  # whole bytes, -16 to 16
    if SHIFT > 0:
        src = words >> SHIFT  # the sign bits it brings in fill bits 32 - SHIFT (>= 16) and up
    elif SHIFT < 0:
        src = words << (-SHIFT)
    else:
        src = words
    bits = mask_or(src, ((1 << BITS) - 1) << POS, (150 - POS) << 23, PTX)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def decode_fp8_plane(words, j: tl.constexpr, ELEMENT: tl.constexpr):
    """Byte j of each word as an fp8 value in float32 (inline PTX, NVIDIA sm_89+).

    One cvt turns the two bytes of a 16-bit half into an f16x2; planes 2h and 2h + 1 share it
    (a pure asm, so the compiler computes it once). Generic casts would first gather byte j of two
    neighbouring words into one pair: two more instructions per pair."""
    CVT: tl.constexpr = "cvt.rn.f16x2.e4m3x2" if ELEMENT == "e4m3" else "cvt.rn.f16x2.e5m2x2"
    HALF: tl.constexpr = "hi" if j >= 2 else "lo"
    pair = tl.inline_asm_elementwise(
        "{ .reg .b16 lo, hi; mov.b32 {lo, hi}, $1; " + CVT + " $0, " + HALF + "; }", "=r,r",
        [words], dtype=tl.int32, is_pure=True, pack=1)
    PICK: tl.constexpr = "hi" if j % 2 else "lo"
    return tl.inline_asm_elementwise(
        "{ .reg .b16 lo, hi; mov.b32 {lo, hi}, $1; cvt.f32.f16 $0, " + PICK + "; }", "=r,r",
        [pair], dtype=tl.float32, is_pure=True, pack=1)


@triton.jit
def decode_codes(codes, ELEMENT: tl.constexpr, table=0):
    """int32 codes -> float32 element values, before scale and zero point.

    "uint": the code itself. Built by the magic-exponent trick (2**23 + code has the code in
    its low mantissa bits) because int->float conversion runs at a quarter of FP32 rate.
    "e4m3" / "e5m2": the code is the fp8 bit pattern (torch's formats).
    "fpx{e}{m}": a sign + e + m bit small float with no inf or NaN (tqk/quant/fpx.py).
    "lut": the code's entry of `table` (a codebook, tqk/quant/codebook.py).
    "e8m0": an MX block scale, 2**(code - 127) (decode_e8m0)."""
    if ELEMENT == "uint":
        return (codes | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
    elif ELEMENT == "e8m0":
        return decode_e8m0(codes)
    elif ELEMENT == "e4m3":
        return codes.to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float32)
    elif ELEMENT == "e5m2":
        return codes.to(tl.uint8).to(tl.float8e5, bitcast=True).to(tl.float32)
    elif ELEMENT == "lut":
        return lookup(table, codes)
    else:
        return decode_fpx(codes, fpx_ebits(ELEMENT), fpx_mbits(ELEMENT))


@triton.jit
def decode_e8m0(codes):
    """int32 E8M0 codes (0..255, OCP MX's shared scale) -> float32 2**(code - 127): the code shifted
    into float32's exponent field. Code 0 is 2**-127, a float32 subnormal; 0xFF is NaN."""
    bits = tl.maximum(codes << 23, 0x00400000)  # code 0: the subnormal 2**-127 (one IMNMX, not a select)
    bits = tl.where(codes == 255, 0x7FC00000, bits)
    return bits.to(tl.float32, bitcast=True)


@triton.constexpr_function
def fpx_ebits(element):
    assert element.startswith("fpx") and len(element) == 5, f"ELEMENT {element!r}: 'uint', 'e4m3', 'e5m2' or 'fpx<e><m>'"
    return int(element[3])


@triton.constexpr_function
def fpx_mbits(element):
    return int(element[4])


@triton.constexpr_function
def fpx_subnormal_unit(ebits, mbits):
    """The value of mantissa unit 1 at exponent code 0: 2**(1 - bias - mbits)."""
    return 2.0 ** (1 - ((1 << (ebits - 1)) - 1) - mbits)


@triton.jit
def decode_fpx(codes, EBITS: tl.constexpr, MBITS: tl.constexpr, POS: tl.constexpr = 0):
    """int32 codes of a sign + EBITS + MBITS small float -> float32. A normal code's exponent and
    mantissa bits, shifted to float32's places, plus the rebias of the exponent, are the float32
    itself (one shift, one add); a subnormal (exponent code 0) is its mantissa times a constant.
    POS: the bit where the codes sit (the other bits may hold anything): a dense plane's code is
    decoded where decode_plane assembles it, with no shift of its own."""
    BIAS: tl.constexpr = (1 << (EBITS - 1)) - 1
    mag = codes & (((1 << (EBITS + MBITS)) - 1) << POS)
    SHIFT: tl.constexpr = 23 - MBITS - POS  # from the code's mantissa to float32's (>= 1: POS <= 16)
    normal = ((mag << SHIFT) + ((127 - BIAS) << 23)).to(tl.float32, bitcast=True)
    sub = mag.to(tl.float32) * (fpx_subnormal_unit(EBITS, MBITS) * 2.0 ** -POS)  # exact: codes < 2**24
    val = tl.where(mag < (1 << (MBITS + POS)), sub, normal)
    return tl.where(((codes >> (EBITS + MBITS + POS)) & 1) != 0, -val, val)


@triton.jit
def fpx_as_e4m3(codes, EBITS: tl.constexpr, MBITS: tl.constexpr):
    """int32 codes of a sign + EBITS + MBITS small float that e4m3 holds exactly (e2m1, e3m2, e2m3: fewer
    exponent and mantissa bits) -> e4m3 bit patterns, int32: how the scaled GEMM feeds MXFP4 / MXFP6
    weights to the fp8 tensor cores. A normal code is e4m3's with the exponent rebiased and the mantissa
    moved up (one shift, one add); a subnormal one is an e4m3 normal, taken from its exact float32 value
    (the mantissa's integer by the magic-exponent trick, times the subnormal unit), whose exponent and top
    three mantissa bits are e4m3's fields, rebiased."""
    BIAS: tl.constexpr = (1 << (EBITS - 1)) - 1
    mag = codes & ((1 << (EBITS + MBITS)) - 1)
    normal = (mag << (3 - MBITS)) + ((7 - BIAS) << 3)
    sub = ((mag | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0) * fpx_subnormal_unit(EBITS, MBITS)
    sub = tl.where(mag == 0, 0, (sub.to(tl.int32, bitcast=True) >> 20) - ((127 - 7) << 3))
    return tl.where(mag < (1 << MBITS), sub, normal) | (((codes >> (EBITS + MBITS)) & 1) << 7)
