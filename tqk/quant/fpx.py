"""Small floats: a sign bit, `ebits` exponent bits and `mbits` mantissa bits (1 + ebits + mbits <= 8),
as in torchao's fpx: no inf and no NaN codes, every exponent value is finite.

    bias = 2**(ebits - 1) - 1
    E == 0: (-1)**s * 2**(1 - bias) * M / 2**mbits        (subnormal)
    E > 0:  (-1)**s * 2**(E - bias) * (1 + M / 2**mbits)

Encoding rounds to nearest, ties to even, and saturates at the largest finite value. e4m3 and e5m2
are torch's float8 formats (with their NaN / inf codes): tqk keeps those as Float8Layout.
"""
from __future__ import annotations

import functools

import torch


def check_fpx(ebits: int, mbits: int):
    if not isinstance(ebits, int) or not isinstance(mbits, int) or ebits < 1 or mbits < 0 or ebits + mbits > 7:
        raise ValueError(f"fpx takes ebits >= 1, mbits >= 0 and ebits + mbits <= 7 (one sign bit, 8 bits at most); "
                         f"got ebits={ebits}, mbits={mbits}")


@functools.lru_cache(maxsize=None)
def fpx_values(ebits: int, mbits: int) -> torch.Tensor:
    """float64 value of every code 0 .. 2**(1 + ebits + mbits) - 1, from the formula."""
    check_fpx(ebits, mbits)
    bias = 2 ** (ebits - 1) - 1
    codes = torch.arange(1 << (1 + ebits + mbits), dtype=torch.int64)
    sign = torch.where((codes >> (ebits + mbits)) & 1 == 1, -1.0, 1.0).double()
    e = ((codes >> mbits) & ((1 << ebits) - 1)).double()
    m = (codes & ((1 << mbits) - 1)).double() / 2**mbits
    mag = torch.where(e == 0, 2.0 ** (1 - bias) * m, torch.exp2(e - bias) * (1 + m))
    return sign * mag


def fpx_max(ebits: int, mbits: int) -> float:
    return float(fpx_values(ebits, mbits)[(1 << (ebits + mbits)) - 1])


def quantize_fpx(x: torch.Tensor, ebits: int, mbits: int) -> torch.Tensor:
    """Values (already divided by their scale) -> uint8 codes: nearest, ties to even, saturating."""
    check_fpx(ebits, mbits)
    bias = 2 ** (ebits - 1) - 1
    v = x.double()
    mag = v.abs().clamp(max=fpx_max(ebits, mbits))
    # the step of mag's binade (subnormals share the smallest normal binade's step)
    exp = torch.floor(torch.log2(mag.clamp(min=2.0 ** (1 - bias)))).clamp(max=2 ** ebits - 1 - bias)
    step = torch.exp2(exp - mbits)
    units = torch.round(mag / step)  # half to even: an even unit count is an even mantissa
    rounded = (units * step).clamp(max=fpx_max(ebits, mbits))
    positive = fpx_values(ebits, mbits)[: 1 << (ebits + mbits)].to(v.device)  # ascending, exact
    code = torch.searchsorted(positive, rounded.contiguous())
    sign = (v < 0) & (code > 0)  # -0.0 is +0: one zero code
    return (code | (sign.to(torch.int64) << (ebits + mbits))).to(torch.uint8)


def dequantize_fpx(codes: torch.Tensor, ebits: int, mbits: int) -> torch.Tensor:
    return fpx_values(ebits, mbits).to(codes.device)[codes.long()]
