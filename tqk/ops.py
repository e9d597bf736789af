"""torch.library registration: each kernel family is one op, so torch.compile sees a shape-correct
node (no graph break, dynamic M, CUDA graphs).

On a GPU the op is a `triton_op`: inductor traces its body and launches the Triton kernel from its
own generated code, with no Python dispatch per call (a `custom_op` cost 150-290 us of CPU per call
without CUDA graphs, measured on the H200). The kernel and tile are chosen while tracing: from M
itself when M is static, and when M is dynamic from its region (`M_REGIONS`), so a graph serves a
whole region and M varies with at most one compile per region. Under Triton's interpreter (CPU)
`triton_op` cannot run inside inductor, so there the op is a `custom_op` with a fake impl and picks
the config per call.
"""
from __future__ import annotations

import functools
from typing import Optional

import torch
from torch.library import wrap_triton

from .kernels import reference
from .kernels.tuning import M_REGIONS, select_config
from .kernels.scaled_mm import launch_scaled_mm, quantize_in_prologue, scaled_config
from .kernels.weight_only import WeightFormat, interpreting, launch_weight_only
from .layouts.storage import stored_views, view_at
from .quant.activation import activation_scales, quantize_activation

ACTIVATION_DTYPES = (torch.bfloat16, torch.float16, torch.float32)

def _config_m(m) -> int:
    """The M whose config serves this call: m itself, or for a symbolic m its region's stand-in
    (the comparison is a guard, so the graph is reused across the region and recompiled outside it)."""
    if not isinstance(m, torch.SymInt):
        return m
    for last, stand_in in M_REGIONS:
        if last is None or m <= last:
            return stand_in
    raise AssertionError("unreachable: the last region is open")


def _weight_only_linear(
    x: torch.Tensor, packed: torch.Tensor, scales: Optional[torch.Tensor], zeros: Optional[torch.Tensor],
    bias: Optional[torch.Tensor], counters: Optional[torch.Tensor], table: Optional[torch.Tensor], bits: int,
    element: str, zero_mode: str, zero_offset: int, group_size: int, span: int, scale_fmt: str, vector_size: int,
    out_features: int, in_features: int, stored: Optional[list[int]] = None,
) -> torch.Tensor:
    """out[..., N] = x[..., K] @ dequantize(packed, scales, zeros).T + bias.

    table: a codebook's entries (element "lut", tqk/layouts/codebook.py), else None; [2**bits,
    vector_size] when a code stands for vector_size input features.

    stored: a QuantizedLinear's one buffer is `packed` (scales, zeros, table None) and this says where
    the rest sits in it (Storage.kernel_args, tqk/layouts/storage.py): one graph input per layer.

    counters: the layer's zeroed split-K slots, or None. The kernel counts in them and sets them
    back to zero, so the op is declared functional (which lets it have an autograd formula): no
    value it reads changes. Inductor, tracing the triton_op, sees the kernel write them and keeps
    that write on the layer's own buffer."""
    fmt = WeightFormat(bits, element, zero_mode, zero_offset, group_size, span, scale_fmt, vector_size)
    x2d = x.reshape(-1, in_features)
    if x2d.stride(-1) != 1:
        x2d = x2d.contiguous()
    m = x2d.shape[0]
    if not isinstance(m, torch.SymInt) and m == 0:
        return x.new_empty(*x.shape[:-1], out_features)
    config = select_config(fmt.key, out_features, in_features, _config_m(m), x.device)
    out = launch_weight_only(x2d, packed, scales, zeros, bias, fmt, out_features, in_features, config,
                             counters=counters, wrap=_WRAP, table=table, stored=stored)
    return out.reshape(*x.shape[:-1], out_features)


if interpreting():
    _WRAP = None  # launch the kernel itself
    weight_only_linear = torch.library.custom_op("tqk::weight_only_linear", mutates_args=())(
        _weight_only_linear)

    @weight_only_linear.register_fake
    def _(x, packed, scales, zeros, bias, counters, table, bits, element, zero_mode, zero_offset, group_size, span,
          scale_fmt, vector_size, out_features, in_features, stored=None):
        return x.new_empty(*x.shape[:-1], out_features)
else:
    _WRAP = wrap_triton
    weight_only_linear = torch.library.triton_op("tqk::weight_only_linear", mutates_args=())(
        _weight_only_linear)


def _setup_context(ctx, inputs, output):
    (x, packed, scales, zeros, bias, counters, table, bits, element, zero_mode, zero_offset, group_size, span,
     scale_fmt, vector_size, n, k, *stored) = inputs
    ctx.fmt = WeightFormat(bits, element, zero_mode, zero_offset, group_size, span, scale_fmt, vector_size)
    if stored and stored[0] is not None:
        packed, scales, zeros, table = stored_views(packed, stored[0], ctx.fmt, n, x.dtype)
    ctx.save_for_backward(packed, scales, zeros, table)
    ctx.in_features = k
    ctx.x_dtype = x.dtype
    ctx.has_bias = bias is not None


