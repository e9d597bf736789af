"""torch.library registration: each kernel family is one op with a fake implementation, so
torch.compile sees a shape-correct opaque node (no graph break, dynamic M, CUDA graphs).

`custom_op` is used on every device: under TRITON_INTERPRET=1 `triton_op` fails inside inductor,
and on CUDA the op is a single launch either way (the launch is chosen per call by M).
"""
from __future__ import annotations

from typing import Optional

import torch

from .kernels import reference
from .kernels.tuning import select_config
from .kernels.weight_only import WeightFormat, launch_weight_only


@torch.library.custom_op("tqk::weight_only_linear", mutates_args=())
def weight_only_linear(
    x: torch.Tensor, packed: torch.Tensor, scales: torch.Tensor, zeros: Optional[torch.Tensor],
    bias: Optional[torch.Tensor], bits: int, element: str, zero_mode: str, zero_offset: int,
    group_size: int, span: int, out_features: int, in_features: int,
) -> torch.Tensor:
    """out[..., N] = x[..., K] @ dequantize(packed, scales, zeros).T + bias."""
    fmt = WeightFormat(bits, element, zero_mode, zero_offset, group_size, span)
    x2d = x.reshape(-1, in_features)
    if x2d.stride(-1) != 1:
        x2d = x2d.contiguous()
    config = select_config(fmt.key, out_features, in_features, x2d.shape[0], x.device)
    if x2d.shape[0] == 0:
        return x.new_empty(*x.shape[:-1], out_features)
    out = launch_weight_only(x2d, packed, scales, zeros, bias, fmt, out_features, in_features, config)
    return out.reshape(*x.shape[:-1], out_features)


@weight_only_linear.register_fake
def _(x, packed, scales, zeros, bias, bits, element, zero_mode, zero_offset, group_size, span,
      out_features, in_features):
    return x.new_empty(*x.shape[:-1], out_features)


def _setup_context(ctx, inputs, output):
    x, packed, scales, zeros, bias, bits, element, zero_mode, zero_offset, group_size, span, n, k = inputs
    ctx.save_for_backward(packed, scales, zeros)
    ctx.fmt = WeightFormat(bits, element, zero_mode, zero_offset, group_size, span)
    ctx.in_features = k
    ctx.x_dtype = x.dtype
    ctx.has_bias = bias is not None


def _backward(ctx, grad):
    """Gradients for x and bias (the quantized weight is frozen); the weight is dequantized
    here, in the backward pass only, for fine-tuning around quantized layers (LoRA, QAT)."""
    packed, scales, zeros = ctx.saved_tensors
    grad_x = grad_bias = None
    if ctx.needs_input_grad[0]:
        w = reference.dequantize(packed, scales, zeros, ctx.fmt, ctx.in_features, ctx.x_dtype)
        grad_x = grad @ w
    if ctx.has_bias and ctx.needs_input_grad[4]:
        grad_bias = grad.reshape(-1, grad.shape[-1]).sum(0)
    return grad_x, None, None, None, grad_bias, None, None, None, None, None, None, None, None


weight_only_linear.register_autograd(_backward, setup_context=_setup_context)
