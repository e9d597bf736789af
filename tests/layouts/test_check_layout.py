"""tqk.conformance.check_layout, the entry point for a layout written outside tqk: it passes a
correct toy layout defined here (3-bit codes around a constant zero point, one file's worth of
code and no decode helper of its own) and fails a broken one."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from tqk.conformance import check_layout
from tqk.kernels.weight_only import WeightFormat
from tqk.layouts import CodebookLayout, Layout


@dataclass(frozen=True)
class ToyUint3(Layout):
    """value = (code - 4) * scale, 3-bit codes: what a kernel developer adds (not registered here, so
    the shared tests of tests/layouts do not pick it up; register_layout would)."""

    def weight_format(self) -> WeightFormat:
        return WeightFormat(3, "uint", "offset", 4, self.group_size)


@dataclass(frozen=True)
class ToyUint3Reversed(ToyUint3):
    """Broken on purpose: packs the codes of each row in reverse order."""

    def pack(self, codes):
        return super().pack(codes.flip(1))


torch.serialization.add_safe_globals([ToyUint3, ToyUint3Reversed])  # what register_layout does


@pytest.mark.parametrize("group_size", [0, 32])
def test_check_layout_passes_a_correct_layout(group_size):
    check_layout(ToyUint3(group_size=group_size))


def test_check_layout_takes_vector_codes():
    """A layout whose codes stand for several input features (codes [N, K / v], a [2**bits, v] table):
    an odd v, per row."""
    check_layout(CodebookLayout(nbits=3, vector_size=5))


def test_check_layout_fails_a_broken_layout():
    with pytest.raises(AssertionError, match="unpack"):
        check_layout(ToyUint3Reversed(group_size=32))
