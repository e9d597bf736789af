"""Block-scaled floats: OCP Microscaling (MX) v1.0 and NVIDIA's NVFP4, encoded along the last axis.

MX: one shared scale X per block of 32 consecutive elements, an E8M0 code (a biased exponent):

    X = 2**(code - 127)        code 0 .. 254 (2**-127 .. 2**127); code 0xFF is NaN; no zero, no inf
    value_i = X * element(P_i)

and the elements P_i in one of five formats, their largest exponent emax_elem and largest value:

    e4m3 (MXFP8)  emax 8   448     torch.float8_e4m3fn's bits (S.1111.111 is NaN)
    e5m2 (MXFP8)  emax 15  57344   torch.float8_e5m2's bits (IEEE-style inf and NaN)
    e3m2 (MXFP6)  emax 4   28      no inf or NaN (tqk.quant.fpx's small floats)
    e2m3 (MXFP6)  emax 2   7.5
    e2m1 (MXFP4)  emax 2   6

Two rules choose the scale of a block whose largest magnitude is amax:
  - FLOOR (the spec's, section 6.3): X = 2**(floor(log2(amax)) - emax_elem). amax / X lies in
    [2**emax_elem, 2**(emax_elem + 1)), so the largest elements may exceed the element's largest
    value: they saturate.
  - RCEIL (cuBLAS's, NVIDIA's block quantization; torchao's ScaleCalculationMode.RCEIL): X is
    float32(amax / elem_max) rounded up to a power of two, so nothing saturates.
Either exponent is clamped to the code's range [-127, 127]. An all-zero block gets code 0 (its
elements are all zero, so any scale decodes it), a block holding NaN or inf gets the NaN code 0xFF
(its element codes are 0: the spec leaves them unspecified under a NaN scale). Elements are
value / X rounded to nearest, ties to even, saturating at the largest finite value.

NVFP4: e2m1 elements, a scale per 16 elements stored as e4m3 (a positive float8_e4m3fn), and a
float32 scale for the whole tensor:

    tensor_scale = float32(amax(tensor) / (448 * 6))           (1.0 for an all-zero tensor)
    block_scale  = e4m3(float32(float32(amax(block) / 6) / tensor_scale))   round to nearest even,
                                                                saturating at 448 (torch's cast)
    value_i      = e2m1(P_i) * block_scale * tensor_scale

A block whose scale rounds to 0 (an all-zero block, or one below 2**-10 of the tensor's largest
e4m3 step) gets element codes 0. Elements are value / (block_scale * tensor_scale), computed in
float64, to nearest even, saturating at 6.
"""
from __future__ import annotations

import enum

import torch

from .fpx import fpx_values, quantize_fpx

MX_BLOCK_SIZE = 32
NVFP4_BLOCK_SIZE = 16
E8M0_BIAS = 127
E8M0_NAN = 0xFF
E4M3_MAX = 448.0
E2M1_MAX = 6.0

# element -> (ebits, mbits, emax_elem, largest finite value)
MX_ELEMENTS = {
    "e4m3": (4, 3, 8, 448.0),
    "e5m2": (5, 2, 15, 57344.0),
    "e3m2": (3, 2, 4, 28.0),
    "e2m3": (2, 3, 2, 7.5),
    "e2m1": (2, 1, 2, 6.0),
}


class ScaleCalculationMode(str, enum.Enum):
    """How an MX block's E8M0 scale is chosen (torchao's names): FLOOR (the OCP spec's) or RCEIL."""

    FLOOR = "floor"
    RCEIL = "rceil"


def check_element(element: str) -> None:
    if element not in MX_ELEMENTS:
        raise ValueError(f"MX element {element!r} is not one of {sorted(MX_ELEMENTS)}")


def element_bits(element: str) -> int:
    ebits, mbits = MX_ELEMENTS[element][:2]
    return 1 + ebits + mbits


def encode_elements(v: torch.Tensor, element: str) -> torch.Tensor:
    """Values already divided by their scale -> uint8 element codes: nearest, ties to even,
    saturating at the element's largest finite value (never an fp8 NaN or inf code)."""
    check_element(element)
    ebits, mbits, _, vmax = MX_ELEMENTS[element]
    # e4m3 and e5m2 have tqk's small-float bit layout (sign, exponent, mantissa, bias 2**(e-1) - 1):
    # clamped to their largest finite value, the encode never reaches their NaN / inf patterns.
    return quantize_fpx(v.double().clamp(-vmax, vmax), ebits, mbits)


def decode_elements(codes: torch.Tensor, element: str) -> torch.Tensor:
    """float64 value of each element code (from the formula; e4m3 / e5m2 NaN and inf codes included)."""
    check_element(element)
    if element == "e4m3":
        return codes.view(torch.float8_e4m3fn).double()
    if element == "e5m2":
        return codes.view(torch.float8_e5m2).double()
    ebits, mbits = MX_ELEMENTS[element][:2]
    return fpx_values(ebits, mbits).to(codes.device)[codes.long()]


def decode_e8m0(codes: torch.Tensor) -> torch.Tensor:
    """float64 2**(code - 127) of uint8 E8M0 codes; NaN for 0xFF."""
    c = codes.to(torch.int64)
    return torch.where(c == E8M0_NAN, torch.nan, torch.exp2((c - E8M0_BIAS).double()))


def _floor_log2(x: torch.Tensor) -> torch.Tensor:
    """floor(log2(x)) exactly, for positive finite float64 x (frexp: x = m * 2**e, m in [0.5, 1))."""
    _, e = torch.frexp(x)
    return e.to(torch.int64) - 1


