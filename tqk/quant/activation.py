"""Activation quantization at run time, in plain torch ops.

Why torch ops and not a Triton pass: inside tqk's triton_op inductor traces them with the rest of
the model, so the row max and the cast fuse into one kernel with whatever precedes them (the
norm, the residual add), and the quantized linear launches that kernel and the GEMM, no more. On
the CPU they run as torch's own casts, which the interpreter's fp8 casts are not (Triton 3.9's
saturate and round wrongly).

Scales are float32. A row's NaN or Inf stays in that row: its scale is NaN or Inf, so its output
row is non-finite and no other is, as with F.linear. A per-tensor or static scale is returned as one value per row
(NaN for a row holding a NaN), so the GEMM needs only the row and 1x128 block forms. A zero row
or block has scale 0 and codes 0: its output is the bias exactly.

Two ways into the GEMM (tqk.kernels.scaled_mm.quantize_in_prologue picks one per call):
- codes: `quantize_activation` writes the codes and scales (torch ops: under inductor the scales'
  reduction and the cast are one kernel for rows; per tensor a global amax is a reduction of its
  own and 1x128 blocks came out as two kernels), and the GEMM reads 8-bit codes;
- prologue: `activation_scales` only (one reduction, fused with what precedes it) and the GEMM
  reads the float activation and quantizes each tile in registers exactly as `_codes` does
  (the same float32 multiply by the scale's reciprocal, clamp and round to nearest even), taking the per-tensor scale as
  the largest finite row scale itself: two kernels per linear at every granularity.

Block-scaled floats (granularity "mx": OCP MX, one E8M0 scale per 32; "nvfp4": an e4m3 scale per 16 and
a float32 one per tensor) take the codes path only, in float32 torch ops that write what
tqk/quant/mx.py's float64 encodes write (`quantize_mx_activation`, `quantize_nvfp4_activation`).
"""
from __future__ import annotations

import math

import torch

from .mx import E2M1_MAX, E4M3_MAX, MX_BLOCK_SIZE, MX_ELEMENTS, NVFP4_BLOCK_SIZE, ScaleCalculationMode, decode_e8m0

QMAX = {"int8": 127.0, "e4m3": 448.0}
GRANULARITIES = ("tensor", "row", "block", "static", "mx", "nvfp4")
BLOCK = 128


def _codes(x: torch.Tensor, scale: torch.Tensor, kind: str) -> torch.Tensor:
    """x times the float32 reciprocal of its scale (1 where the scale is 0 or NaN), clamped to +-qmax,
    rounded to nearest even. A multiply, not a division: the GEMM's prologue does the same per
    element (a division is ~10 instructions there) and must write the same codes."""
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = (x * torch.reciprocal(safe)).clamp(-QMAX[kind], QMAX[kind])
    if kind == "int8":
        return torch.round(q).to(torch.int8)
    return q.to(torch.float8_e4m3fn).view(torch.uint8)  # the kernel reads the bits


