"""QuantizedLinearWeight: the tensor subclass that replaces nn.Linear.weight.

It looks like the float weight (shape [N, K], the model's dtype) and holds the packed tensors
of its layout. F.linear on it runs the layout's Triton op; `.dequantize()` gives the float
weight back. It flattens to its inner tensors (__tensor_flatten__), so torch.compile traces
through it and torch.save / torch.load(weights_only=True) / load_state_dict(assign=True) work.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import return_and_correct_aliasing

from .layouts import AffineLayout, CodebookLayout, Float8Layout, FpxLayout, Layout, ScaledLayout


class QuantizedLinearWeight(torch.Tensor):
    """packed, scales, zeros (or None) and, for a codebook layout, table (else None): the tensors of
    the layout (tqk/layouts/base.py)."""

    @staticmethod
    def __new__(cls, packed, scales, zeros, layout: Layout, shape, dtype, table=None):
        return torch.Tensor._make_wrapper_subclass(cls, shape, dtype=dtype, device=packed.device, requires_grad=False)

    def __init__(self, packed, scales, zeros, layout: Layout, shape, dtype, table=None):
        self.packed = packed
        self.scales = scales
        self.zeros = zeros
        self.table = table
        self.quant_layout = layout

    # --- what a user sees -------------------------------------------------------------
    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def in_features(self) -> int:
        return self.shape[1]

    @property
    def packed_nbytes(self) -> int:
        """Bytes the kernel reads for this weight: packed codes, scales and zero points."""
        return sum(t.numel() * t.element_size() for t in self._inner())

    def dequantize(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        return self.quant_layout.dequantize(self.packed, self.scales, self.zeros, self.in_features, dtype or self.dtype,
                                            self.table)

    def codes(self) -> torch.Tensor:
        """The unpacked integer codes [N, K] (uint8)."""
        return self.quant_layout.unpack(self.packed, self.in_features)

    def __repr__(self):
        return (f"QuantizedLinearWeight(shape={tuple(self.shape)}, dtype={self.dtype}, "
                f"quant_layout={self.quant_layout}, device={self.device})")

    # --- the matmul -------------------------------------------------------------------
    def linear(self, x: torch.Tensor, bias: torch.Tensor | None = None, counters: torch.Tensor | None = None):
        """x @ W.T + bias through the layout's op. counters: zeroed split-K slots that the caller keeps
        (tqk.QuantizedLinear does); without them a split-K GEMV zeroes its own for each call."""
        return self.quant_layout.linear(x, self.packed, self.scales, self.zeros, bias, counters, dtype=self.dtype,
                                        out_features=self.out_features, in_features=self.in_features,
                                        table=self.table)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight = args[0], args[1]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if isinstance(weight, cls) and not isinstance(x, cls):
                return weight.linear(x, bias)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    # --- tensor plumbing --------------------------------------------------------------
    def _stable_hash_for_caching(self) -> str:
        """Compile caches key on this: the metadata (inner tensors are graph inputs)."""
        return f"{self.quant_layout}|{tuple(self.shape)}|{self.dtype}"

    def _inner(self):
        return [t for t in (self.packed, self.scales, self.zeros, self.table) if t is not None]

    def __tensor_flatten__(self):
        names = ["packed", "scales"] + [name for name in ("zeros", "table") if getattr(self, name) is not None]
        return names, (self.quant_layout, tuple(self.shape), self.dtype)

    @classmethod
    def __tensor_unflatten__(cls, inner, meta, outer_size, outer_stride):
        layout, shape, dtype = meta
        return cls(inner["packed"], inner["scales"], inner.get("zeros"), layout, shape, dtype, inner.get("table"))

    def _apply_inner(self, fn):
        def opt(t):
            return None if t is None else fn(t)
        return QuantizedLinearWeight(fn(self.packed), fn(self.scales), opt(self.zeros), self.quant_layout,
                                     tuple(self.shape), self.dtype, opt(self.table))

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = _DISPATCH.get(func)
        if handler is None:
            raise NotImplementedError(
                f"QuantizedLinearWeight does not support {func}; use F.linear, or call .dequantize() first")
        return handler(func, args, kwargs)


def _same_tensor(func, args, kwargs):
    """detach / alias / clone: the same op on every inner tensor."""
    self = args[0]
    out = self._apply_inner(lambda t: func(t, *args[1:], **kwargs))
    if func is torch.ops.aten.clone.default:
        return out
    return return_and_correct_aliasing(func, args, kwargs, out)


def _to_copy(func, args, kwargs):
    self = args[0]
    dtype = kwargs.pop("dtype", None)
    if dtype is not None and dtype != self.dtype:
        raise TypeError(f"a QuantizedLinearWeight cannot change dtype ({self.dtype} -> {dtype}); "
                        "quantize the model after casting it")
    kwargs.pop("layout", None)
    return self._apply_inner(lambda t: func(t, **kwargs))


def _copy_(func, args, kwargs):
    dst, src = args[0], args[1]
    if not (isinstance(src, QuantizedLinearWeight) and src.quant_layout == dst.quant_layout and src.shape == dst.shape
            and src.dtype == dst.dtype):
        raise ValueError(f"cannot copy {type(src).__name__} into a QuantizedLinearWeight of layout {dst.quant_layout}")
    for d, s in zip(dst._inner(), src._inner()):
        d.copy_(s)
    return dst


_aten = torch.ops.aten
_DISPATCH = {
    _aten.detach.default: _same_tensor,
    _aten.alias.default: _same_tensor,
    _aten.clone.default: _same_tensor,
    _aten._to_copy.default: _to_copy,
    _aten.copy_.default: _copy_,
    _aten._has_compatible_shallow_copy_type.default: lambda f, a, k: True,
}

# torch.load(weights_only=True) rebuilds only allow-listed classes; these are tqk's own, so
# listing them changes nothing for any other checkpoint.
torch.serialization.add_safe_globals([QuantizedLinearWeight, AffineLayout, CodebookLayout, Float8Layout, FpxLayout,
                                      ScaledLayout])
