"""Float8 scaling with torchao's semantics: x ~= fp8(x / scale) * scale, scale = amax / fp8_max."""
from __future__ import annotations

import torch

from .affine import _blocked_shape, _broadcastable

FLOAT8_DTYPES = (torch.float8_e4m3fn, torch.float8_e5m2)


def _check_fp8(dtype):
    if dtype not in FLOAT8_DTYPES:
        raise TypeError(f"float8 dtype must be one of {FLOAT8_DTYPES}, got {dtype}")


def choose_scale_float8(
    input: torch.Tensor, block_size: tuple[int, ...], float8_dtype=torch.float8_e4m3fn, eps: float = 1e-12
) -> torch.Tensor:
    """float32 scale per block: amax(|x|) / max(float8_dtype), so the block's largest value maps to
    the format's largest finite value."""
    _check_fp8(float8_dtype)
    view, reduce_dims = _blocked_shape(block_size, input.shape)
    x = input.reshape(view).float().abs()
    amax = torch.amax(x, dim=reduce_dims) if reduce_dims else x
    return torch.clamp(amax, min=eps) / torch.finfo(float8_dtype).max


def quantize_float8(
    input: torch.Tensor, block_size: tuple[int, ...], scale: torch.Tensor, float8_dtype=torch.float8_e4m3fn
) -> torch.Tensor:
    """fp8(clamp(x / scale)): round to nearest even by torch's own cast, saturating at the max."""
    _check_fp8(float8_dtype)
    view, reduce_dims = _blocked_shape(block_size, input.shape)
    fmax = torch.finfo(float8_dtype).max
    x = input.reshape(view).float() / _broadcastable(scale, view, reduce_dims).float()
    return torch.clamp(x, -fmax, fmax).to(float8_dtype).reshape(input.shape)


def dequantize_float8(
    input: torch.Tensor, block_size: tuple[int, ...], scale: torch.Tensor, output_dtype=torch.float32
) -> torch.Tensor:
    view, reduce_dims = _blocked_shape(block_size, input.shape)
    x = input.reshape(view).float() * _broadcastable(scale, view, reduce_dims).float()
    return x.reshape(input.shape).to(output_dtype)
