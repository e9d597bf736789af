"""Bit-plane packing of integer codes into int32 words, in the order tqk's kernels read.

A row of K codes (each < 2**bits) is cut into blocks of planes * span codes (the row is padded
with zero codes to a whole number of blocks). Code c of a block is lane s = c % span of plane
j = c // span: a kernel that decodes plane j of a block gets `span` consecutive codes, ready to
meet `span` consecutive activations, and a plane never straddles a quantization group.

1, 2, 4 and 8 bits: one word per lane. Block b becomes `span` words, planes = 32 // bits; word s
holds

    bits [j*bits, (j+1)*bits) = code b*block + j*span + s      for j = 0 .. planes-1

    codes of one block:  | plane 0: s=0..span-1 | plane 1 | ... | plane planes-1 |
    word s:              | plane planes-1 [s] | ... | plane 1 [s] | plane 0 [s] |  (MSB..LSB)

3, 5, 6 and 7 bits: dense, a b-bit code costs b bits. A block has 8 planes (8 * span codes) and
b * span / 4 words. The code is cut into slices of 4, 2 and 1 bits (b's binary digits, widest
first, from the code's low bits): 3 = 2 + 1, 5 = 4 + 1, 6 = 4 + 2, 7 = 4 + 2 + 1. The slice of
width w, at bit o of the code, takes span * w / 4 words of the block, after the wider slices'
words; word i of it holds w-bit fields of 4 / w lanes, lanes i + h * (span * w / 4) for
h = 0 .. 4/w - 1, and nibble j of the word (bits 4j .. 4j+3) holds plane j:

    slice word i, bits [4j + w*h, 4j + w*h + w) = bits [o, o + w) of code (plane j, lane i + h*span*w/4)

    words of one block (span 16):  | 4-bit slice: 16 words | 2-bit slice: 8 words | 1-bit slice: 4 words |
                                     (the slices that b has, in this order: 3 bits -> 8 + 4 words)
    a 4-bit slice word s:   | plane 7 [s]  | ... | plane 1 [s] | plane 0 [s] |   (the 4-bit packing)
    a 2-bit slice word i:   | plane 7: [i+8] [i] | ... | plane 0: [i+8] [i] |   (2 bits per lane)
    a 1-bit slice word i:   | plane 7: [i+12] [i+8] [i+4] [i] | ... | plane 0: ... [i] |

A kernel loads each slice as a [rows, span] tile with the 4-bit addressing, lane s reading word
s % (span * w / 4) of the slice (16-byte loads of consecutive words; lanes that share a word read
it from the same cache line), and ORs the slices of plane j into the code (tqk/kernels/decode.py):
a lane's fields of one slice sit 4 bits apart, like the 4-bit slice's nibbles, so one rotation per
word puts them beside nibble j for all 8 planes. 1, 2, 4 and 8 bits keep the one-word packing above
(their words are those of tqk before dense packing: saved weights load unchanged).
"""
from __future__ import annotations

import torch
import triton

DENSE_PLANES = 8  # planes of a dense block: a lane's 8 codes of one slice fill 8 nibbles


# The geometry below is written once, for the packer and the kernels: as triton.constexpr_functions,
# the kernels evaluate them at compile time (tqk/kernels/decode.py); host code calls them as functions.
@triton.constexpr_function
def check_bits(bits: int) -> None:
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")


@triton.constexpr_function
def is_dense(bits: int) -> bool:
    """3, 5, 6 and 7 bits are packed densely, in slices; 1, 2, 4 and 8 one code per field of a word."""
    return bits in (3, 5, 6, 7)


@triton.constexpr_function
def planes_per_block(bits: int) -> int:
    """Planes of `span` codes in a packed block: codes per word for 1, 2, 4 and 8 bits; 8 if dense."""
    check_bits(bits)
    return DENSE_PLANES if is_dense(bits) else 32 // bits


codes_per_word = planes_per_block  # its name from before dense packing: the codes of one lane in a block


@triton.constexpr_function
def slice_widths(bits: int) -> tuple[int, ...]:
    """Widths of a code's slices, widest (the code's low bits) first: (4, 2, 1) for 7 bits, (bits,)
    when not dense."""
    check_bits(bits)
    return tuple(w for w in (4, 2, 1) if bits & w) if is_dense(bits) else (bits,)


@triton.constexpr_function
def slice_bit(bits: int, i: int) -> int:
    """The code bit where slice i starts (the widths of the slices before it)."""
    return sum(slice_widths(bits)[:i])


