"""Block-scaled floats (issue 13): OCP MX (MXFP8, MXFP6, MXFP4) and NVFP4.

Weight-only (activations stay bf16/fp16): torchao has NVFP4WeightOnlyConfig; its MX configs all quantize
activations too, so the weight-only MX config is tqk's own, with the arguments of torchao's MX configs.
Both operands (torchao's MXDynamicActivationMXWeightConfig, NVFP4DynamicActivationNVFP4WeightConfig): the
activation is quantized to the same block format at run time and the GEMM runs on plain tensor-core dots
(tqk/kernels/scaled_mm.py; Hopper has no block-scaled MMA).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..layouts import MXLayout, NVFP4Layout, ScaledLayout
from ..quant.mx import MX_BLOCK_SIZE, NVFP4_BLOCK_SIZE, ScaleCalculationMode, quantize_mx, quantize_nvfp4
from ..tensor import QuantizedLinearWeight
from .base import CannotQuantize, QuantConfig, register_handler
from .dynamic import _check_fp8_device

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
        _check_mx(self, ("weight_dtype",))

    @property
    def element(self) -> str:
        return MX_WEIGHT_DTYPES[self.weight_dtype]


def _check_mx(config, dtype_fields):
    """The MX configs' shared checks (each named after the config), and scaling_mode as the enum."""
    name = type(config).__name__
    for field in dtype_fields:
        if getattr(config, field) not in MX_WEIGHT_DTYPES:
            raise TypeError(f"{name}: {field} must be one of {list(MX_WEIGHT_DTYPES)}, got {getattr(config, field)!r}")
    if config.block_size != MX_BLOCK_SIZE:
        raise ValueError(f"{name}: block_size={config.block_size}; OCP MX v1.0 blocks are {MX_BLOCK_SIZE} elements")
    try:
        object.__setattr__(config, "scaling_mode", ScaleCalculationMode(config.scaling_mode))
    except ValueError:
        raise ValueError(f"{name}: scaling_mode must be one of {[m.value for m in ScaleCalculationMode]}, "
                         f"got {config.scaling_mode!r}") from None


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


# --- both operands block-scaled --------------------------------------------------------------------------
@dataclass(frozen=True)
class MXDynamicActivationMXWeightConfig(QuantConfig):
    """OCP MX weights and activations (torchao's name, arguments and defaults): elements of `weight_dtype` and
    `activation_dtype` (torch.float8_e4m3fn / torch.float8_e5m2: MXFP8; torch.float4_e2m1fn_x2 or
    "fp4_e2m1": MXFP4; "fp6_e3m2" / "fp6_e2m3": MXFP6), an E8M0 scale per `block_size` = 32 input features
    chosen by `scaling_mode` (RCEIL, torchao's default, or the spec's FLOOR), the weight's once and the
    activation's per call (torch ops inside the op, tqk/quant/activation.py).

    On Hopper (no block-scaled MMA) the GEMM moves e2m1 / e3m2 / e2m3 codes into e4m3 in registers (e4m3
    holds them exactly), takes one 32-deep fp8 dot per block with float32 accumulation, and multiplies its
    partial by both blocks' powers of two. Needs compute capability 8.9 (fp8 dots).

    Where tqk differs from torchao: the two dtypes may differ (torchao requires them equal), e.g. MXFP4
    weights with MXFP8 activations; MXFP6 weights take a byte per code (MXFP6's accuracy at MXFP8's size);
    `kernel_preference` takes only "auto" (one kernel); bf16, fp16 and float32 models (torchao: bf16)."""

    block_size: int = MX_BLOCK_SIZE
    activation_dtype: object = torch.float8_e4m3fn
    weight_dtype: object = torch.float8_e4m3fn
    kernel_preference: object = "auto"
    scaling_mode: ScaleCalculationMode = ScaleCalculationMode.RCEIL

    def __post_init__(self):
        _check_mx(self, ("activation_dtype", "weight_dtype"))
        if getattr(self.kernel_preference, "value", self.kernel_preference) != "auto":
            raise ValueError(f"{type(self).__name__}: kernel_preference must be 'auto' (KernelPreference.AUTO; tqk "
                             f"runs one Triton kernel), got {self.kernel_preference!r}")

    def layout(self) -> ScaledLayout:
        return ScaledLayout(act=MX_WEIGHT_DTYPES[self.activation_dtype], weight=MX_WEIGHT_DTYPES[self.weight_dtype],
                            act_granularity="mx", weight_granularity="mx", scaling_mode=self.scaling_mode.value)


@dataclass(frozen=True)
class NVFP4DynamicActivationNVFP4WeightConfig(QuantConfig):
    """NVFP4 weights and activations (torchao's name and arguments): e2m1 elements, an e4m3 scale per 16 input
    features and a float32 scale per tensor, amax / (448 * 6): the weight's fixed at quantize time, the
    activation's taken per call (`use_dynamic_per_tensor_scale`; False: 1.0 for both, the e4m3 scales alone
    span the range). `use_triton_kernel` is accepted and changes nothing (tqk's kernels are Triton's).

    On Hopper the GEMM decodes both operands to float16 values e2m1 * e4m3 block scale (exact: at most 6
    significant bits), so its products are exact and any K tile is one dot; the tensor scales multiply each
    output once. So it runs on compute capability 8.0 too. Where tqk differs from torchao: out_features need
    not be a multiple of 16; the observer flow (`step="prepare"` / `"convert"`) is not supported."""

    use_triton_kernel: bool = True
    use_dynamic_per_tensor_scale: bool = True
    step: object = None

    def __post_init__(self):
        name = type(self).__name__
        for field in ("use_triton_kernel", "use_dynamic_per_tensor_scale"):
            if not isinstance(getattr(self, field), bool):
                raise TypeError(f"{name}: {field} must be a bool, got {getattr(self, field)!r}")
        if self.step is not None:
            raise NotImplementedError(f"{name}: step={self.step!r}: static activation tensor scales from "
                                      f"observers are not supported; use step=None")

    def layout(self) -> ScaledLayout:
        return ScaledLayout(act="e2m1", weight="e2m1", act_granularity="nvfp4", weight_granularity="nvfp4",
                            static_scale=0.0 if self.use_dynamic_per_tensor_scale else 1.0)


@register_handler(MXDynamicActivationMXWeightConfig)
@register_handler(NVFP4DynamicActivationNVFP4WeightConfig)
def _block_scaled_dynamic(weight: torch.Tensor, config) -> QuantizedLinearWeight:
    layout = config.layout()
    if layout.act_granularity == "mx":
        _check_fp8_device(weight)
    block = layout.k_multiple()
    if weight.shape[1] % block:
        kind = "MX" if layout.act_granularity == "mx" else "NVFP4"
        raise CannotQuantize(f"in_features={weight.shape[1]} is not a multiple of the {kind} block size {block}")
    packed, scales, tensor_scale = layout.quantize(weight)
    if tensor_scale is not None and not (bool(torch.isfinite(tensor_scale).all()) and float(tensor_scale) > 0):
        raise CannotQuantize(f"the NVFP4 tensor scale {float(tensor_scale)} is not a positive float32")
    return QuantizedLinearWeight(packed, scales, tensor_scale, layout, tuple(weight.shape), weight.dtype)
