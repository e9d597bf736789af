"""fp8 codes (e4m3 or e5m2 bit patterns) with a float scale per row or group."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..kernels.weight_only import WeightFormat
from .base import Layout, register_layout

_ELEMENT = {torch.float8_e4m3fn: "e4m3", torch.float8_e5m2: "e5m2"}


@register_layout
@dataclass(frozen=True)
class Float8Layout(Layout):
    """value = fp8(code) * scale."""

    float8_dtype: torch.dtype = torch.float8_e4m3fn

    def __post_init__(self):
        if self.float8_dtype not in _ELEMENT:
            raise TypeError(f"Float8Layout takes {list(_ELEMENT)}, got {self.float8_dtype}")

    def weight_format(self) -> WeightFormat:
        return WeightFormat(8, _ELEMENT[self.float8_dtype], "none", 0, self.group_size)

    @classmethod
    def examples(cls):
        return [cls(), cls(float8_dtype=torch.float8_e5m2), cls(group_size=64)]
