"""Configs (what to quantize to) and their handlers (how)."""
from .base import HANDLERS, CannotQuantize, QuantConfig, quantize_weight, register_handler
from .dynamic import (Float8DynamicActivationFloat8WeightConfig, Float8DynamicActivationInt4WeightConfig,
                      Float8StaticActivationFloat8WeightConfig, Int8DynamicActivationInt8WeightConfig,
                      Int8DynamicActivationIntxWeightConfig, Int8StaticActivationInt8WeightConfig)
from .lowbit import (CodebookWeightOnlyConfig, FPXWeightOnlyConfig, IntxWeightOnlyConfig, UIntxWeightOnlyConfig,
                     UIntXWeightOnlyConfig)
from .mx import (MXDynamicActivationMXWeightConfig, MXWeightOnlyConfig, NVFP4DynamicActivationNVFP4WeightConfig,
                 NVFP4WeightOnlyConfig)
from .weight_only import Float8WeightOnlyConfig, Int4WeightOnlyConfig, Int8WeightOnlyConfig

__all__ = ["HANDLERS", "CannotQuantize", "QuantConfig", "quantize_weight", "register_handler",
           "Int4WeightOnlyConfig", "Int8WeightOnlyConfig", "Float8WeightOnlyConfig",
           "Int8DynamicActivationInt8WeightConfig", "Int8StaticActivationInt8WeightConfig",
           "Float8DynamicActivationFloat8WeightConfig", "Float8StaticActivationFloat8WeightConfig",
           "Float8DynamicActivationInt4WeightConfig", "Int8DynamicActivationIntxWeightConfig", "FPXWeightOnlyConfig",
           "IntxWeightOnlyConfig", "UIntxWeightOnlyConfig", "UIntXWeightOnlyConfig", "CodebookWeightOnlyConfig",
           "MXWeightOnlyConfig", "NVFP4WeightOnlyConfig", "MXDynamicActivationMXWeightConfig",
           "NVFP4DynamicActivationNVFP4WeightConfig"]
