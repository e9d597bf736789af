"""Weight-only configs of any width (issue 12): integers of 1-8 bits (torchao's UIntx / Intx names),
small floats of any sign + ebits + mbits, and codebooks (torchao's CodebookWeightOnlyConfig)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..kernels.weight_only import MAX_VECTOR
from ..layouts import AffineLayout, CodebookLayout, FpxLayout
from ..quant import MappingType, PerAxis, PerGroup, PerRow, choose_qparams_affine, quantize_affine
from ..quant.affine import choose_qparams_affine_clipped
from ..quant.codebook import quantize_codebook
from ..quant.fpx import check_fpx, fpx_max, quantize_fpx
from ..tensor import QuantizedLinearWeight
from .base import CannotQuantize, QuantConfig, check_group_size, register_handler
from .weight_only import SPAN, Float8WeightOnlyConfig, _float8


@dataclass(frozen=True)
class FPXWeightOnlyConfig(QuantConfig):
    """Small-float weights, 1 + ebits + mbits <= 8 bits (fp6 e3m2 / e2m3, fp5 e2m2, fp4 e2m1, ...): no
    inf or NaN codes, round to nearest even, saturating; one scale per row, or per group of
    `group_size` input features. (4, 3) and (5, 2) are torch's float8 formats: they run as
    Float8WeightOnlyConfig (whose e4m3 keeps torch's NaN code, so its largest value is 448)."""

    ebits: int = 3
    mbits: int = 2
    group_size: int | None = None

    def __post_init__(self):
        check_fpx(self.ebits, self.mbits)
        if self.group_size is not None and (self.group_size <= 0 or self.group_size % SPAN):
            raise ValueError(f"FPXWeightOnlyConfig: group_size={self.group_size} must be a positive multiple of {SPAN}")


@register_handler(FPXWeightOnlyConfig)
def _fpx(weight: torch.Tensor, config: FPXWeightOnlyConfig) -> QuantizedLinearWeight:
    granularity = PerRow() if config.group_size is None else PerGroup(config.group_size)
    fp8 = {(4, 3): torch.float8_e4m3fn, (5, 2): torch.float8_e5m2}.get((config.ebits, config.mbits))
    if fp8 is not None:
        return _float8(weight, Float8WeightOnlyConfig(weight_dtype=fp8, granularity=granularity))
    n, k = weight.shape
    group = config.group_size or k
    check_group_size(group, k)
    wg = weight.double().view(n, k // group, group)
    tiny = torch.finfo(weight.dtype).tiny
    scale = (wg.abs().amax(-1) / fpx_max(config.ebits, config.mbits)).clamp_min(tiny).to(weight.dtype)
    if not bool(torch.isfinite(scale).all()):
        raise CannotQuantize(f"a scale does not fit {weight.dtype} (weight magnitudes out of range)")
    codes = quantize_fpx(wg / scale.double()[..., None], config.ebits, config.mbits).view(n, k)
    layout = FpxLayout(group_size=config.group_size or 0, ebits=config.ebits, mbits=config.mbits)
    return QuantizedLinearWeight(layout.pack(codes), scale.t().contiguous(), None, layout, (n, k), weight.dtype)


# --- integers of any width 1..8 (AffineLayout: 3-bit codes take 4-bit slots, 5-7 take 8) -----------
_UINT = {**{getattr(torch, f"uint{b}"): b for b in range(1, 8)}, torch.uint8: 8}
_INT = {**{getattr(torch, f"int{b}"): b for b in range(1, 8)}, torch.int8: 8}
HQQ_BITS = (1, 2, 3, 4, 8)  # the widths the hqq package's optimizer takes


def _check_bits(bits, what: str):
    if not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"{what}: bit width {bits} is outside 1-8")


def _check_group(group_size, what: str):
    if not isinstance(group_size, int) or group_size <= 0 or group_size % SPAN:
        raise ValueError(f"{what}: group_size={group_size} must be a positive multiple of {SPAN}")


@dataclass(frozen=True)
class UIntxWeightOnlyConfig(QuantConfig):
    """Unsigned `bit_width`-bit codes (1-8), a scale and a float zero point per group (min/max,
    round to nearest: at most half a step per element); `use_hqq=True` picks them with HQQ."""

    bit_width: int = 4
    group_size: int = 128
    use_hqq: bool = False

    def __post_init__(self):
        _check_bits(self.bit_width, type(self).__name__)
        _check_group(self.group_size, type(self).__name__)
        if self.use_hqq and self.bit_width not in HQQ_BITS:
            raise ValueError(f"{type(self).__name__}: use_hqq takes bit widths {HQQ_BITS}, got {self.bit_width}")


@dataclass(frozen=True)
class UIntXWeightOnlyConfig(QuantConfig):
    """torchao's older spelling: UIntXWeightOnlyConfig(dtype=torch.uint3, group_size=64)."""

    dtype: torch.dtype = torch.uint4
    group_size: int = 64
    use_hqq: bool = False

    def __post_init__(self):
        if self.dtype not in _UINT:
            raise ValueError(f"UIntXWeightOnlyConfig: dtype {self.dtype} is not torch.uint1 ... torch.uint8")
        _check_group(self.group_size, type(self).__name__)

    def uintx(self) -> UIntxWeightOnlyConfig:
        return UIntxWeightOnlyConfig(_UINT[self.dtype], self.group_size, self.use_hqq)


@dataclass(frozen=True)
class IntxWeightOnlyConfig(QuantConfig):
    """Signed `weight_dtype` (torch.int1 ... torch.int8) codes, per group (PerGroup(n)) or per row
    (PerAxis(0)); SYMMETRIC (zero point 2**(bits-1), not stored) or ASYMMETRIC (a zero point per group)."""

    weight_dtype: torch.dtype = torch.int8
    granularity: object = field(default_factory=lambda: PerGroup(32))
    mapping_type: MappingType = MappingType.SYMMETRIC

    def __post_init__(self):
        name = type(self).__name__
        if self.weight_dtype not in _INT:
            raise ValueError(f"{name}: weight_dtype {self.weight_dtype} is not torch.int1 ... torch.int8")
        if isinstance(self.granularity, PerGroup):
            _check_group(self.granularity.group_size, name)
        elif not (isinstance(self.granularity, PerAxis) and self.granularity.axis == 0):
            raise ValueError(f"{name}: granularity {self.granularity} is not supported; use PerGroup(n) or PerAxis(0)")
        if self.mapping_type not in (MappingType.SYMMETRIC, MappingType.ASYMMETRIC):
            raise ValueError(f"{name}: mapping_type must be SYMMETRIC or ASYMMETRIC, got {self.mapping_type}")


def _asymmetric(weight, bits: int, group: int, use_hqq: bool = False, per_row: bool = False) -> QuantizedLinearWeight:
    n, k = weight.shape
    check_group_size(group, k)
    if use_hqq:
        from ..quant.hqq import choose_qparams_hqq

        codes, scale, zero = choose_qparams_hqq(weight, nbits=bits, group_size=group)
    else:
        dtype = torch.uint8 if bits == 8 else getattr(torch, f"uint{bits}")
        scale, zero = choose_qparams_affine_clipped(weight, (1, group), dtype, shrinks=(1.0,), scale_dtype=weight.dtype)
        codes = quantize_affine(weight, (1, group), scale, zero, dtype)
    layout = AffineLayout(group_size=0 if per_row else group, nbits=bits)
    scale, zero = (t.to(weight.dtype).reshape(n, -1).t().contiguous() for t in (scale, zero))
    return QuantizedLinearWeight(layout.pack(codes.to(torch.uint8)), scale, zero, layout, (n, k), weight.dtype)


@register_handler(UIntxWeightOnlyConfig)
def _uintx(weight, config: UIntxWeightOnlyConfig) -> QuantizedLinearWeight:
    return _asymmetric(weight, config.bit_width, config.group_size, config.use_hqq)


@register_handler(UIntXWeightOnlyConfig)
def _uintx_old(weight, config: UIntXWeightOnlyConfig) -> QuantizedLinearWeight:
    return _uintx(weight, config.uintx())


@register_handler(IntxWeightOnlyConfig)
def _intx(weight, config: IntxWeightOnlyConfig) -> QuantizedLinearWeight:
    n, k = weight.shape
    bits = _INT[config.weight_dtype]
    per_row = not isinstance(config.granularity, PerGroup)
    group = k if per_row else config.granularity.group_size
    if config.mapping_type == MappingType.ASYMMETRIC:
        return _asymmetric(weight, bits, group, per_row=per_row)
    check_group_size(group, k)
    target = torch.int8 if bits == 8 else getattr(torch, f"int{bits}")
    scale, _ = choose_qparams_affine(weight, MappingType.SYMMETRIC, (1, group), target,
                                     eps=torch.finfo(torch.float32).eps, scale_dtype=weight.dtype)
    q = quantize_affine(weight, (1, group), scale, None, target)
    codes = (q.to(torch.int16) + (1 << (bits - 1))).to(torch.uint8)  # offset binary
    layout = AffineLayout(group_size=0 if per_row else group, nbits=bits, symmetric=True)
    scale = scale.to(weight.dtype).reshape(n, -1).t().contiguous()
    return QuantizedLinearWeight(layout.pack(codes), scale, None, layout, (n, k), weight.dtype)


# --- codebooks: b-bit codes into a k-means table of 2**b entries (CodebookLayout) -------------------


@dataclass(frozen=True)
class CodebookWeightOnlyConfig(QuantConfig):
    """torchao's CodebookWeightOnlyConfig: `dtype` torch.uint1 ... torch.uint8 codes into one table of
    2**bits entries per tensor, fitted by k-means (tqk/quant/codebook.py); value = table[code] * scale,
    one scale (the block's root mean square) per row, or per `scale_block_size` input features.
    `block_size` is (1, v): each code stands for v consecutive weights of a row (v = 1..8), its entry
    v floats, so a code costs bits / v per weight; scale_block_size is then a multiple of 16 * v (a
    plane of 16 codes). A layer whose in_features is not a multiple of v stays float (reported)."""

    dtype: torch.dtype = torch.uint4
    block_size: tuple = (1, 1)
    scale_block_size: int | None = None

    def __post_init__(self):
        name = type(self).__name__
        if self.dtype not in _UINT:
            raise ValueError(f"{name}: dtype {self.dtype} is not torch.uint1 ... torch.uint8 (tables of 2 to 256 "
                             f"entries)")
        block = tuple(self.block_size) if isinstance(self.block_size, (tuple, list)) else ()
        if len(block) != 2 or block[0] != 1 or not isinstance(block[1], int) or not 1 <= block[1] <= MAX_VECTOR:
            raise ValueError(f"{name}: block_size={self.block_size} must be (1, v) with v in 1..{MAX_VECTOR} "
                             f"(v consecutive input features per code)")
        object.__setattr__(self, "block_size", block)  # a list becomes a tuple: the config stays hashable
        sb, plane = self.scale_block_size, SPAN * block[1]
        if sb is not None and (not isinstance(sb, int) or sb <= 0 or sb % plane):
            raise ValueError(f"{name}: scale_block_size={sb} must be None (a scale per row) or a positive "
                             f"multiple of {plane} (16 codes of block_size={block})")

    @property
    def bits(self) -> int:
        return _UINT[self.dtype]


@register_handler(CodebookWeightOnlyConfig)
def _codebook(weight: torch.Tensor, config: CodebookWeightOnlyConfig) -> QuantizedLinearWeight:
    n, k = weight.shape
    if k % config.block_size[1]:
        raise CannotQuantize(f"block_size={config.block_size}: {config.block_size[1]} does not divide "
                             f"in_features={k}")
    group = config.scale_block_size or k
    if k % group:
        raise CannotQuantize(f"scale_block_size={group} does not divide in_features={k}")
    group = 0 if group == k else group  # one block per row: the per-row layout
    codes, table, scales = quantize_codebook(weight, config.bits, group, config.block_size[1])
    layout = CodebookLayout(group_size=group, nbits=config.bits, vector_size=config.block_size[1])
    return QuantizedLinearWeight(layout.pack(codes), scales.t().contiguous(), None, layout, (n, k), weight.dtype, table)
