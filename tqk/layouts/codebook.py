"""Codebooks: value = table[code] * scale, a b-bit code (b = 1..8) indexing a table of 2**b entries per
tensor (k-means, tqk/quant/codebook.py), with one scale per row or per group of K. An entry is one
float (scalar codes), or with vector_size v > 1 (torchao's block_size=(1, v)) v floats: one code
stands for v consecutive input features of a row, b / v bits per weight plus the table.

The codes, [N, K / v], are packed as AffineLayout packs codes of that width (tqk/layouts/packing.py),
so a b-bit code costs b bits; the table, [2**b] (vectors: [2**b, v]) in the model dtype, is the
weight's fourth tensor (QuantizedLinearWeight.table), and the kernels take it as their last argument.
Each program loads the whole table once into registers and decodes a plane of codes with one lookup
(tl.gather, tqk/kernels/decode.py: lookup; for vectors one per feature, lookup_feature). The kernel
reads, per block of a row:

    packed words (the bit planes of AffineLayout, e.g. 4 bits: word s = lanes s of planes 7..0)
      -> plane j's SPAN codes c (shift and mask; dense widths OR their slices together)
      -> table[c]                         (the program's register copy, loaded before the K loop)
      -> * x[k0 + j * SPAN + s], summed   (the block's or row's scale applied as for any format)

and for vectors the same codes, each decoded to its v features (K counted in codes, k0 and j too):

      -> table[c, t] for t = 0 .. v-1     (the register table's rows one after another: entry c * v + t)
      -> * x[(k0 + j * SPAN + s) * v + t], summed: plane j covers SPAN * v consecutive features

so a group (scale_block_size) must hold whole planes: a multiple of SPAN * v features.

A layout needs nothing more than this file: a WeightFormat naming its element ("lut"), bit width and
vector size, and examples() for the shared property tests (tests/layouts/test_layouts.py)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels.weight_only import WeightFormat
from .base import Layout, register_layout
from .packing import check_bits


@register_layout
@dataclass(frozen=True)
class CodebookLayout(Layout):
    """value = table[code] * scale[group, row]: `nbits`-bit codes, one table of 2**nbits entries of
    `vector_size` consecutive input features each."""

    nbits: int = 4
    vector_size: int = 1  # 1: scalar codes, the table [2**nbits] (as saved before vector codes existed)

    def __post_init__(self):
        check_bits(self.nbits)
        self.weight_format()  # vector_size in 1..8 and a group of whole planes (WeightFormat's checks)

    @property
    def table_entries(self) -> int:
        return 1 << self.nbits

    @property
    def table_shape(self) -> tuple:
        return (self.table_entries,) if self.vector_size == 1 else (self.table_entries, self.vector_size)

    def weight_format(self) -> WeightFormat:
        return WeightFormat(self.nbits, "lut", "none", 0, self.group_size, vector_size=self.vector_size)

    def check_table(self, table: torch.Tensor | None) -> None:
        """The table the kernels read: a contiguous tensor of shape table_shape."""
        if table is None or tuple(table.shape) != self.table_shape or not table.is_contiguous():
            got = "None" if table is None else f"{table.dtype} {tuple(table.shape)}"
            raise ValueError(f"{self}: the codebook table must be a contiguous tensor of shape "
                             f"{self.table_shape}, got {got}")

    @classmethod
    def examples(cls):
        # Few, for the interpreter's time (an example costs ~35 s of CI, a dense width ~100 s): 256
        # entries with group scales; 256 pairs with groups of two planes (the GEMV's per-group sums,
        # the GEMM's per-plane scales); 4-bit codes of 3 features per row (an odd vector, a table
        # tile past its entries). tests/layouts/test_codebook.py runs 4 bits per row, the dense widths
        # and every vector size on exact data, once per kernel.
        return [cls(nbits=8, group_size=32), cls(nbits=8, group_size=64, vector_size=2),
                cls(nbits=4, vector_size=3)]
