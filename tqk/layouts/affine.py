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
    the zero point is that constant and is not stored."""

    nbits: int = 4
    symmetric: bool = False
    span: int = 16  # packed words per block (tqk/layouts/packing.py)

    def weight_format(self) -> WeightFormat:
        if self.symmetric:
            return WeightFormat(self.nbits, "uint", "offset", 1 << (self.nbits - 1), self.group_size, self.span)
        return WeightFormat(self.nbits, "uint", "tensor", 0, self.group_size, self.span)

    @classmethod
    def examples(cls):
        return [cls(group_size=32, nbits=4), cls(group_size=128, nbits=4), cls(group_size=0, nbits=8, symmetric=True),
                cls(group_size=64, nbits=8, symmetric=True), cls(group_size=32, nbits=2), cls(group_size=0, nbits=4)]
