"""Activation-quantized configs: torchao's names, arguments and defaults. Weights and activations are
both 8-bit (or 4-bit weights decoded to 8 bits), multiplied on the 8-bit tensor cores by
tqk/kernels/scaled_mm.py; the activation is quantized inside the op at run time (or with a given
static scale). Each config picks a ScaledLayout, which quantizes and stores the weight.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..layouts.scaled import BLOCK, ScaledLayout
from ..quant import Granularity, MappingType, PerBlock, PerGroup, PerRow, PerTensor
from ..tensor import QuantizedLinearWeight
from .base import CannotQuantize, QuantConfig, register_handler

FP8_GRANULARITIES = ("PerTensor()", "PerRow()", "[PerTensor(), PerTensor()]", "[PerRow(), PerRow()]",
                     "[PerBlock((1, 128)), PerBlock((128, 128))]")
W4A8_GROUP_SIZES = (64, 128, 256)  # half a group is one 8-bit dot's K, which must be >= 32


def _fp8_pair(granularity) -> tuple[str, str]:
    """torchao's float8 granularity (one, or [activation, weight]) -> (activation, weight) names."""
    if granularity is None:
        granularity = PerTensor()
    pair = tuple(granularity) if isinstance(granularity, (list, tuple)) else (granularity, granularity)
    if len(pair) == 2:
        a, w = pair
        if isinstance(a, PerTensor) and isinstance(w, PerTensor):
            return "tensor", "tensor"
        if isinstance(a, PerRow) and isinstance(w, PerRow):
            return "row", "row"
        if (isinstance(a, PerBlock) and isinstance(w, PerBlock) and tuple(a.block) == (1, BLOCK)
                and tuple(w.block) == (BLOCK, BLOCK)):
            return "block", "block"
    raise ValueError(f"float8 granularity {granularity} is not supported; supported: {', '.join(FP8_GRANULARITIES)}")


def _check_fp8_device(weight: torch.Tensor):
    """fp8 tensor cores need compute capability 8.9 (Ada) or newer: refuse at quantize time."""
    if weight.device.type == "cuda":
        cap = torch.cuda.get_device_capability(weight.device)
        if cap < (8, 9):
            raise ValueError(f"float8 activations need a GPU of compute capability 8.9 or newer; "
                             f"{torch.cuda.get_device_name(weight.device)} is {cap[0]}.{cap[1]}")


def _check_symmetric(mapping, what: str):
    if mapping != MappingType.SYMMETRIC:
        raise ValueError(f"{what}: only MappingType.SYMMETRIC activations are supported, got {mapping}")


def _quantize(weight: torch.Tensor, layout: ScaledLayout) -> QuantizedLinearWeight:
    if weight.shape[1] % layout.k_multiple():
        raise CannotQuantize(f"in_features={weight.shape[1]} is not a multiple of {layout.k_multiple()}, "
                             f"which {layout.weight_granularity} scales of this config need")
    packed, scales, zeros = layout.quantize(weight)
    if not bool(torch.isfinite(scales).all()):
        raise CannotQuantize(f"a scale does not fit {weight.dtype} (weight magnitudes out of range)")
    return QuantizedLinearWeight(packed, scales, zeros, layout, tuple(weight.shape), weight.dtype)


def _static_scale(scale, what: str) -> float:
    s = None
    if isinstance(scale, (int, float, torch.Tensor)) and torch.as_tensor(scale).numel() == 1:
        s = float(torch.as_tensor(scale, dtype=torch.float64).reshape(-1)[0])
    if s is None or not (s > 0 and s < float("inf")):
        raise ValueError(f"{what}: the static activation scale must be one positive finite number, got {scale}")
    return s


# --- int8 x int8 ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Int8DynamicActivationInt8WeightConfig(QuantConfig):
    """int8 weights (symmetric, per row or per tensor) times int8 activations quantized per row (per
    token; per tensor with PerTensor()) at run time; int32 accumulation."""

    act_mapping_type: MappingType = MappingType.SYMMETRIC
    granularity: Granularity = field(default_factory=PerRow)

    def __post_init__(self):
        _check_symmetric(self.act_mapping_type, type(self).__name__)
        if not isinstance(self.granularity, (PerRow, PerTensor)):
            raise ValueError(f"{type(self).__name__}: granularity {self.granularity} is not supported; "
                             f"use PerRow() or PerTensor()")

    def layout(self) -> ScaledLayout:
        g = "row" if isinstance(self.granularity, PerRow) else "tensor"
        return ScaledLayout(act="int8", weight="int8", act_granularity=g, weight_granularity=g)


@dataclass(frozen=True)
class Int8StaticActivationInt8WeightConfig(QuantConfig):
    """The int8 x int8 kernel with a given activation scale (calibrated offline)."""

    act_quant_scale: object = None
    granularity: Granularity = field(default_factory=PerRow)
    act_mapping_type: MappingType = MappingType.SYMMETRIC

    def __post_init__(self):
        _check_symmetric(self.act_mapping_type, type(self).__name__)
        if not isinstance(self.granularity, (PerRow, PerTensor)):
            raise ValueError(f"{type(self).__name__}: granularity {self.granularity} is not supported; "
                             f"use PerRow() or PerTensor()")
        _static_scale(self.act_quant_scale, type(self).__name__)

    def layout(self) -> ScaledLayout:
        return ScaledLayout(act="int8", weight="int8", act_granularity="static",
                            weight_granularity="row" if isinstance(self.granularity, PerRow) else "tensor",
                            static_scale=_static_scale(self.act_quant_scale, type(self).__name__))