def _backward(ctx, grad):
    """Gradients for x and bias (the quantized weight is frozen); the weight is dequantized
    here, in the backward pass only, for fine-tuning around quantized layers (LoRA, QAT)."""
    packed, scales, zeros, table = ctx.saved_tensors
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        w = reference.dequantize(packed, scales, zeros, ctx.fmt, ctx.in_features, ctx.x_dtype, table)
        grad_x = grad @ w
    if ctx.has_bias and ctx.needs_input_grad[4]:
        grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0)
    return (grad_x, None, None, None, grad_bias) + (None,) * 13


weight_only_linear.register_autograd(_backward, setup_context=_setup_context)


def check_linear_inputs(x, bias, *, dtype: torch.dtype, device: torch.device, in_features: int,
                        out_features: int):
    """Raise a clear error for an input the kernels cannot take; run before the op (and, under
    torch.compile, while tracing: a call with a new dtype or device recompiles and raises here)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"linear input must be a tensor, got {type(x).__name__}")
    if x.dtype not in ACTIVATION_DTYPES:
        raise TypeError(f"tqk linear takes bfloat16, float16 or float32 input, got {x.dtype}")
    if x.dtype != dtype:
        raise TypeError(f"input dtype {x.dtype} does not match the quantized weight's dtype {dtype}")
    if x.dim() == 0 or x.shape[-1] != in_features:
        raise ValueError(f"input of shape {tuple(x.shape)}: last dim must be in_features={in_features}")
    if x.device != device:
        raise ValueError(f"input is on {x.device} but the quantized weight is on {device}")
    if x.device.type != "cuda" and not interpreting():
        raise ValueError(f"tqk's kernels run on CUDA, or on the CPU only through Triton's interpreter "
                         f"(TRITON_INTERPRET=1, which tqk sets on a machine without a GPU); this layer and "
                         f"its input are on {x.device}: move it to the GPU")
    if bias is not None:
        if bias.shape != (out_features,) or bias.dtype != x.dtype or bias.device != x.device:
            raise ValueError(f"bias must be a {x.dtype} tensor of shape ({out_features},) on {x.device}, "
                             f"got {bias.dtype} {tuple(bias.shape)} on {bias.device}")


def check_packed_words(shape, fmt: WeightFormat, in_features: int) -> None:
    """A weight-only layout's packed words are [N, fmt.packed_words(K)] (`shape`). 3-, 5-, 6- and 7-bit
    words of tqk before 2026-12-02 (4- and 8-bit slots) are wider, and the kernels would misread them."""
    want = fmt.packed_words(in_features)
    if len(shape) != 2 or shape[1] != want:
        raise ValueError(f"packed words of shape {tuple(shape)} for {fmt.bits}-bit codes of K={in_features}: "
                         f"expected [N, {want}] (tqk/layouts/packing.py; 3-, 5-, 6- and 7-bit weights packed "
                         f"before dense packing took 4- or 8-bit slots: quantize them again)")


def quantized_linear(x, packed, scales, zeros, bias, counters, fmt: WeightFormat, *, dtype: torch.dtype,
                     out_features: int, in_features: int, table: torch.Tensor | None = None) -> torch.Tensor:
    """Check the inputs, then run the op: what QuantizedLinear.forward and QuantizedLinearWeight.linear
    both call. table: a codebook layout's entries (the layout checks its shape), else None."""
    check_linear_inputs(x, bias, dtype=dtype, device=packed.device, in_features=in_features,
                        out_features=out_features)
    check_packed_words(packed.shape, fmt, in_features)
    return weight_only_linear(x, packed, scales, zeros, bias, counters, table, fmt.bits, fmt.element, fmt.zero_mode,
                              fmt.zero_offset, fmt.group_size, fmt.span, fmt.scale_fmt, fmt.vector_size, out_features,
                              in_features)


def stored_linear(x, data, bias, counters, dtype, out_features, in_features, bits, element, zero_mode, zero_offset,
                  group_size, span, scale_fmt, vector_size, stored) -> torch.Tensor:
    """quantized_linear on a QuantizedLinear's one buffer `data` (tqk/layouts/storage.py); the arguments after
    counters are Layout.stored_call's. The kernel gets the buffer and the byte offsets in it."""
    check_linear_inputs(x, bias, dtype=dtype, device=data.device, in_features=in_features,
                        out_features=out_features)
    return weight_only_linear(x, data, None, None, bias, counters, None, bits, element, zero_mode, zero_offset,
                              group_size, span, scale_fmt, vector_size, out_features, in_features, list(stored))


# ------------------------------------------------------------------------------------------
# Activation-quantized linear (8-bit x 8-bit or 4-bit on tensor cores): one op, the activation's
# quantization (torch ops, which inductor fuses into the kernel before it) then the GEMM
# ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)  # eager calls rebuild it from the op's arguments: validate once
def _scaled_layout(act, weight, act_granularity, weight_granularity, group_size, static_scale, symmetric, act_quant,
                   scaling_mode):
    from .layouts.scaled import ScaledLayout

    return ScaledLayout(group_size=group_size, act=act, weight=weight, act_granularity=act_granularity,
                        weight_granularity=weight_granularity, static_scale=static_scale, symmetric=symmetric,
                        act_quant=act_quant, scaling_mode=scaling_mode)


