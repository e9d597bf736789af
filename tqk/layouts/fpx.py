"""Small floats (fp6 e3m2 / e2m3, fp5 e2m2, fp4 e2m1, ...) with a float scale per row or group:
value = fpx(code) * scale, decoded by tqk/kernels/decode.py's decode_fpx (formula: tqk/quant/fpx.py).
The weight-only kernels read them like any other code: the bit-plane words of packing.py, a b-bit
code in b bits.

A layout needs nothing more than this file: a WeightFormat naming its element ("fpx<e><m>") and
bit width, and examples() for the shared property tests (tests/layouts/test_layouts.py)."""
from __future__ import annotations

from dataclasses import dataclass

from ..kernels.weight_only import WeightFormat
from ..quant.fpx import check_fpx
from .base import Layout, register_layout


@register_layout
@dataclass(frozen=True)
class FpxLayout(Layout):
    """value = fpx(code) * scale, 1 + ebits + mbits bits per code, packed as AffineLayout packs codes of
    that width (its docstring draws the words): fp6 (e3m2, e2m3) is the slices 4 + 2, 24 words per 128
    codes, fp5 (e2m2) 4 + 1, 20 words; the sign is the code's top bit."""

    ebits: int = 3
    mbits: int = 2

    def __post_init__(self):
        check_fpx(self.ebits, self.mbits)

    def weight_format(self) -> WeightFormat:
        return WeightFormat(1 + self.ebits + self.mbits, f"fpx{self.ebits}{self.mbits}", "none", 0, self.group_size)

    @classmethod
    def examples(cls):
        # three formats keep the interpreter's time down: tests/quant/test_fpx.py decodes every code of
        # every format through the kernels' decode_codes. fp6 and fp5 are the dense widths 4 + 2 and 4 + 1.
        return [cls(), cls(ebits=2, mbits=2, group_size=64), cls(ebits=2, mbits=1, group_size=32)]