# --- fp8 x fp8 -----------------------------------------------------------------------------------
def _check_fp8_dtypes(config):
    for name in ("activation_dtype", "weight_dtype"):
        if getattr(config, name) != torch.float8_e4m3fn:
            raise TypeError(f"{type(config).__name__}: {name} must be torch.float8_e4m3fn (the e4m3 x e4m3 "
                            f"tensor-core GEMM), got {getattr(config, name)}")


@dataclass(frozen=True)
class Float8DynamicActivationFloat8WeightConfig(QuantConfig):
    """e4m3 weights times e4m3 activations quantized at run time: per tensor (the default), per row,
    or activations per 1x128 and weights per 128x128 block (DeepSeek-V3)."""

    activation_dtype: torch.dtype = torch.float8_e4m3fn
    weight_dtype: torch.dtype = torch.float8_e4m3fn
    granularity: object = None

    def __post_init__(self):
        _check_fp8_dtypes(self)
        _fp8_pair(self.granularity)

    def layout(self) -> ScaledLayout:
        a, w = _fp8_pair(self.granularity)
        return ScaledLayout(act="e4m3", weight="e4m3", act_granularity=a, weight_granularity=w)


@dataclass(frozen=True)
class Float8StaticActivationFloat8WeightConfig(QuantConfig):
    """The e4m3 x e4m3 kernel with a given activation scale; weights per tensor or per row."""

    scale: object = None
    activation_dtype: torch.dtype = torch.float8_e4m3fn
    weight_dtype: torch.dtype = torch.float8_e4m3fn
    granularity: object = None

    def __post_init__(self):
        _check_fp8_dtypes(self)
        if _fp8_pair(self.granularity)[1] == "block":
            raise ValueError(f"{type(self).__name__}: a static scale takes PerTensor() or PerRow() weights")
        _static_scale(self.scale, type(self).__name__)

    def layout(self) -> ScaledLayout:
        return ScaledLayout(act="e4m3", weight="e4m3", act_granularity="static",
                            weight_granularity=_fp8_pair(self.granularity)[1],
                            static_scale=_static_scale(self.scale, type(self).__name__))


# --- W4A8 ----------------------------------------------------------------------------------------
def _check_w4a8_group(group_size: int, what: str):
    if group_size not in W4A8_GROUP_SIZES:
        raise ValueError(f"{what}: group_size={group_size} is not supported; choose one of {W4A8_GROUP_SIZES}")


@dataclass(frozen=True)
class Float8DynamicActivationInt4WeightConfig(QuantConfig):
    """4-bit weights (a scale and an integer zero point per group) decoded to e4m3 in registers,
    times e4m3 activations quantized per row at run time (ScaledLayout says why it is exact)."""

    group_size: int = 128

    def __post_init__(self):
        _check_w4a8_group(self.group_size, type(self).__name__)

    def layout(self) -> ScaledLayout:
        return ScaledLayout(group_size=self.group_size, act="e4m3", weight="int4", weight_granularity="group")


@dataclass(frozen=True)
class Int8DynamicActivationIntxWeightConfig(QuantConfig):
    """4-bit weights decoded to int8 in registers times int8 activations quantized per row, int32
    accumulation. weight_mapping_type ASYMMETRIC (tqk's default: each group's own integer zero point)
    or SYMMETRIC (zero point 8); torchao's default is SYMMETRIC, 0.4 dB less accurate here."""

    weight_dtype: torch.dtype = torch.int4
    weight_granularity: Granularity = field(default_factory=lambda: PerGroup(128))
    weight_mapping_type: MappingType = MappingType.ASYMMETRIC
    act_mapping_type: MappingType = MappingType.SYMMETRIC

    def __post_init__(self):
        name = type(self).__name__
        if self.weight_dtype != torch.int4:
            raise TypeError(f"{name}: weight_dtype must be torch.int4, got {self.weight_dtype}")
        if not isinstance(self.weight_granularity, PerGroup):
            raise ValueError(f"{name}: weight_granularity must be PerGroup(n), got {self.weight_granularity}")
        _check_w4a8_group(self.weight_granularity.group_size, name)
        if self.weight_mapping_type not in (MappingType.SYMMETRIC, MappingType.ASYMMETRIC):
            raise ValueError(f"{name}: weight_mapping_type must be SYMMETRIC or ASYMMETRIC, got "
                             f"{self.weight_mapping_type}")
        _check_symmetric(self.act_mapping_type, name)

    def layout(self) -> ScaledLayout:
        return ScaledLayout(group_size=self.weight_granularity.group_size, act="int8", weight="int4",
                            weight_granularity="group", symmetric=self.weight_mapping_type == MappingType.SYMMETRIC)


ACTIVATION_CONFIGS = (Int8DynamicActivationInt8WeightConfig, Int8StaticActivationInt8WeightConfig,
                      Float8DynamicActivationFloat8WeightConfig, Float8StaticActivationFloat8WeightConfig,
                      Float8DynamicActivationInt4WeightConfig, Int8DynamicActivationIntxWeightConfig)


def _handler(weight: torch.Tensor, config) -> QuantizedLinearWeight:
    layout = config.layout()
    if layout.act == "e4m3" or layout.weight == "e4m3":
        _check_fp8_device(weight)
    return _quantize(weight, layout)


for _config in ACTIVATION_CONFIGS:
    register_handler(_config)(_handler)
