"""Codebooks: value = table[code] * scale, a b-bit code (b = 1..8) indexing a table of 2**b float
entries per tensor (k-means, tqk/quant/codebook.py), with one scale per row or per group of K.

The codes are packed as AffineLayout packs codes of that width (tqk/layouts/packing.py), so a
b-bit code costs b bits; the table, [2**b] in the model dtype, is the weight's fourth tensor
(QuantizedLinearWeight.table), and the kernels take it as their last argument. Each program loads
the whole table once into registers and decodes a plane of codes with one lookup (tl.gather,
tqk/kernels/decode.py: lookup). The kernel reads, per block of a row:

    packed words (the bit planes of AffineLayout, e.g. 4 bits: word s = lanes s of planes 7..0)
      -> plane j's SPAN codes c (shift and mask; dense widths OR their slices together)
      -> table[c]                         (the program's register copy, loaded before the K loop)
      -> * x[k0 + j * SPAN + s], summed   (the block's or row's scale applied as for any format)

A layout needs nothing more than this file: a WeightFormat naming its element ("lut") and bit
width, and examples() for the shared property tests (tests/layouts/test_layouts.py)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels.weight_only import WeightFormat
from .base import Layout, register_layout
from .packing import check_bits


@register_layout
@dataclass(frozen=True)
class CodebookLayout(Layout):
    """value = table[code] * scale[group, row]: `nbits`-bit codes, one table of 2**nbits entries."""

    nbits: int = 4

    def __post_init__(self):
        check_bits(self.nbits)

    @property
    def table_entries(self) -> int:
        return 1 << self.nbits

    def weight_format(self) -> WeightFormat:
        return WeightFormat(self.nbits, "lut", "none", 0, self.group_size)

    def check_table(self, table: torch.Tensor | None) -> None:
        """The table the kernels read: a contiguous 1-D tensor of 2**nbits entries."""
        if table is None or table.dim() != 1 or table.numel() != self.table_entries or not table.is_contiguous():
            got = "None" if table is None else f"{table.dtype} {tuple(table.shape)}"
            raise ValueError(f"{self}: the codebook table must be a contiguous tensor of shape "
                             f"({self.table_entries},), got {got}")

    @classmethod
    def examples(cls):
        # One, for the interpreter's time (an example costs ~35 s of CI, a dense width ~100 s): 256
        # entries, group scales. tests/layouts/test_codebook.py runs 4 bits per row and the dense
        # widths on exact data, once per kernel.
        return [cls(nbits=8, group_size=32)]