def _scaled_linear(
    x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, zeros: Optional[torch.Tensor],
    bias: Optional[torch.Tensor], counters: Optional[torch.Tensor], act: str, weight: str, act_granularity: str,
    weight_granularity: str, group_size: int, static_scale: float, symmetric: bool, act_quant: str, scaling_mode: str,
    out_features: int, in_features: int,
) -> torch.Tensor:
    """out[..., N] = quantize(x)[..., K] @ W_codes.T * scales + bias (tqk/kernels/scaled_mm.py): the
    activation's scales (and, on the codes path, its codes) in torch ops, then the GEMM. counters: the
    layer's zeroed split-K slots, or None (functional as in weight_only_linear: left at zero)."""
    layout = _scaled_layout(act, weight, act_granularity, weight_granularity, group_size, static_scale, symmetric,
                            act_quant, scaling_mode)
    fmt = layout.scaled_format()
    x2d = x.reshape(-1, in_features)
    m = x2d.shape[0]
    if not isinstance(m, torch.SymInt) and m == 0:
        return x.new_empty(*x.shape[:-1], out_features)
    config_m = _config_m(m)
    prologue = quantize_in_prologue(act_quant, fmt.a_scale, config_m)
    if prologue:  # the GEMM reads x itself
        a = x2d if x2d.stride(-1) == 1 else x2d.contiguous()
        a_scales = activation_scales(a, act, act_granularity, static_scale)
    else:
        a, a_scales = quantize_activation(x2d, act, act_granularity, static_scale, scaling_mode)
    config = scaled_config(fmt, config_m, out_features, in_features, prologue, x.device)
    out = launch_scaled_mm(a, a_scales, packed, scales, zeros, bias, fmt, out_features, in_features, x.dtype,
                           config, prologue, interpreting(), counters=counters, wrap=_WRAP)
    return out.reshape(*x.shape[:-1], out_features)


if interpreting():
    scaled_linear = torch.library.custom_op("tqk::scaled_linear", mutates_args=())(_scaled_linear)

    @scaled_linear.register_fake
    def _(x, packed, scales, zeros, bias, counters, act, weight, act_granularity, weight_granularity, group_size,
          static_scale, symmetric, act_quant, scaling_mode, out_features, in_features):
        return x.new_empty(*x.shape[:-1], out_features)
else:
    scaled_linear = torch.library.triton_op("tqk::scaled_linear", mutates_args=())(_scaled_linear)


def _scaled_setup_context(ctx, inputs, output):
    x, packed, scales, zeros, bias, counters, *fmt, n, k = inputs
    ctx.save_for_backward(packed, scales, zeros)
    ctx.layout, ctx.in_features, ctx.x_dtype, ctx.has_bias = _scaled_layout(*fmt), k, x.dtype, bias is not None


def _scaled_backward(ctx, grad):
    """Gradients for x (through the dequantized weight, straight through the activation's rounding)
    and bias; the quantized weight is frozen."""
    packed, scales, zeros = ctx.saved_tensors
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        grad_x = grad @ ctx.layout.dequantize(packed, scales, zeros, ctx.in_features, ctx.x_dtype)
    if ctx.has_bias and ctx.needs_input_grad[4]:
        grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0)
    return (grad_x, None, None, None, grad_bias) + (None,) * 12


scaled_linear.register_autograd(_scaled_backward, setup_context=_scaled_setup_context)


def scaled_linear_checked(x, packed, scales, zeros, bias, counters, layout, *, dtype: torch.dtype,
                          out_features: int, in_features: int) -> torch.Tensor:
    """Check the inputs, then run the activation-quantized op (ScaledLayout.linear)."""
    check_linear_inputs(x, bias, dtype=dtype, device=packed.device, in_features=in_features,
                        out_features=out_features)
    return scaled_linear(x, packed, scales, zeros, bias, counters, layout.act, layout.weight, layout.act_granularity,
                         layout.weight_granularity, layout.group_size, layout.static_scale, layout.symmetric,
                         layout.act_quant, layout.scaling_mode, out_features, in_features)


def stored_scaled_linear(x, data, bias, counters, dtype, out_features, in_features, act, weight, act_granularity,
                         weight_granularity, group_size, static_scale, symmetric, act_quant, scaling_mode,
                         views) -> torch.Tensor:
    """scaled_linear on views of a QuantizedLinear's one buffer; the arguments after counters are
    ScaledLayout.stored_call's, views the (offset, shape, dtype) of packed, scales and zeros (or None)."""
    packed, scales, zeros = (None if v is None else view_at(data, *v) for v in views)
    check_linear_inputs(x, bias, dtype=dtype, device=data.device, in_features=in_features,
                        out_features=out_features)
    return scaled_linear(x, packed, scales, zeros, bias, counters, act, weight, act_granularity, weight_granularity,
                         group_size, static_scale, symmetric, act_quant, scaling_mode, out_features, in_features)
