"""Block-scaled float weights (issue 13): OCP MX (MXFP8, MXFP6, MXFP4) and NVFP4, weight-only; activations
stay bf16/fp16. torchao has NVFP4WeightOnlyConfig; its MX configs all quantize activations too, so the
weight-only MX config is tqk's own, with the arguments of torchao's MX configs."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layouts import MXLayout, NVFP4Layout
from ..quant.mx import MX_BLOCK_SIZE, NVFP4_BLOCK_SIZE, ScaleCalculationMode, quantize_mx, quantize_nvfp4
from ..tensor import QuantizedLinearWeight
from .base import CannotQuantize, QuantConfig, register_handler

# torchao's names for the element dtypes: torch dtypes where torch has them, its strings for fp6
MX_WEIGHT_DTYPES = {torch.float8_e4m3fn: "e4m3", torch.float8_e5m2: "e5m2", "fp6_e3m2": "e3m2",
                    "fp6_e2m3": "e2m3", "fp4_e2m1": "e2m1"}
if hasattr(torch, "float4_e2m1fn_x2"):
    MX_WEIGHT_DTYPES[torch.float4_e2m1fn_x2] = "e2m1"


@dataclass(frozen=True)
class MXWeightOnlyConfig(QuantConfig):
    """OCP MX weights: `weight_dtype` elements (torch.float8_e4m3fn / torch.float8_e5m2: MXFP8,
    "fp6_e3m2" / "fp6_e2m3": MXFP6, torch.float4_e2m1fn_x2 or "fp4_e2m1": MXFP4) with one E8M0 scale per
    `block_size` = 32 input features, chosen by `scaling_mode` (FLOOR: the spec's; RCEIL: no element
    saturates). 8.25, 6.25 or 4.25 bits per weight."""

    weight_dtype: object = torch.float8_e4m3fn
    block_size: int = MX_BLOCK_SIZE
    scaling_mode: ScaleCalculationMode = ScaleCalculationMode.FLOOR

    def __post_init__(self):
        if self.weight_dtype not in MX_WEIGHT_DTYPES:
            raise TypeError(f"MXWeightOnlyConfig: weight_dtype must be one of {list(MX_WEIGHT_DTYPES)}, "
                            f"got {self.weight_dtype!r}")
        if self.block_size != MX_BLOCK_SIZE:
            raise ValueError(f"MXWeightOnlyConfig: block_size={self.block_size}; OCP MX v1.0 blocks are "
                             f"{MX_BLOCK_SIZE} elements")
        try:
            object.__setattr__(self, "scaling_mode", ScaleCalculationMode(self.scaling_mode))
        except ValueError:
            raise ValueError(f"MXWeightOnlyConfig: scaling_mode must be one of "
                             f"{[m.value for m in ScaleCalculationMode]}, got {self.scaling_mode!r}") from None

    @property
    def element(self) -> str:
        return MX_WEIGHT_DTYPES[self.weight_dtype]


@register_handler(MXWeightOnlyConfig)
def _mx(weight: torch.Tensor, config: MXWeightOnlyConfig) -> QuantizedLinearWeight:
    n, k = weight.shape
    if k % config.block_size:
        raise CannotQuantize(f"in_features={k} is not a multiple of the MX block size {config.block_size}")
    codes, scales = quantize_mx(weight, config.element, config.block_size, config.scaling_mode)
    layout = MXLayout(group_size=config.block_size, element=config.element)
    return QuantizedLinearWeight(layout.pack(codes), scales.t().contiguous(), None, layout, (n, k), weight.dtype)


@dataclass(frozen=True)
class NVFP4WeightOnlyConfig(QuantConfig):
    """NVFP4 weights (torchao's name and argument): e2m1 elements, an e4m3 scale per 16 input features and
    a float32 scale for the tensor, amax / (448 * 6) with `use_dynamic_per_tensor_scale` (else 1.0, and the
    e4m3 scales alone must span the weight's range). 4.5 bits per weight."""

    use_dynamic_per_tensor_scale: bool = True

    def __post_init__(self):
        if not isinstance(self.use_dynamic_per_tensor_scale, bool):
            raise TypeError(f"NVFP4WeightOnlyConfig: use_dynamic_per_tensor_scale must be a bool, "
                            f"got {self.use_dynamic_per_tensor_scale!r}")


@register_handler(NVFP4WeightOnlyConfig)
def _nvfp4(weight: torch.Tensor, config: NVFP4WeightOnlyConfig) -> QuantizedLinearWeight:
    n, k = weight.shape
    if k % NVFP4_BLOCK_SIZE:
        raise CannotQuantize(f"in_features={k} is not a multiple of the NVFP4 block size {NVFP4_BLOCK_SIZE}")
    given = None if config.use_dynamic_per_tensor_scale else torch.ones(1, device=weight.device)
    codes, scales, tensor_scale = quantize_nvfp4(weight, tensor_scale=given)
    if not bool(torch.isfinite(tensor_scale).all()) or float(tensor_scale) == 0.0:
        raise CannotQuantize(f"the NVFP4 tensor scale {float(tensor_scale)} is not a positive float32")
    layout = NVFP4Layout()
    return QuantizedLinearWeight(layout.pack(codes), scales.t().contiguous(), tensor_scale, layout, (n, k),
                                 weight.dtype)