def _ceil_log2(x: torch.Tensor) -> torch.Tensor:
    """ceil(log2(x)) exactly, for positive finite float64 x."""
    m, e = torch.frexp(x)
    return torch.where(m == 0.5, e - 1, e).to(torch.int64)


def e8m0_scale(amax: torch.Tensor, element: str, mode=ScaleCalculationMode.FLOOR) -> torch.Tensor:
    """uint8 E8M0 codes of blocks whose largest magnitudes are `amax` (any float dtype), by `mode`."""
    check_element(element)
    mode = ScaleCalculationMode(mode)
    _, _, emax, vmax = MX_ELEMENTS[element]
    a = amax.double()
    positive = a > 0
    special = ~torch.isfinite(a)
    safe = torch.where(positive & ~special, a, torch.ones_like(a))
    if mode == ScaleCalculationMode.FLOOR:
        exp = _floor_log2(safe) - emax
    else:  # the float32 quotient rounded up to a power of two (cvt.rp.satfinite.ue8m0x2.f32)
        descale = (safe.clamp(max=torch.finfo(torch.float32).max).float() / vmax).double()
        exp = _ceil_log2(torch.where(descale > 0, descale, torch.full_like(descale, 2.0**-149)))
    code = exp.clamp(-E8M0_BIAS, E8M0_BIAS) + E8M0_BIAS
    code = torch.where(positive, code, torch.zeros_like(code))
    code = torch.where(special, torch.full_like(code, E8M0_NAN), code)
    return code.to(torch.uint8)


def quantize_mx(x: torch.Tensor, element: str = "e4m3", block_size: int = MX_BLOCK_SIZE,
                mode=ScaleCalculationMode.FLOOR) -> tuple[torch.Tensor, torch.Tensor]:
    """x [..., K] -> (uint8 element codes [..., K], uint8 E8M0 scale codes [..., K // block_size])."""
    check_element(element)
    k = x.shape[-1]
    if k % block_size:
        raise ValueError(f"the last dim ({k}) must be a multiple of the MX block size {block_size}")
    xb = x.double().reshape(*x.shape[:-1], k // block_size, block_size)
    scales = e8m0_scale(xb.abs().amax(-1), element, mode)
    nan_block = scales == E8M0_NAN
    scale = torch.where(nan_block, torch.ones_like(scales, dtype=torch.float64), decode_e8m0(scales))
    v = torch.where(nan_block[..., None], torch.zeros_like(xb), xb / scale[..., None])  # exact: a power of two
    return encode_elements(v, element).reshape(x.shape), scales


def dequantize_mx(codes: torch.Tensor, scales: torch.Tensor, element: str,
                  block_size: int = MX_BLOCK_SIZE) -> torch.Tensor:
    """float64 values [..., K] of element codes and their E8M0 scales."""
    k = codes.shape[-1]
    v = decode_elements(codes, element).reshape(*codes.shape[:-1], k // block_size, block_size)
    return (v * decode_e8m0(scales)[..., None]).reshape(codes.shape)


def nvfp4_tensor_scale(x: torch.Tensor) -> torch.Tensor:
    """float32 [1]: amax(|x|) / (448 * 6), in float32; 1.0 when x is all zero."""
    amax = x.detach().abs().amax().float()
    scale = amax / (E4M3_MAX * E2M1_MAX)
    return torch.where(amax > 0, scale, torch.ones_like(scale)).reshape(1)


def decode_e4m3(codes: torch.Tensor) -> torch.Tensor:
    """float64 values of uint8 float8_e4m3fn bit patterns (torch's decoding)."""
    return codes.view(torch.float8_e4m3fn).double()


def quantize_nvfp4(x: torch.Tensor, tensor_scale: torch.Tensor | None = None,
                   block_size: int = NVFP4_BLOCK_SIZE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [..., K] -> (uint8 e2m1 codes [..., K], uint8 e4m3 block scales [..., K // 16], float32
    tensor scale [1]). `tensor_scale`: a given float32 scale (e.g. 1.0 for none), else amax / 2688."""
    k = x.shape[-1]
    if k % block_size:
        raise ValueError(f"the last dim ({k}) must be a multiple of the NVFP4 block size {block_size}")
    ts = nvfp4_tensor_scale(x) if tensor_scale is None else tensor_scale.detach().float().reshape(1)
    xb = x.detach().reshape(*x.shape[:-1], k // block_size, block_size)
    block = (xb.abs().amax(-1).float() / E2M1_MAX) / ts
    scales = block.clamp(max=E4M3_MAX).to(torch.float8_e4m3fn).view(torch.uint8)
    total = decode_e4m3(scales) * ts.double()
    v = xb.double() / torch.where(total > 0, total, torch.ones_like(total))[..., None]
    v = torch.where((total > 0)[..., None], v, torch.zeros_like(v))
    return encode_elements(v, "e2m1").reshape(x.shape), scales, ts


def dequantize_nvfp4(codes: torch.Tensor, scales: torch.Tensor, tensor_scale: torch.Tensor,
                     block_size: int = NVFP4_BLOCK_SIZE) -> torch.Tensor:
    """float64 values [..., K]: e2m1(code) * e4m3(block scale) * tensor scale."""
    k = codes.shape[-1]
    v = decode_elements(codes, "e2m1").reshape(*codes.shape[:-1], k // block_size, block_size)
    s = decode_e4m3(scales) * tensor_scale.double().reshape(())
    return (v * s[..., None]).reshape(codes.shape)
