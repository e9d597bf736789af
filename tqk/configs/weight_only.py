"""Weight-only configs: torchao's names and defaults; activations stay bf16/fp16."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..layouts import AffineLayout, Float8Layout
from ..quant import (FLOAT8_DTYPES, Granularity, MappingType, PerGroup, PerRow, PerTensor, choose_qparams_affine,
                     choose_scale_float8, quantize_affine, quantize_float8)
from ..quant.affine import choose_qparams_affine_clipped
from ..tensor import QuantizedLinearWeight
from .base import CannotQuantize, QuantConfig, check_group_size, register_handler

INT4_GROUP_SIZES = (32, 64, 128, 256)
SPAN = 16  # group sizes must be multiples of the packed block span


def _group_and_block(weight: torch.Tensor, granularity: Granularity) -> tuple[int, tuple[int, int]]:
    """The layout's group_size (0 = per row) for a granularity over the in_features axis, and
    the block_size the quantization primitives take for it."""
    if isinstance(granularity, PerTensor):
        return 0, tuple(weight.shape)
    if isinstance(granularity, PerRow):
        return 0, (1, weight.shape[1])
    if isinstance(granularity, PerGroup):
        check_group_size(granularity.group_size, weight.shape[1])
        return granularity.group_size, (1, granularity.group_size)
    raise ValueError(f"granularity {granularity} is not supported here; use PerRow(), PerTensor() or PerGroup(n)")


def _check_granularity(granularity):
    if isinstance(granularity, PerGroup) and (granularity.group_size <= 0 or granularity.group_size % SPAN):
        raise ValueError(f"PerGroup({granularity.group_size}) is not supported: group sizes must be positive "
                         f"multiples of {SPAN}")
    if not isinstance(granularity, (PerRow, PerTensor, PerGroup)):
        raise ValueError(f"granularity {granularity} is not supported; use PerRow(), PerTensor() or PerGroup(n)")


def _per_row_layout(scales: torch.Tensor, weight: torch.Tensor, granularity) -> torch.Tensor:
    """Scales as [n_groups, N]; a per-tensor scale is repeated for every row."""
    if isinstance(granularity, PerTensor):
        return scales.reshape(1, 1).expand(1, weight.shape[0]).contiguous()
    return scales.reshape(weight.shape[0], -1).t().contiguous()


@dataclass(frozen=True)
class Int4WeightOnlyConfig(QuantConfig):
    """Asymmetric uint4 with a scale and a zero point per group of `group_size` input features.
    `use_hqq=True` picks them with HQQ's half-quadratic optimizer (needs the `hqq` package)."""

    group_size: int = 128
    use_hqq: bool = False

    def __post_init__(self):
        if self.group_size not in INT4_GROUP_SIZES:
            raise ValueError(f"Int4WeightOnlyConfig: group_size={self.group_size} is not supported; "
                             f"choose one of {INT4_GROUP_SIZES}")


@register_handler(Int4WeightOnlyConfig)
def _int4(weight: torch.Tensor, config: Int4WeightOnlyConfig) -> QuantizedLinearWeight:
    n, k = weight.shape
    check_group_size(config.group_size, k)
    if config.use_hqq:
        from ..quant.hqq import choose_qparams_hqq

        codes, scale, zero = choose_qparams_hqq(weight, nbits=4, group_size=config.group_size)
        zero = zero.to(weight.dtype)
    else:
        # Each group's own range (0.0 need not be exact, as in torchao's int4), float zero point,
        # the range clipped where that lowers the group's error; codes are chosen with the scale
        # and zero point as stored (rounded to the dtype).
        block = (1, config.group_size)
        scale, zero = choose_qparams_affine_clipped(weight, block, torch.uint4, scale_dtype=weight.dtype)
        codes = quantize_affine(weight, block, scale, zero, torch.uint4)
    layout = AffineLayout(group_size=config.group_size, nbits=4)
    # qparams come back [N, K // group] (or [N] when one group spans K); the kernels want [groups, N]
    scale, zero = (t.to(weight.dtype).reshape(n, -1).t().contiguous() for t in (scale, zero))
    return QuantizedLinearWeight(layout.pack(codes.to(torch.uint8)), scale, zero, layout, (n, k), weight.dtype)


@dataclass(frozen=True)
class Int8WeightOnlyConfig(QuantConfig):
    """Symmetric int8, one scale per output row (PerRow) or per group of input features."""

    granularity: Granularity = field(default_factory=PerRow)
    group_size: int | None = None  # torchao's older spelling of PerGroup(group_size)

    def __post_init__(self):
        if self.group_size is not None:
            object.__setattr__(self, "granularity", PerGroup(self.group_size))
        _check_granularity(self.granularity)


@register_handler(Int8WeightOnlyConfig)
def _int8(weight: torch.Tensor, config: Int8WeightOnlyConfig) -> QuantizedLinearWeight:
    n, k = weight.shape
    group, block = _group_and_block(weight, config.granularity)
    scale, _ = choose_qparams_affine(weight, MappingType.SYMMETRIC, block, torch.int8,
                                     eps=torch.finfo(torch.float32).eps, scale_dtype=weight.dtype)
    q = quantize_affine(weight, block, scale, None, torch.int8)
    codes = (q.to(torch.int16) + 128).to(torch.uint8)  # offset binary: the kernel subtracts 128
    layout = AffineLayout(group_size=group, nbits=8, symmetric=True)
    return QuantizedLinearWeight(layout.pack(codes), _per_row_layout(scale, weight, config.granularity), None,
                                 layout, (n, k), weight.dtype)


@dataclass(frozen=True)
class Float8WeightOnlyConfig(QuantConfig):
    """fp8 weights (e4m3 by default, e5m2 accepted) with a float scale per row or group."""

    weight_dtype: torch.dtype = torch.float8_e4m3fn
    granularity: Granularity = field(default_factory=PerRow)

    def __post_init__(self):
        if self.weight_dtype not in FLOAT8_DTYPES:
            raise TypeError(f"Float8WeightOnlyConfig: weight_dtype must be one of {FLOAT8_DTYPES}, "
                            f"got {self.weight_dtype}")
        _check_granularity(self.granularity)


@register_handler(Float8WeightOnlyConfig)
def _float8(weight: torch.Tensor, config: Float8WeightOnlyConfig) -> QuantizedLinearWeight:
    n, k = weight.shape
    group, block = _group_and_block(weight, config.granularity)
    # clamp to the dtype's smallest normal: an all-zero row's scale must not underflow to 0 in fp16
    scale = choose_scale_float8(weight, block, config.weight_dtype).clamp_min(torch.finfo(weight.dtype).tiny)
    scale = scale.to(weight.dtype)
    codes = quantize_float8(weight, block, scale, config.weight_dtype).view(torch.uint8)
    layout = Float8Layout(group_size=group, float8_dtype=config.weight_dtype)
    if not bool(torch.isfinite(scale).all()):
        raise CannotQuantize(f"a scale does not fit {weight.dtype} (weight magnitudes out of range)")
    return QuantizedLinearWeight(layout.pack(codes), _per_row_layout(scale, weight, config.granularity), None,
                                 layout, (n, k), weight.dtype)
