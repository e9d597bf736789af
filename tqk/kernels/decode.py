"""Decode helpers shared by every tqk kernel: packed words -> codes -> float32 values.

The packed order (see tqk/layouts/packing.py): a row of K codes is cut into blocks of
PER_WORD * SPAN codes; word s of a block holds codes s, s + SPAN, ..., s + (PER_WORD-1) * SPAN
at bit offsets 0, BITS, 2 * BITS, ... So a tile of SPAN consecutive words unpacks into
PER_WORD "planes", plane j being the SPAN consecutive codes j*SPAN .. j*SPAN + SPAN - 1 of the
block: no permute or reshape is needed to line codes up with activations, and a plane never
straddles a quantization group (group sizes are multiples of SPAN).
"""
import triton
import triton.language as tl


@triton.jit
def unpack_plane(words, j: tl.constexpr, BITS: tl.constexpr):
    """Codes of plane j from a tile of packed int32 words (any shape), as int32 in [0, 2**BITS)."""
    return (words >> (j * BITS)) & ((1 << BITS) - 1)


@triton.jit
def unpack_planes(words, BITS: tl.constexpr, PER_WORD: tl.constexpr):
    """[R, SPAN] words -> [R, PER_WORD, SPAN] codes; element (r, j, s) is code j * SPAN + s."""
    shifts = tl.arange(0, PER_WORD) * BITS
    return (words[:, None, :] >> shifts[None, :, None]) & ((1 << BITS) - 1)


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
def decode_plane(words, j: tl.constexpr, BITS: tl.constexpr, ELEMENT: tl.constexpr, PTX: tl.constexpr,
                 MINUS: tl.constexpr = 0):
    """Plane j of a tile of packed words, decoded to float32 values (before scale and zero),
    minus the integer constant MINUS ("uint" only: a constant zero point costs nothing more).

    For "uint" the code is masked where it lies and OR-ed into the mantissa of 2**(23 - pos),
    whose mantissa unit is 2**-pos at that bit position: the float is 2**(23 - pos) + code with
    no shift per code (planes above bit 23 are read from words >> 16, one shift per word that
    every high plane shares). One LOP3 and one FADD per code instead of shift, mask, or, FADD.
    (Leaving 2**(23 - pos) in and folding it into the zero point saves the FADD, but float32
    then rounds sums at the scale of 2**(23 - pos) instead of the codes': up to 2**23 units at
    bit 0. decode_plane_biased does it with the codes moved up to bits 12-19 first.)"""
    if ELEMENT == "uint":
        OFF: tl.constexpr = j * BITS
        HIGH: tl.constexpr = OFF + BITS > 23
        POS: tl.constexpr = OFF - 16 if HIGH else OFF
        src = (words >> 16) if HIGH else words
        bits = mask_or(src, ((1 << BITS) - 1) << POS, (150 - POS) << 23, PTX)
        return bits.to(tl.float32, bitcast=True) - ((1 << (23 - POS)) + MINUS)  # exact: integers < 2**24
    else:
        tl.static_assert(MINUS == 0, "MINUS is for uint codes")
        if PTX and (ELEMENT == "e4m3" or ELEMENT == "e5m2"):
            return decode_fp8_plane(words, j, ELEMENT)
        return decode_codes(unpack_plane(words, j, BITS), ELEMENT)


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
    """Plane j of a tile of packed "uint" words as float32 code + plane_bias(j, BITS), BITS <= 4:
    a LOP3 per code and a shift per two, no FADD. The caller takes the bias off with the zero
    point, from sums of x: sum(x * (q + b)) - b * sum(x). The codes sit at bit 12 to 19 of the
    mantissa, so the bias is at most 2**11 codes' units: the float32 sums of one block's biased
    values round at up to 2**11 times the scale of their codes' (WeightFormat.gemv_bias)."""
    tl.static_assert(BITS <= 4, "biased decode is for codes of 4 bits or fewer")
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
def decode_codes(codes, ELEMENT: tl.constexpr):
    """int32 codes -> float32 element values, before scale and zero point.

    "uint": the code itself. Built by the magic-exponent trick (2**23 + code has the code in
    its low mantissa bits) because int->float conversion runs at a quarter of FP32 rate.
    "e4m3" / "e5m2": the code is the fp8 bit pattern (torch's formats).
    "fpx{e}{m}": a sign + e + m bit small float with no inf or NaN (tqk/quant/fpx.py)."""
    if ELEMENT == "uint":
        return (codes | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
    elif ELEMENT == "e4m3":
        return codes.to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float32)
    elif ELEMENT == "e5m2":
        return codes.to(tl.uint8).to(tl.float8e5, bitcast=True).to(tl.float32)
    else:
        return decode_fpx(codes, fpx_ebits(ELEMENT), fpx_mbits(ELEMENT))


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
def decode_fpx(codes, EBITS: tl.constexpr, MBITS: tl.constexpr):
    """int32 codes of a sign + EBITS + MBITS small float -> float32. A normal code's exponent and
    mantissa bits, shifted to float32's places, plus the rebias of the exponent, are the float32
    itself (one shift, one add); a subnormal (exponent code 0) is its mantissa times a constant."""
    BIAS: tl.constexpr = (1 << (EBITS - 1)) - 1
    mag = codes & ((1 << (EBITS + MBITS)) - 1)
    normal = ((mag << (23 - MBITS)) + ((127 - BIAS) << 23)).to(tl.float32, bitcast=True)
    sub = mag.to(tl.float32) * fpx_subnormal_unit(EBITS, MBITS)
    val = tl.where(mag < (1 << MBITS), sub, normal)
    return tl.where(((codes >> (EBITS + MBITS)) & 1) != 0, -val, val)
