"""Block-scaled floats (tqk/quant/mx.py): OCP MX (MXFP8, MXFP6, MXFP4) and NVFP4, decoded in the
weight-only kernels like any small float, with their scales kept as bytes:

    MXLayout      value = element(code) * 2**(scale - 127)          scales uint8 [K // 32, N], E8M0
    NVFP4Layout   value = e2m1(code) * e4m3(scale) * tensor_scale  scales uint8 [K // 16, N], e4m3 bits;
                                                                    zeros: the float32 [1] tensor scale

The codes are packed as any code of their width (tqk/layouts/packing.py): 8-bit e4m3 / e5m2 one
byte per field of a word, 6-bit e3m2 / e2m3 densely (24 words per 128 codes), 4-bit e2m1 8 per
word. So MXFP4 costs 4 + 8/32 = 4.25 bits per weight, NVFP4 4 + 8/16 = 4.5 (and 4 bytes per tensor),
MXFP6 6.25, MXFP8 8.25. A group of 32 or 16 is a plane or two of a packed block (block_k 64 or 128):
the kernels apply such a group's scale per plane.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..kernels.weight_only import WeightFormat
from ..quant.mx import MX_BLOCK_SIZE, MX_ELEMENTS, NVFP4_BLOCK_SIZE, check_element, element_bits
from .base import Layout, register_layout

# the kernels' element decode (tqk/kernels/decode.py) of each MX element
KERNEL_ELEMENT = {"e4m3": "e4m3", "e5m2": "e5m2", "e3m2": "fpx32", "e2m3": "fpx23", "e2m1": "fpx21"}
assert set(KERNEL_ELEMENT) == set(MX_ELEMENTS)


def _check_group(group_size: int, name: str):
    if not isinstance(group_size, int) or group_size <= 0 or group_size % 16:
        raise ValueError(f"{name}: group_size={group_size} must be a positive multiple of 16 (a packed plane)")


@register_layout
@dataclass(frozen=True)
class MXLayout(Layout):
    """OCP MX: `element` codes ("e4m3", "e5m2", "e3m2", "e2m3", "e2m1") with one E8M0 scale byte per
    `group_size` codes along K (the spec's 32; the kernels take any multiple of 16)."""

    group_size: int = MX_BLOCK_SIZE
    element: str = "e2m1"

    def __post_init__(self):
        check_element(self.element)
        _check_group(self.group_size, type(self).__name__)

    def weight_format(self) -> WeightFormat:
        return WeightFormat(element_bits(self.element), KERNEL_ELEMENT[self.element], "none", 0, self.group_size,
                            scale_fmt="e8m0")

    @classmethod
    def examples(cls):
        # MXFP4 only: the shared property tests cost ~1 min per example under the interpreter. The other
        # elements differ in their packing and decode only, which the float layouts' examples cover; each
        # MX element still runs both kernels on exact data in tests/layouts/test_mx_layouts.py.
        return [cls()]


@register_layout
@dataclass(frozen=True)
class NVFP4Layout(Layout):
    """NVFP4: e2m1 codes, an e4m3 scale byte per 16 codes along K, and a float32 tensor scale (held
    where zero points would be: NVFP4 has none), applied once to each output."""

    group_size: int = NVFP4_BLOCK_SIZE

    def __post_init__(self):
        _check_group(self.group_size, type(self).__name__)

    def weight_format(self) -> WeightFormat:
        return WeightFormat(4, "fpx21", "none", 0, self.group_size, scale_fmt="e4m3")

    @classmethod
    def examples(cls):
        return [cls()]
