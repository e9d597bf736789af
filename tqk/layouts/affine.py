"""Integer codes with a scale per group: int4 (asymmetric, zero point per group), int8
(symmetric, stored as offset binary q + 128), and any width 1..8 in between."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels.weight_only import WeightFormat
from .base import Layout, register_layout


@register_layout
@dataclass(frozen=True)
class AffineLayout(Layout):
    """value = (code - zero) * scale.

    `symmetric=False`: a float zero point per group (integer for min/max quantization,
    fractional for HQQ). `symmetric=True`: codes are two's-complement values plus 2**(bits-1),
    the zero point is that constant and is not stored.

    Packed words (tqk/layouts/packing.py), in the order the kernels read them: each row is cut into
    blocks of planes x `span` codes; code c of a block is lane s = c % span of plane j = c // span
    (span 16 below). 1, 2, 4, 8 bits: word s of a block holds lane s of every plane, plane j at bits
    j*bits .. j*bits + bits - 1 (32, 16, 8, 4 planes). 3, 5, 6, 7 bits cost their width: a block is
    8 planes (128 codes) in 4 * bits words, the code cut into slices of 4, 2 and 1 bits (its low
    bits first), each slice's words after the wider ones'. Word w of a block, nibble j (bits
    4j .. 4j+3) holds plane j:

        uint3 = 2 + 1 bits, 12 words:
          w = 0..7    bits 4j+2h, 4j+2h+1 = code bits 0, 1 of plane j, lane w + 8h      (h = 0, 1)
          w = 8..11   bit  4j+h           = code bit 2     of plane j, lane w - 8 + 4h  (h = 0..3)
        uint7 = 4 + 2 + 1 bits, 28 words:
          w = 0..15   bits 4j .. 4j+3     = code bits 0-3  of plane j, lane w
          w = 16..23  bits 4j+2h, 4j+2h+1 = code bits 4, 5 of plane j, lane w - 16 + 8h  (h = 0, 1)
          w = 24..27  bit  4j+h           = code bit 6     of plane j, lane w - 24 + 4h  (h = 0..3)
        uint5 = 4 + 1: words 0-15 as uint7's, then the 1-bit slice in words 16-19 (lane w - 16 + 4h).
        uint6 = 4 + 2: words 0-15 as uint7's, then the 2-bit slice in words 16-23.

    The kernels load each slice as a [rows, 16] tile (lane s reads the slice's word s mod its word
    count), rotate the narrow slices once per word so that plane j's bits sit beside nibble j, and
    OR plane j's code together in the float they decode it into (tqk/kernels/decode.py)."""

    nbits: int = 4
    symmetric: bool = False
    span: int = 16  # packed words per block (tqk/layouts/packing.py)

    def weight_format(self) -> WeightFormat:
        if self.symmetric:
            return WeightFormat(self.nbits, "uint", "offset", 1 << (self.nbits - 1), self.group_size, self.span)
        return WeightFormat(self.nbits, "uint", "tensor", 0, self.group_size, self.span)

    @classmethod
    def examples(cls):
        # 3 and 7 bits: the dense widths whose narrow slices (2 + 1) are merged; 5 and 6 are FpxLayout's
        return [cls(group_size=32, nbits=4), cls(group_size=128, nbits=4), cls(group_size=0, nbits=8, symmetric=True),
                cls(group_size=64, nbits=8, symmetric=True), cls(group_size=32, nbits=2), cls(group_size=0, nbits=4),
                cls(group_size=128, nbits=3), cls(group_size=32, nbits=7, symmetric=True)]
