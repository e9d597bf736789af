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
def decode_codes(codes, ELEMENT: tl.constexpr):
    """int32 codes -> float32 element values, before scale and zero point.

    "uint": the code itself. Built by the magic-exponent trick (2**23 + code has the code in
    its low mantissa bits) because int->float conversion runs at a quarter of FP32 rate.
    "e4m3" / "e5m2": the code is the fp8 bit pattern."""
    if ELEMENT == "uint":
        return (codes | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0
    elif ELEMENT == "e4m3":
        return codes.to(tl.uint8).to(tl.float8e4nv, bitcast=True).to(tl.float32)
    else:
        tl.static_assert(ELEMENT == "e5m2", "ELEMENT must be 'uint', 'e4m3' or 'e5m2'")
        return codes.to(tl.uint8).to(tl.float8e5, bitcast=True).to(tl.float32)