@triton.constexpr_function
def slice_word(bits: int, span: int, i: int) -> int:
    """The first word of slice i in a block."""
    return span * slice_bit(bits, i) // 4 if is_dense(bits) else 0


@triton.constexpr_function
def lane_words(bits: int, span: int, i: int) -> int:
    """Words of slice i in a block: lane s reads word s % lane_words (its h = s // lane_words)."""
    return span * slice_widths(bits)[i] // 4 if is_dense(bits) else span


@triton.constexpr_function
def words_per_block(bits: int, span: int) -> int:
    return span * bits // 4 if is_dense(bits) else span


def _check_span(bits: int, span: int) -> None:
    if is_dense(bits) and (span < 4 or span & (span - 1)):
        raise ValueError(f"dense {bits}-bit packing needs a span that is a power of two >= 4, got {span}")


def pack_planes(codes: torch.Tensor, bits: int, span: int) -> torch.Tensor:
    """uint8 codes [N, K] -> int32 words [N, ceil(K / block) * words_per_block(bits, span)]."""
    if codes.dtype != torch.uint8 or codes.dim() != 2:
        raise TypeError(f"pack_planes wants 2-D uint8 codes, got {codes.dtype} of shape {tuple(codes.shape)}")
    if codes.numel() and int(codes.max()) >= 1 << bits:
        raise ValueError(f"a code does not fit in {bits} bits (max {int(codes.max())})")
    _check_span(bits, span)
    planes = planes_per_block(bits)
    n, k = codes.shape
    block = planes * span
    padded = -(-k // block) * block
    c = torch.nn.functional.pad(codes.to(torch.int64), (0, padded - k))
    c = c.view(n, padded // block, planes, span)  # [row, block, plane j, lane s]
    if is_dense(bits):
        words = torch.cat([_pack_slice(c, bits, span, i) for i in range(len(slice_widths(bits)))], dim=2)
    else:
        shifts = (torch.arange(planes, device=codes.device, dtype=torch.int64) * bits).view(1, 1, planes, 1)
        words = (c << shifts).sum(dim=2)  # planes occupy disjoint bits: the sum is an OR
    words = torch.where(words >= 2**31, words - 2**32, words)  # two's complement for the top bit
    return words.to(torch.int32).reshape(n, -1).contiguous()


def _pack_slice(c: torch.Tensor, bits: int, span: int, i: int) -> torch.Tensor:
    """Slice i of blocked codes [N, blocks, 8, span] -> its words [N, blocks, lane_words] (int64)."""
    w, words = slice_widths(bits)[i], lane_words(bits, span, i)
    field = (c >> slice_bit(bits, i)) & ((1 << w) - 1)
    n, blocks = c.shape[:2]
    field = field.view(n, blocks, DENSE_PLANES, 4 // w, words)  # lane s = h * words + word
    j = torch.arange(DENSE_PLANES, device=c.device).view(1, 1, DENSE_PLANES, 1, 1)
    h = torch.arange(4 // w, device=c.device).view(1, 1, 1, 4 // w, 1)
    return (field << (4 * j + w * h)).sum(dim=(2, 3))  # disjoint fields: the sum is an OR


def unpack_planes(words: torch.Tensor, bits: int, span: int, k: int) -> torch.Tensor:
    """The inverse of pack_planes: int32 words [N, W] -> uint8 codes [N, k]."""
    _check_span(bits, span)
    planes = planes_per_block(bits)
    n, w = words.shape
    x = words.to(torch.int64) & 0xFFFFFFFF
    blocks = w // words_per_block(bits, span)
    if is_dense(bits):
        x = x.view(n, blocks, words_per_block(bits, span))
        codes = torch.zeros(n, blocks, planes, span, dtype=torch.int64, device=words.device)
        for i, width in enumerate(slice_widths(bits)):
            first, count = slice_word(bits, span, i), lane_words(bits, span, i)
            sw = x[:, :, first:first + count].view(n, blocks, 1, 1, count)
            j = torch.arange(planes, device=words.device).view(1, 1, planes, 1, 1)
            h = torch.arange(4 // width, device=words.device).view(1, 1, 1, 4 // width, 1)
            field = (sw >> (4 * j + width * h)) & ((1 << width) - 1)  # [N, blocks, 8, 4/w, count]
            codes |= field.reshape(n, blocks, planes, span) << slice_bit(bits, i)
    else:
        shifts = (torch.arange(planes, device=words.device, dtype=torch.int64) * bits).view(1, 1, planes, 1)
        codes = (x.view(n, blocks, 1, span) >> shifts) & ((1 << bits) - 1)
    return codes.reshape(n, -1)[:, :k].to(torch.uint8)
