"""Affine quantization primitives with torchao's semantics.

    choose_qparams_affine -> (scale, zero_point)
    quantize_affine       q = clamp(round(x / scale) + zero_point, quant_min, quant_max)
    dequantize_affine     x = (q - zero_point) * scale

`block_size` says which elements share one scale: a tuple as long as the input's shape, where
block_size[i] is the extent of a block along dim i (1: every index has its own scale; the full
size: the whole dim shares one). Rounding is half to even (torch.round). Scales and zero points
come back with the blocked dims reduced away, e.g. weight (N, K) with block (1, 128) gives
scale (N, K // 128).
"""
from __future__ import annotations

from enum import Enum

import torch


class MappingType(Enum):
    """How the float range maps to the integer range."""

    SYMMETRIC = "symmetric"  # scale from max(|min|, |max|); zero point in the middle of the range
    SYMMETRIC_NO_CLIPPING_ERR = "symmetric_no_clipping_err"  # scale fits min and max separately
    ASYMMETRIC = "asymmetric"  # scale from max - min; integer zero point, 0.0 exactly representable


_SUB_BYTE = {getattr(torch, f"uint{b}"): (0, 2**b - 1) for b in range(1, 8) if hasattr(torch, f"uint{b}")}
_SUB_BYTE.update(
    {getattr(torch, f"int{b}"): (-(2 ** (b - 1)), 2 ** (b - 1) - 1) for b in range(1, 8) if hasattr(torch, f"int{b}")}
)


def dtype_range(dtype: torch.dtype) -> tuple[int, int]:
    """(quant_min, quant_max) of an integer dtype, sub-byte torch.uintN / torch.intN included."""
    if dtype in _SUB_BYTE:
        return _SUB_BYTE[dtype]
    if dtype.is_floating_point or dtype == torch.bool:
        raise TypeError(f"affine quantization needs an integer target dtype, got {dtype}")
    info = torch.iinfo(dtype)
    return int(info.min), int(info.max)


def _quant_range(target_dtype, quant_min, quant_max) -> tuple[int, int]:
    lo, hi = dtype_range(target_dtype)
    quant_min = lo if quant_min is None else int(quant_min)
    quant_max = hi if quant_max is None else int(quant_max)
    if not lo <= quant_min < quant_max <= hi:
        raise ValueError(f"quant range [{quant_min}, {quant_max}] does not fit {target_dtype} [{lo}, {hi}]")
    return quant_min, quant_max


