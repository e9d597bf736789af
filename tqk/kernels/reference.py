"""Plain-torch references of what the kernels compute, for tests and for the backward pass.

`dequantize` reads the same packed tensors as the kernels and follows the same formula:
value = (decode(code) - zero) * scale, in float32, rounded once to the output dtype."""
from __future__ import annotations

import torch

from ..layouts.packing import unpack_planes
from .weight_only import WeightFormat

_FP8 = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


def decode(codes: torch.Tensor, element: str, table: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 codes -> float32 values before scale and zero point (the kernel's decode_codes);
    "lut": the codes' entries of the codebook `table`, a vector table's ([2**bits, v]) side by side
    along the last dim (codes [N, K / v] -> values [N, K])."""
    if element == "uint":
        return codes.to(torch.float32)
    if element == "lut":
        return table.to(torch.float32)[codes.long()].flatten(-2) if table.dim() == 2 else \
            table.to(torch.float32)[codes.long()]
    if element.startswith("fpx"):
        from ..quant.fpx import dequantize_fpx

        return dequantize_fpx(codes, int(element[3]), int(element[4])).float()
    return codes.view(_FP8[element]).to(torch.float32)


def decode_scales(scales: torch.Tensor, zeros, scale_fmt: str) -> torch.Tensor:
    """float32 group scales [n_groups, N] (WeightFormat.scale_fmt): the stored floats, E8M0 codes
    2**(code - 127) (NaN for 0xFF), or NVFP4's e4m3 bytes times its float32 tensor scale (`zeros`)."""
    if scale_fmt == "float":
        return scales.float()
    if scale_fmt == "e8m0":
        code = scales.to(torch.int32)
        return torch.where(code == 255, torch.nan, torch.exp2((code - 127).float()))
    return scales.view(torch.float8_e4m3fn).float() * zeros.float()


def dequantize(packed, scales, zeros, fmt: WeightFormat, in_features: int, dtype=torch.float32,
               table: torch.Tensor | None = None) -> torch.Tensor:
    values = decode(unpack_planes(packed, fmt.bits, fmt.span, in_features // fmt.vector_size), fmt.element, table)
    n, groups = values.shape[0], scales.shape[0]
    v = values.view(n, groups, in_features // groups)
    if fmt.zero_mode == "tensor":
        v = v - zeros.t().float().unsqueeze(-1)
    elif fmt.zero_mode == "offset":
        v = v - float(fmt.zero_offset)
    return (v * decode_scales(scales, zeros, fmt.scale_fmt).t().unsqueeze(-1)).reshape(n, in_features).to(dtype)


def linear(x, packed, scales, zeros, bias, fmt: WeightFormat, in_features: int, table=None) -> torch.Tensor:
    """float64 reference of the kernel: x @ dequantize(W).T + bias."""
    w = dequantize(packed, scales, zeros, fmt, in_features, torch.float64, table)
    out = x.double() @ w.T
    return out if bias is None else out + bias.double()
