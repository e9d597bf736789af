"""Quantization primitives: granularities, affine (integer) and float8 scaling, HQQ."""
from .affine import MappingType, choose_qparams_affine, dequantize_affine, dtype_range, quantize_affine
from .float8 import FLOAT8_DTYPES, choose_scale_float8, dequantize_float8, quantize_float8
from .granularity import Granularity, PerAxis, PerBlock, PerGroup, PerRow, PerTensor

__all__ = [
    "MappingType", "choose_qparams_affine", "quantize_affine", "dequantize_affine", "dtype_range",
    "FLOAT8_DTYPES", "choose_scale_float8", "quantize_float8", "dequantize_float8",
    "Granularity", "PerTensor", "PerAxis", "PerRow", "PerGroup", "PerBlock",
]
