"""Weights for the activation-quantized GEMM (tqk/kernels/scaled_mm.py): both operands 8-bit, or
block-scaled floats (OCP MX, NVFP4) on both sides.

Stored as the GEMM reads them, not bit-plane packed: tl.dot takes [K, N] tiles of whole bytes.
    packed  int8 [N, K]       int8 weights (two's complement)
            uint8 [N, K]      e4m3 weights (the fp8 bits); MX: e4m3 / e5m2 bits, e3m2 / e2m3 codes
            uint8 [N, K // 2] 4-bit weights: byte j of group g holds the codes of columns
                              g * G + j (low nibble) and g * G + G // 2 + j (high nibble);
                              e2m1 (MXFP4, NVFP4): byte j holds codes 2j (low nibble) and 2j + 1
    scales  [N]               per row (a per-tensor scale repeated per row), in the model dtype
            [cdiv(N, 128), K // 128]   per 128x128 block
            [K // G, N]       per group of G (4-bit weights)
            uint8 [K // 32, N]  MX: E8M0 codes (tqk/quant/mx.py)
            uint8 [K // 16, N]  NVFP4: e4m3 bits
    zeros   [K // G, N] | None integer zero points of the 4-bit codes, in the model dtype;
            float32 [1]       NVFP4: the weight's tensor scale

MX and NVFP4 (granularity "mx" / "nvfp4" on both operands) are tqk/quant/mx.py's encodes: the weight's
by its float64 quantize_mx / quantize_nvfp4, the activation's at run time by the float32 torch ops of
tqk/quant/activation.py. MXFP6 codes take a byte each here (8.25 bits a weight, MXFP6's accuracy).

4-bit weights (W4A8): value = (q - z) * scale with q in [0, 15] and an integer z in [0, 15], so
q - z lies in [-15, 15]: exact in int8 and in e4m3 (integers up to 16), and the 8-bit tensor-core
product of it with the activation code is exact. An integer zero point is what keeps it exact (a
float zero point would not); per group it is the asymmetric range, round(-min / scale), or 8 for
the symmetric one (scale = absmax / 8, q = clamp(round(w / scale), -8, 7) + 8). Asymmetric is
the default: 19.9 dB against 19.5 for symmetric on N(0, 1) weights in groups of 128.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..kernels.scaled_mm import ACT_QUANT, BLOCK, ScaledFormat, split_counter_slots
from ..kernels.splits import shared_counters
from ..quant.mx import (MX_BLOCK_SIZE, MX_ELEMENTS, NVFP4_BLOCK_SIZE, ScaleCalculationMode, decode_e4m3,
                        decode_e8m0, decode_elements, quantize_mx, quantize_nvfp4)
from .base import Layout, register_layout

ACT = ("int8", "e4m3", "e5m2", "e3m2", "e2m3", "e2m1")
ACT_GRANULARITIES = ("tensor", "row", "block", "static", "mx", "nvfp4")
WEIGHTS = {"int8": ("tensor", "row"), "e4m3": ("tensor", "row", "block", "mx"), "int4": ("group",),
           "e5m2": ("mx",), "e3m2": ("mx",), "e2m3": ("mx",), "e2m1": ("mx", "nvfp4")}
QMAX = {"int8": 127.0, "e4m3": 448.0}
BLOCK_SCALED = {"mx": MX_BLOCK_SIZE, "nvfp4": NVFP4_BLOCK_SIZE}  # granularity -> elements per scale along K


@register_layout
@dataclass(frozen=True)
class ScaledLayout(Layout):
    """out = quantize(x) @ W_codes.T * scales: 8-bit activations (int8 or e4m3, quantized at run time
    per tensor, row or 1x128 block, or with a static scale) times 8-bit or 4-bit weights; or both
    operands OCP MX (act / weight: an element of tqk.quant.mx.MX_ELEMENTS, granularity "mx") or NVFP4
    ("e2m1", granularity "nvfp4")."""

    act: str = "int8"
    weight: str = "int8"
    act_granularity: str = "row"
    weight_granularity: str = "row"
    static_scale: float = 0.0  # act_granularity "static": the activation scale
    family: ClassVar[str] = "scaled"
    symmetric: bool = False  # 4-bit weights: zero point 8 instead of each group's own
    # where the activation is quantized: "auto" (tqk.kernels.scaled_mm.quantize_in_prologue's choice by
    # M), or forced: "prologue" (inside the GEMM) or "codes" (torch ops write codes first); same results
    act_quant: str = "auto"
    # MX (granularity "mx"): how E8M0 scales are chosen, weights' and activations' ("floor" or "rceil").
    # NVFP4 ("nvfp4"): static_scale 0.0 is torchao's use_dynamic_per_tensor_scale=True, tensor scales
    # amax / (448 * 6), the activation's per call; else the activation's fixed tensor scale, and the weight's 1.0.
    scaling_mode: str = "floor"

    def __post_init__(self):
        if self.act not in ACT or self.weight not in WEIGHTS or self.act_granularity not in ACT_GRANULARITIES:
            raise ValueError(f"ScaledLayout: act in {ACT}, weight in {list(WEIGHTS)}, act_granularity in "
                             f"{ACT_GRANULARITIES}; got {self}")
        if self.act_quant not in ACT_QUANT:
            raise ValueError(f"ScaledLayout: act_quant in {ACT_QUANT}, got {self.act_quant!r}")
        if self.weight_granularity not in WEIGHTS[self.weight]:
            raise ValueError(f"ScaledLayout: {self.weight} weights take granularity {WEIGHTS[self.weight]}, "
                             f"got {self.weight_granularity!r}")
        if self.block_scaled or self.weight_granularity in BLOCK_SCALED:
            self._check_block_scaled()
        elif self.act not in QMAX:
            raise ValueError(f"ScaledLayout: {self.act} activations are MX / NVFP4's (act_granularity 'mx' or "
                             f"'nvfp4'), got act_granularity={self.act_granularity!r}")
        if self.weight == "int4" and self.group_size not in (64, 128, 256):
            # half a group is one dot's K: 8-bit tensor-core dots take K >= 32
            raise ValueError(f"ScaledLayout: 4-bit weights take a group size of 64, 128 or 256, "
                             f"got {self.group_size}")
        if self.weight != "int4" and self.group_size:
            raise ValueError(f"ScaledLayout: group_size is for 4-bit weights; {self.weight} weights take "
                             f"weight_granularity instead (got group_size={self.group_size})")
        if self.weight == "int4" and self.act_granularity == "block" and self.group_size != BLOCK:
            # the K step is the group, and the 1x128 activation scale is read once per step
            raise ValueError(f"ScaledLayout: 1x128 activation blocks with 4-bit weights need group_size={BLOCK}, "
                             f"got {self.group_size}")
        self.scaled_format()  # operand pairs the GEMM takes (asserts)

    def _check_block_scaled(self):
        if self.act_granularity != self.weight_granularity:
            raise ValueError(f"ScaledLayout: block-scaled floats take the same granularity on both operands, got "
                             f"act_granularity={self.act_granularity!r}, weight_granularity={self.weight_granularity!r}")
        if self.act_granularity == "mx" and self.act not in MX_ELEMENTS:
            raise ValueError(f"ScaledLayout: MX activations take an MX element {sorted(MX_ELEMENTS)}, got {self.act!r}")
        if self.act_granularity == "nvfp4" and (self.act, self.weight) != ("e2m1", "e2m1"):
            raise ValueError(f"ScaledLayout: NVFP4 is e2m1 on both operands, got act={self.act!r}, "
                             f"weight={self.weight!r}")
        if self.group_size:
            raise ValueError(f"ScaledLayout: {self.act_granularity} blocks are {BLOCK_SCALED[self.act_granularity]} "
                             f"elements; group_size is for 4-bit weights (got {self.group_size})")
        if self.scaling_mode not in [m.value for m in ScaleCalculationMode]:
            raise ValueError(f"ScaledLayout: scaling_mode in {[m.value for m in ScaleCalculationMode]}, got "
                             f"{self.scaling_mode!r}")
        if self.act_quant == "prologue":
            raise ValueError(f"ScaledLayout: {self.act_granularity} activations are quantized by torch ops "
                             f"(act_quant 'auto' or 'codes'), not in the GEMM's prologue")
        if not (self.static_scale >= 0 and self.static_scale < float("inf")) or \
                (self.act_granularity == "mx" and self.static_scale):
            raise ValueError(f"ScaledLayout: static_scale is NVFP4's fixed activation tensor scale (0.0: "
                             f"dynamic), got {self.static_scale} for {self.act_granularity}")

    @property
    def block_scaled(self) -> bool:
        """OCP MX or NVFP4 operands: elements with a byte scale per block of K."""
        return self.act_granularity in BLOCK_SCALED

    @property
    def takes_prologue(self) -> bool:
        """Whether the GEMM can quantize the float activation itself (ScaledLayout.act_quant "prologue")."""
        return not self.block_scaled

    def scaled_format(self) -> ScaledFormat:
        if self.act_granularity == "mx":
            return ScaledFormat("e5m2" if self.act == "e5m2" else "e4m3", self.weight, "e8m0", "e8m0", MX_BLOCK_SIZE)
        if self.act_granularity == "nvfp4":
            return ScaledFormat("f16", "e2m1", "row", "e4m3", NVFP4_BLOCK_SIZE)
        block = self.act_granularity == "block" or self.weight_granularity == "block"
        return ScaledFormat(self.act, self.weight, {"static": "row"}.get(self.act_granularity, self.act_granularity),
                            {"tensor": "row"}.get(self.weight_granularity, self.weight_granularity),
                            self.group_size if self.weight == "int4" else (BLOCK if block else 0))

    def weight_format(self):
        return None  # not a weight-only format: its own pack, dequantize and split-K counters

    def split_counters(self, out_features: int, in_features: int, device) -> torch.Tensor | None:
        slots = split_counter_slots(self.scaled_format(), out_features, in_features, torch.device(device))
        return shared_counters(slots, device)

    @classmethod
    def examples(cls):
        fp8 = dict(act="e4m3", weight="e4m3")
        return [cls(), cls(act_granularity="tensor", weight_granularity="tensor"),
                cls(act_granularity="static", static_scale=0.05),
                cls(**fp8), cls(**fp8, act_granularity="tensor", weight_granularity="tensor"),
                cls(**fp8, act_granularity="block", weight_granularity="block"),
                cls(weight="int4", weight_granularity="group", group_size=128),
                cls(weight="int4", weight_granularity="group", group_size=64, symmetric=True),
                cls(act="e4m3", weight="int4", weight_granularity="group", group_size=256),
                # block-scaled (appended: tests/kernels/test_inductor_source.py names the cases above by index)
                cls(act="e4m3", weight="e4m3", act_granularity="mx", weight_granularity="mx"),
                cls(act="e2m1", weight="e2m1", act_granularity="mx", weight_granularity="mx", scaling_mode="rceil"),
                cls(act="e2m1", weight="e2m1", act_granularity="nvfp4", weight_granularity="nvfp4")]

    def k_multiple(self) -> int:
        """in_features must be a multiple of this (blocks and groups tile K whole)."""
        return self.scaled_format().group or 1

    # --- weights --------------------------------------------------------------------------
    def quantize(self, weight: torch.Tensor):
        """float weight [N, K] -> (packed, scales, zeros) as stored; scales in the weight's dtype, and
        the codes chosen against the scales as stored."""
        if self.block_scaled:
            return self._quantize_block_scaled(weight)
        w = weight.float()
        n, k = w.shape
        dtype = weight.dtype
        tiny = torch.finfo(dtype).tiny
        if self.weight == "int4":
            g = w.view(n, k // self.group_size, self.group_size)
            if self.symmetric:
                scale = (g.abs().amax(-1) / 8).clamp_min(tiny).to(dtype)
                zero = torch.full_like(scale, 8)
            else:
                lo, hi = g.amin(-1).clamp(max=0), g.amax(-1).clamp(min=0)  # 0 in range: constant groups exact
                scale = ((hi - lo) / 15).clamp_min(tiny).to(dtype)
                zero = torch.round(-lo / scale.float()).clamp(0, 15).to(dtype)
            q = torch.round(g / scale.float()[..., None]) + zero.float()[..., None]
            q = q.clamp(0, 15).to(torch.uint8).view(n, k)
            return self.pack(q), scale.t().contiguous(), zero.t().contiguous()
        qmax = QMAX[self.weight]
        if self.weight_granularity == "block":
            nb = -(-n // BLOCK)
            padded = torch.zeros(nb * BLOCK, k, device=w.device)
            padded[:n] = w
            amax = padded.view(nb, BLOCK, k // BLOCK, BLOCK).abs().amax((1, 3))
            scale = (amax / qmax).clamp_min(tiny).to(dtype)
            full = scale.float().repeat_interleave(BLOCK, 0)[:n].repeat_interleave(BLOCK, 1)
        else:
            amax = w.abs().amax() if self.weight_granularity == "tensor" else w.abs().amax(1)
            scale = (amax / qmax).clamp_min(tiny).to(dtype).expand(n).contiguous()
            full = scale.float()[:, None]
        q = (w / full).clamp(-qmax, qmax)
        codes = torch.round(q).to(torch.int8).view(torch.uint8) if self.weight == "int8" else \
            q.to(torch.float8_e4m3fn).view(torch.uint8)
        return self.pack(codes), scale, None

    def _quantize_block_scaled(self, weight: torch.Tensor):
        """MX: (element codes, E8M0 scales [K // 32, N], None); NVFP4: (e2m1 codes, e4m3 scales [K // 16, N],
        the float32 tensor scale amax / (448 * 6)), by tqk/quant/mx.py's float64 encodes."""
        if self.act_granularity == "mx":
            codes, scales = quantize_mx(weight, self.weight, MX_BLOCK_SIZE, self.scaling_mode)
            return self.pack(codes), scales.t().contiguous(), None
        fixed = None if self.static_scale == 0.0 else torch.ones(1, device=weight.device)
        codes, scales, tensor_scale = quantize_nvfp4(weight, tensor_scale=fixed)
        return self.pack(codes), scales.t().contiguous(), tensor_scale

    def pack(self, codes: torch.Tensor) -> torch.Tensor:
        """uint8 codes [N, K] (int8 bytes, e4m3 bits, 4-bit values, MX / NVFP4 element codes) -> the stored
        tensor."""
        if self.weight == "int8":
            return codes.contiguous().view(torch.int8)
        if self.weight not in ("int4", "e2m1"):
            return codes.contiguous()
        if codes.numel() and int(codes.max()) > 15:
            raise ValueError("a 4-bit code does not fit: codes must be in [0, 15]")
        n, k = codes.shape
        if self.weight == "e2m1":
            return (codes[:, 0::2] | (codes[:, 1::2] << 4)).contiguous()
        g = codes.view(n, k // self.group_size, 2, self.group_size // 2)
        return (g[:, :, 0] | (g[:, :, 1] << 4)).reshape(n, k // 2).contiguous()

    def unpack(self, packed: torch.Tensor, in_features: int) -> torch.Tensor:
        if self.weight == "e2m1":
            return torch.stack([packed & 15, packed >> 4], -1).view(packed.shape[0], in_features)
        if self.weight != "int4":
            return packed.view(torch.uint8)
        n = packed.shape[0]
        g = packed.view(n, in_features // self.group_size, 1, self.group_size // 2)
        return torch.cat([g & 15, g >> 4], 2).view(n, in_features)

    def dequantize(self, packed, scales, zeros, in_features: int, dtype: torch.dtype, table=None) -> torch.Tensor:
        """The float weight [N, K] the GEMM multiplies, rounded once to `dtype`."""
        codes = self.unpack(packed, in_features)
        n = codes.shape[0]
        if self.block_scaled:
            values = decode_elements(codes, self.weight)
            g = BLOCK_SCALED[self.act_granularity]
            if self.act_granularity == "mx":
                full = decode_e8m0(scales).t().repeat_interleave(g, 1)
            else:
                full = (decode_e4m3(scales) * zeros.double()).t().repeat_interleave(g, 1)
            return (values * full).to(dtype)
        if self.weight == "int4":
            values = codes.double() - zeros.double().t().repeat_interleave(self.group_size, 1)
            full = scales.double().t().repeat_interleave(self.group_size, 1)
        else:
            values = codes.view(torch.int8).double() if self.weight == "int8" else \
                codes.view(torch.float8_e4m3fn).double()
            if self.weight_granularity == "block":
                full = scales.double().repeat_interleave(BLOCK, 0)[:n].repeat_interleave(BLOCK, 1)
            else:
                full = scales.double()[:, None]
        return (values * full).to(dtype)

    # --- the matmul ----------------------------------------------------------------------
    def linear(self, x, packed, scales, zeros, bias, counters, *, dtype, out_features, in_features, table=None):
        from .. import ops

        return ops.scaled_linear_checked(x, packed, scales, zeros, bias, counters, self, dtype=dtype,
                                         out_features=out_features, in_features=in_features)

    def stored_call(self, storage, *, dtype, out_features, in_features) -> tuple:
        """(tqk.ops function, arguments) for a QuantizedLinear's one buffer (Layout.stored_call): the GEMM
        takes views of it (packed, scales, zeros), which compile to views."""
        views = tuple(dict(storage.segments)[n].as_tuple() if storage.has(n) else None
                      for n in ("packed", "scales", "zeros"))
        return "stored_scaled_linear", (dtype, out_features, in_features, self.act, self.weight,
                                        self.act_granularity, self.weight_granularity, self.group_size,
                                        self.static_scale, self.symmetric, self.act_quant, self.scaling_mode, views)
