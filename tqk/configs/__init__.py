"""Configs (what to quantize to) and their handlers (how)."""
from .base import HANDLERS, CannotQuantize, QuantConfig, quantize_weight, register_handler
from .weight_only import Float8WeightOnlyConfig, Int4WeightOnlyConfig, Int8WeightOnlyConfig

__all__ = ["HANDLERS", "CannotQuantize", "QuantConfig", "quantize_weight", "register_handler",
           "Int4WeightOnlyConfig", "Int8WeightOnlyConfig", "Float8WeightOnlyConfig"]