def _blocked_shape(block_size, shape) -> tuple[list[int], list[int]]:
    """The view of `shape` that puts each block on its own dims, and the dims to reduce over."""
    if len(block_size) != len(shape):
        raise ValueError(f"block_size {tuple(block_size)} has {len(block_size)} dims, input has shape {tuple(shape)}")
    view, reduce_dims = [], []
    for b, s in zip(block_size, shape):
        if b <= 0 or s % b:
            raise ValueError(f"block_size {tuple(block_size)} does not tile input of shape {tuple(shape)}")
        if 1 < b < s:
            view += [s // b, b]
            reduce_dims.append(len(view) - 1)
        else:
            view.append(s)
            if b != 1:
                reduce_dims.append(len(view) - 1)
    return view, reduce_dims


def _broadcastable(t: torch.Tensor, view: list[int], reduce_dims: list[int]) -> torch.Tensor:
    shape = [1 if i in reduce_dims else s for i, s in enumerate(view)]
    return t.reshape(shape)


def choose_qparams_affine(
    input: torch.Tensor,
    mapping_type: MappingType,
    block_size: tuple[int, ...],
    target_dtype: torch.dtype,
    quant_min: int | None = None,
    quant_max: int | None = None,
    eps: float | None = None,
    scale_dtype: torch.dtype | None = None,
    zero_point_dtype: torch.dtype | None = torch.int32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point for each block of `input` (torchao's choose_qparams_affine)."""
    if not input.dtype.is_floating_point:
        raise TypeError(f"choose_qparams_affine needs a floating-point input, got {input.dtype}")
    quant_min, quant_max = _quant_range(target_dtype, quant_min, quant_max)
    scale_dtype = input.dtype if scale_dtype is None else scale_dtype
    # torchao's default: the smallest normal number. (finfo.eps would floor a bf16 scale at 2**-7
    # and wreck small-magnitude weights.)
    eps = torch.finfo(input.dtype).smallest_normal if eps is None else eps

    view, reduce_dims = _blocked_shape(block_size, input.shape)
    x = input.reshape(view).float()
    min_val = torch.amin(x, dim=reduce_dims) if reduce_dims else x
    max_val = torch.amax(x, dim=reduce_dims) if reduce_dims else x
    min_neg = torch.clamp(min_val, max=0.0)
    max_pos = torch.clamp(max_val, min=0.0)

    if mapping_type in (MappingType.SYMMETRIC, MappingType.SYMMETRIC_NO_CLIPPING_ERR):
        if mapping_type == MappingType.SYMMETRIC:
            scale = torch.maximum(-min_neg, max_pos) / ((quant_max - quant_min) / 2)
        else:
            smin, smax = min_neg / quant_min, max_pos / quant_max
            # where, not maximum: with quant_min == 0 smin can be 0/0 = nan, which must lose.
            scale = torch.where(smin > smax, smin, smax)
        scale = torch.clamp(scale, min=eps)
        zero_point = torch.full_like(scale, int((quant_max + quant_min + 1) / 2))
    elif mapping_type == MappingType.ASYMMETRIC:
        scale = torch.clamp((max_pos - min_neg) / (quant_max - quant_min), min=eps)
        zero_point = torch.clamp(quant_min - torch.round(min_neg / scale), quant_min, quant_max)
    else:
        raise ValueError(f"unknown mapping_type {mapping_type!r}")
    return _stored_scale(scale, scale_dtype), zero_point.to(zero_point_dtype or torch.int32)


def _stored_scale(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """float32 scales cast to their storage dtype, rounded up where the cast rounded a subnormal down. A
    normal scale keeps torchao's round to nearest (off by at most 2**-8 relative in bfloat16, 2**-11 in
    float16); a subnormal one has fewer significant bits (a float16 group of amax 1.24e-4 gets 9.54e-7 for
    9.71e-7, 2% low), so its block's extreme weights would clamp by steps, not a fraction of one. One ulp up
    is at least the float32 scale, so the block's range fits its codes again."""
    stored = scale.to(dtype)
    if not dtype.is_floating_point or torch.finfo(dtype).bits >= 32:
        return stored
    low = (stored.float() < scale) & (stored.abs() < torch.finfo(dtype).smallest_normal)
    return torch.where(low, torch.nextafter(stored, torch.full_like(stored, float("inf"))), stored)


def quantize_affine(
    input: torch.Tensor,
    block_size: tuple[int, ...],
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    output_dtype: torch.dtype,
    quant_min: int | None = None,
    quant_max: int | None = None,
) -> torch.Tensor:
    """q = clamp(round(input / scale) + zero_point, quant_min, quant_max), in `output_dtype`;
    with a floating zero point (the int4 and HQQ paths) q = clamp(round(input / scale + zero_point)).

    Sub-byte dtypes (torch.uint4, ...) are returned in their storage dtype (uint8 / int8).
    Like torchao (and torch's quantized_decomposed ops) it multiplies by 1 / scale rather than
    dividing, so that the results match theirs bit for bit on float32 input."""
    if not input.dtype.is_floating_point:
        raise TypeError(f"quantize_affine needs a floating-point input, got {input.dtype}")
    quant_min, quant_max = _quant_range(output_dtype, quant_min, quant_max)
    view, reduce_dims = _blocked_shape(block_size, input.shape)
    x = input.reshape(view).float()
    s = _broadcastable(scale, view, reduce_dims).float()
    q = x * (1.0 / s)
    if zero_point is not None and zero_point.dtype.is_floating_point:
        q = torch.round(q + _broadcastable(zero_point, view, reduce_dims).float())
    elif zero_point is not None:
        q = torch.round(q) + _broadcastable(zero_point, view, reduce_dims).float()
    else:
        q = torch.round(q)
    q = torch.clamp(q, quant_min, quant_max).reshape(input.shape)
    return q.to(_storage_dtype(output_dtype))


def dequantize_affine(
    input: torch.Tensor,
    block_size: tuple[int, ...],
    scale: torch.Tensor,
    zero_point: torch.Tensor | None,
    input_dtype: torch.dtype | None = None,
    quant_min: int | None = None,
    quant_max: int | None = None,
    *,
    output_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """x = (q - zero_point) * scale, computed in float32 and rounded once to `output_dtype`.

    An integer zero point is subtracted exactly; a float zero point (HQQ) is used as is."""
    view, reduce_dims = _blocked_shape(block_size, input.shape)
    q = input.reshape(view).to(torch.float32)
    if zero_point is not None:
        q = q - _broadcastable(zero_point, view, reduce_dims).to(torch.float32)
    x = q * _broadcastable(scale, view, reduce_dims).to(torch.float32)
    return x.reshape(input.shape).to(output_dtype)


def _storage_dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype in _SUB_BYTE:
        return torch.uint8 if _SUB_BYTE[dtype][0] == 0 else torch.int8
    return dtype


def choose_qparams_affine_clipped(
    input: torch.Tensor,
    block_size: tuple[int, ...],
    target_dtype: torch.dtype,
    shrinks: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8),
    eps: float = 1e-6,
    scale_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ASYMMETRIC qparams with a float zero point, per block the best of a few clipped ranges.

    Each block's range [min(min, 0), max(max, 0)] is shrunk about its middle by every factor in
    `shrinks`; the block keeps the (scale, zero point) with the lowest squared error after
    quantizing with the values as stored in `scale_dtype` (the input's dtype by default).
    Keeping 0.0 inside the range bounds the zero point to [quant_min, quant_max], so storing it
    in bf16/fp16 costs at most quant_max * 2**-9 of a step. shrinks=(1.0,) is min/max."""
    quant_min, quant_max = _quant_range(target_dtype, None, None)
    scale_dtype = input.dtype if scale_dtype is None else scale_dtype
    view, reduce_dims = _blocked_shape(block_size, input.shape)
    x = input.reshape(view).float()
    lo = torch.clamp(torch.amin(x, dim=reduce_dims) if reduce_dims else x, max=0.0)
    hi = torch.clamp(torch.amax(x, dim=reduce_dims) if reduce_dims else x, min=0.0)
    mid, half = (hi + lo) / 2, (hi - lo) / 2
    best = None
    for shrink in shrinks:
        scale = _stored_scale(torch.clamp(2 * half * shrink / (quant_max - quant_min), min=eps), scale_dtype)
        zero = torch.clamp(quant_min - (mid - half * shrink) / scale.float(), quant_min, quant_max).to(scale_dtype)
        q = quantize_affine(input, block_size, scale, zero, target_dtype)
        err = (dequantize_affine(q, block_size, scale, zero) - input.float()).reshape(view).pow(2)
        err = err.sum(dim=reduce_dims) if reduce_dims else err
        if best is None:
            best = [err, scale, zero]
        else:
            better = err < best[0]
            best = [torch.where(better, err, best[0]), torch.where(better, scale, best[1]),
                    torch.where(better, zero, best[2])]
    return best[1], best[2]
