"""tqk: Triton kernels for quantized matmul in PyTorch.

    tqk.quantize_(model, tqk.Int4WeightOnlyConfig(group_size=128))
    model = torch.compile(model)
"""
import os as _os

import torch as _torch

# Without a GPU the kernels run through Triton's interpreter, which Triton reads when a kernel
# is defined: set it before any tqk kernel module imports triton, unless the user chose already.
if not _torch.cuda.is_available():
    _os.environ.setdefault("TRITON_INTERPRET", "1")

from .configs import (CannotQuantize, CodebookWeightOnlyConfig, FPXWeightOnlyConfig,  # noqa: E402
                      Float8DynamicActivationFloat8WeightConfig, Float8DynamicActivationInt4WeightConfig,
                      Float8StaticActivationFloat8WeightConfig,
                      Float8WeightOnlyConfig, Int4WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig,
                      Int8DynamicActivationIntxWeightConfig, Int8StaticActivationInt8WeightConfig,
                      Int8WeightOnlyConfig, IntxWeightOnlyConfig, MXDynamicActivationMXWeightConfig,
                      MXWeightOnlyConfig, NVFP4DynamicActivationNVFP4WeightConfig, NVFP4WeightOnlyConfig,
                      QuantConfig, UIntXWeightOnlyConfig, UIntxWeightOnlyConfig, quantize_weight)
from .quant.mx import ScaleCalculationMode  # noqa: E402
from .quant import (MappingType, PerAxis, PerBlock, PerGroup, PerRow, PerTensor,  # noqa: E402
                    choose_qparams_affine, dequantize_affine, quantize_affine)
from .linear import QuantizedLinear  # noqa: E402
from .quantize import FqnToConfig, QuantizeReport, quantize_, unwrap_tensor_subclass  # noqa: E402
from .tensor import QuantizedLinearWeight  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "quantize_", "quantize_weight", "unwrap_tensor_subclass", "FqnToConfig", "QuantizeReport",
    "QuantizedLinearWeight", "QuantizedLinear", "QuantConfig",
    "CannotQuantize", "Int4WeightOnlyConfig", "Int8WeightOnlyConfig", "Float8WeightOnlyConfig",
    "Int8DynamicActivationInt8WeightConfig", "Int8StaticActivationInt8WeightConfig",
    "Float8DynamicActivationFloat8WeightConfig", "Float8StaticActivationFloat8WeightConfig",
    "Float8DynamicActivationInt4WeightConfig", "Int8DynamicActivationIntxWeightConfig", "FPXWeightOnlyConfig",
    "IntxWeightOnlyConfig", "UIntxWeightOnlyConfig", "UIntXWeightOnlyConfig", "CodebookWeightOnlyConfig",
    "MXWeightOnlyConfig", "NVFP4WeightOnlyConfig", "MXDynamicActivationMXWeightConfig",
    "NVFP4DynamicActivationNVFP4WeightConfig", "ScaleCalculationMode",
    "MappingType", "PerTensor", "PerAxis", "PerRow", "PerGroup", "PerBlock",
    "choose_qparams_affine", "quantize_affine", "dequantize_affine",
]
