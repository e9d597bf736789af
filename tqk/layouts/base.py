"""A layout: how a quantized weight is stored for its kernel, and how to read it back.

Every layout here stores three tensors, in the order the weight-only kernel reads them:
    packed  int32 [N, W]         codes, bit-plane packed along K (tqk/layouts/packing.py)
    scales  [n_groups, N]         one scale per group of K and output row, in the model dtype
    zeros   [n_groups, N] | None  float zero points, when the format has them per group
and a codebook layout (CodebookLayout) a fourth:
    table   [2**bits] | None      the codebook's entries, in the model dtype ([2**bits, v] for codes of
                                  v input features each: packed then holds [N, K / v] codes)
A subclass says which kernel format it is (bits, element decode, zero point mode, group size):
that is all the kernels and the reference dequantizer need. Layouts are frozen dataclasses, so
one is hashable and goes into a compiled graph as a constant.

A QuantizedLinear (tqk/linear.py) keeps these tensors as segments of one int32 buffer
(tqk/layouts/storage.py), and stored_call says how the layout's kernel reads them there: a new
weight-only layout inherits it, a new kernel family writes its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..kernels import reference
from ..kernels.weight_only import WeightFormat, split_counters
from .packing import pack_planes, unpack_planes

LAYOUTS: dict[str, type["Layout"]] = {}


def register_layout(cls):
    """Class decorator: adds a layout to LAYOUTS, which the shared property tests iterate, and
    allow-lists it for torch.load(weights_only=True), which rebuilds a saved weight's layout."""
    LAYOUTS[cls.__name__] = cls
    torch.serialization.add_safe_globals([cls])
    return cls


@dataclass(frozen=True)
class Layout:
    group_size: int = 0  # 0: one scale per output row
    # Which kernel family and shared property tests take it: "weight_only" (bit-plane packed, decoded
    # in the weight-only kernels, tests/layouts/test_layouts.py) or "scaled" (8-bit activations,
    # tests/layouts/test_scaled_layouts.py).
    family: ClassVar[str] = "weight_only"

    # --- what a subclass defines -------------------------------------------------------
    def weight_format(self) -> WeightFormat:
        raise NotImplementedError

    @classmethod
    def examples(cls) -> list["Layout"]:
        """Instances the shared property tests run."""
        return [cls()]

    # --- shared by all ---------------------------------------------------------------
    def n_groups(self, in_features: int) -> int:
        return 1 if self.group_size == 0 else in_features // self.group_size

    def k_multiple(self) -> int:
        """What in_features must be a multiple of: the group, else a code's input features."""
        return self.group_size or self.weight_format().vector_size

    def pack(self, codes: torch.Tensor) -> torch.Tensor:
        """uint8 codes [N, K / vector_size] -> packed words (tqk/layouts/packing.py)."""
        fmt = self.weight_format()
        return pack_planes(codes, fmt.bits, fmt.span)

    def unpack(self, packed: torch.Tensor, in_features: int) -> torch.Tensor:
        """The codes [N, in_features / vector_size] of packed words."""
        fmt = self.weight_format()
        return unpack_planes(packed, fmt.bits, fmt.span, in_features // fmt.vector_size)

    def dequantize(self, packed, scales, zeros, in_features: int, dtype: torch.dtype, table=None) -> torch.Tensor:
        """The float weight [N, K]: (decode(code) - zero) * scale, rounded once to `dtype`."""
        return reference.dequantize(packed, scales, zeros, self.weight_format(), in_features, dtype, table)

    def split_counters(self, out_features: int, in_features: int, device) -> torch.Tensor | None:
        """Zeroed int32 counters for this layer's split-K calls (one buffer shared per device), or None."""
        return split_counters(self.weight_format(), out_features, in_features, device)

    def check_table(self, table) -> None:
        """Only codebook layouts have a table (CodebookLayout.check_table)."""
        if table is not None:
            raise ValueError(f"{self} takes no codebook table")

    def linear(self, x, packed, scales, zeros, bias, counters, *, dtype, out_features, in_features, table=None):
        """x @ dequantize(W).T + bias through this layout's op (checked inputs)."""
        from .. import ops

        self.check_table(table)
        return ops.quantized_linear(x, packed, scales, zeros, bias, counters, self.weight_format(), dtype=dtype,
                                    out_features=out_features, in_features=in_features, table=table)

    def stored_call(self, storage, *, dtype, out_features, in_features) -> tuple:
        """How a QuantizedLinear runs this layout on its one buffer (tqk/layouts/storage.py): (name of the
        tqk.ops function, its arguments after (x, data, bias, counters)), all plain constants. The
        weight-only kernels take the buffer itself and the offsets in it."""
        fmt = self.weight_format()
        from ..ops import check_packed_words

        check_packed_words(dict(storage.segments)["packed"].shape, fmt, in_features)
        return "stored_linear", (dtype, out_features, in_features, fmt.bits, fmt.element, fmt.zero_mode,
                                 fmt.zero_offset, fmt.group_size, fmt.span, fmt.scale_fmt, fmt.vector_size,
                                 tuple(storage.kernel_args()))