def activation_scales(x2d: torch.Tensor, kind: str, granularity: str, static_scale: float = 0.0) -> torch.Tensor:
    """float32 scales of x [M, K]: [M] per row, [M, K // 128] per 1x128 block. Per tensor, each row's
    own amax / qmax: the tensor's scale is their largest finite value (division by qmax is monotonic,
    so that is the amax of the finite rows / qmax), and a row whose value is NaN or Inf keeps it. The
    GEMM's prologue takes these and quantizes x itself (tqk/kernels/scaled_mm.py)."""
    x = x2d.float()
    qmax = QMAX[kind]
    if granularity == "block":
        m, k = x.shape
        return x.view(m, k // BLOCK, BLOCK).abs().amax(-1) / qmax  # NaN where a block holds one
    row_amax = x.abs().amax(-1)
    if granularity in ("row", "tensor"):
        return row_amax / qmax
    if granularity == "static":
        bad = ~torch.isfinite(row_amax)  # a row holding a NaN or an Inf keeps it: that row's scale
        return torch.where(bad, row_amax, torch.full_like(row_amax, static_scale))
    raise ValueError(f"activation granularity {granularity!r}: one of {GRANULARITIES}")


def tensor_scale_rows(row_scales: torch.Tensor) -> torch.Tensor:
    """Per-tensor scales as rows [M]: the largest finite row scale in every row (no host sync), the
    row's own where it is NaN or Inf (one such row leaves the others alone)."""
    finite = torch.isfinite(row_scales)
    scale = torch.where(finite, row_scales, torch.zeros_like(row_scales)).amax()
    return torch.where(finite, scale, row_scales)


def quantize_activation(x2d: torch.Tensor, kind: str, granularity: str, static_scale: float = 0.0,
                        scaling_mode: str = "floor"):
    """x [M, K] float -> (codes [M, K] int8 or uint8 e4m3 bits, scales float32 [M] or [M, K // 128]);
    "mx" and "nvfp4": quantize_mx_activation's and quantize_nvfp4_activation's."""
    if granularity == "mx":
        return quantize_mx_activation(x2d, kind, scaling_mode)
    if granularity == "nvfp4":
        return quantize_nvfp4_activation(x2d, static_scale)
    scale = activation_scales(x2d, kind, granularity, static_scale)
    x = x2d.float()
    if granularity == "block":
        m, k = x.shape
        return _codes(x.view(m, k // BLOCK, BLOCK), scale[..., None], kind).view(m, k), scale
    if granularity == "tensor":
        scale = tensor_scale_rows(scale)
    return _codes(x, scale[:, None], kind), scale


def dequantize_activation(codes: torch.Tensor, scales: torch.Tensor, kind: str, granularity: str = "row") -> torch.Tensor:
    """float64 values of quantized activations: what the GEMM multiplies (for references and tests)."""
    if granularity == "mx":
        m, k = codes.shape
        values = codes.view(torch.float8_e5m2 if kind == "e5m2" else torch.float8_e4m3fn).double()
        return (values.view(m, k // MX_BLOCK_SIZE, MX_BLOCK_SIZE) * decode_e8m0(scales)[..., None]).view(m, k)
    if granularity == "nvfp4":
        return codes.double() * scales.double()[:, None]
    values = codes.double() if kind == "int8" else codes.view(torch.float8_e4m3fn).double()
    if scales.dim() == 2:
        m, k = codes.shape
        return (values.view(m, k // BLOCK, BLOCK) * scales.double()[..., None]).view(m, k)
    return values * scales.double()[:, None]


# --- block-scaled floats (OCP MX, NVFP4) -------------------------------------------------------------------
def _exponent(x: torch.Tensor) -> torch.Tensor:
    """The biased exponent field of float32 x >= 0 (0 for zero and subnormals), int32."""
    return x.view(torch.int32) >> 23


def _power_of_two(e: torch.Tensor) -> torch.Tensor:
    """float32 2**e for int32 e in [-126, 127], built from its exponent field (exact, no pow)."""
    return ((e + 127) << 23).view(torch.float32)


def mx_scale_codes(amax: torch.Tensor, element: str, mode="floor") -> torch.Tensor:
    """uint8 E8M0 codes of blocks whose largest magnitudes are float32 `amax`: tqk.quant.mx.e8m0_scale's
    rules in int32 ops on amax's bits. FLOOR: floor(log2(amax)) is amax's exponent field (a subnormal amax
    clamps to code 0 either way). RCEIL: float32(amax / elem_max) rounded up to a power of two: adding
    0x7FFFFF to its bits carries into the exponent unless the mantissa is 0; a quotient at most 2**-127
    is code 0. A NaN or Inf amax is the NaN code 0xFF."""
    _, _, emax, vmax = MX_ELEMENTS[element]
    if ScaleCalculationMode(mode) == ScaleCalculationMode.FLOOR:
        exp = _exponent(amax) - 127 - emax
    else:
        quotient = amax / vmax
        exp = ((quotient.view(torch.int32) + 0x7FFFFF) >> 23) - 127
        exp = torch.where(quotient <= 2.0**-127, -127, exp)
    code = exp.clamp(-127, 127) + 127
    return torch.where(torch.isfinite(amax), code, 0xFF).to(torch.uint8)


def round_to_element(v: torch.Tensor, element: str) -> torch.Tensor:
    """float32 v rounded to the nearest value of a small float `element` (e2m1, e3m2, e2m3), ties to even,
    saturating: the step of |v|'s binade (subnormals share the lowest normal binade's) is a power of two,
    so |v| / step is exact and torch.round (half to even) picks the even mantissa."""
    ebits, mbits, _, vmax = MX_ELEMENTS[element]
    mag = v.abs().clamp(max=vmax)
    binade = (_exponent(mag) - 127).clamp(min=2 - (1 << (ebits - 1)))
    step = _power_of_two(binade - mbits)
    q = torch.round(mag / step) * step
    return torch.where(v < 0, -q, q)


def element_bytes(v: torch.Tensor, element: str) -> torch.Tensor:
    """float32 values already divided by their scale -> the GEMM's uint8 operand bytes: e5m2 bits for e5m2,
    else e4m3 bits of the value rounded to `element` (e2m1, e3m2 and e2m3 values are all e4m3 values)."""
    if element == "e5m2":
        return v.clamp(-57344.0, 57344.0).to(torch.float8_e5m2).view(torch.uint8)
    if element != "e4m3":
        v = round_to_element(v, element)
    return v.clamp(-E4M3_MAX, E4M3_MAX).to(torch.float8_e4m3fn).view(torch.uint8)


def quantize_mx_activation(x2d: torch.Tensor, element: str, mode="floor"):
    """x [M, K] -> (uint8 element bytes [M, K] (element_bytes), uint8 E8M0 scales [M, K // 32]): the codes
    tqk.quant.mx.quantize_mx writes, in float32 (dividing by a power of two is exact). A block holding a
    NaN or Inf gets the NaN scale and zero elements, so its row's outputs are NaN and no others."""
    m, k = x2d.shape
    x = x2d.float().view(m, k // MX_BLOCK_SIZE, MX_BLOCK_SIZE)
    scales = mx_scale_codes(x.abs().amax(-1), element, mode)
    nan = scales == 0xFF
    # 2**(127 - code): codes 0 .. 253 (FLOOR stops at 252, RCEIL at 253 for float32 inputs) are normal floats
    inverse = _power_of_two(127 - torch.where(nan, 127, scales.to(torch.int32)))
    v = torch.where(nan[..., None], 0.0, x * inverse[..., None])
    return element_bytes(v, element).view(m, k), scales


def quantize_nvfp4_activation(x2d: torch.Tensor, tensor_scale: float = 0.0):
    """x [M, K] -> (float16 values e2m1(P) * e4m3(block scale) [M, K], float32 scales [M]: the tensor scale,
    expanded, no copy), so that x ~= values * scale: tqk.quant.mx.quantize_nvfp4's encode in float32.
    tensor_scale 0.0: dynamic, the largest finite |x| / (448 * 6) (1.0 for a zero tensor); else that fixed
    scale (torchao's use_dynamic_per_tensor_scale=False: 1.0). A block holding a NaN or an Inf gets NaN
    values, so its row's outputs are NaN and no other row's; that row's finite values still count in the
    dynamic tensor scale (per-tensor int8 and fp8 leave the whole row out, tensor_scale_rows), which keeps
    it one reduction. e2m1 times e4m3 has at most 6 significant
    bits and lies in [2**-10, 2688]: float16 holds it exactly. Under torch.compile this is two kernels
    (the global amax, then the blocks' encode) where a scale per row took two more.

    Not bit for bit quantize_nvfp4 (float64): the element's x / (block scale * tensor scale) rounds
    twice in float32, which can move a value within 2**-22 of a rounding boundary to the other side."""
    m, k = x2d.shape
    x = x2d.float()
    if tensor_scale == 0.0:
        mag = x.abs()
        ts = torch.where(torch.isfinite(mag), mag, 0.0).amax() / (E4M3_MAX * E2M1_MAX)
        ts = torch.where(ts > 0, ts, 1.0)
    else:
        ts = torch.tensor(tensor_scale, dtype=torch.float32, device=x.device)
    xb = x.view(m, k // NVFP4_BLOCK_SIZE, NVFP4_BLOCK_SIZE)
    amax = xb.abs().amax(-1)
    block = ((amax / E2M1_MAX) / ts).clamp(max=E4M3_MAX).to(torch.float8_e4m3fn).float()
    block = torch.where(torch.isfinite(amax), block, math.nan)  # (clamp would make an Inf block finite)
    total = block * ts
    v = torch.where(total[..., None] > 0, xb / torch.where(total > 0, total, 1.0)[..., None], 0.0)
    values = round_to_element(v, "e2m1") * block[..., None]  # (a NaN block: 0 * NaN)
    return values.to(torch.float16).view(m, k), ts.reshape(1).expand(m)
