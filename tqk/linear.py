"""QuantizedLinear: what quantize_ turns each selected nn.Linear into.

The layer's quantized tensors live in one plain int32 buffer, `data` (tqk/layouts/storage.py), and
forward calls the op on it. Why not an nn.Linear holding the tensor-subclass weight: under
torch.compile a subclass parameter is unwrapped by AOTAutograd in Python on every call, and each of
its size()/stride() guards runs the subclass's `__torch_function__`. For 33 layers that cost
0.75-1.42 ms of CPU per CUDA-graph replay on the H200, where bf16 costs 0.2 ms. Plain buffers are
ordinary graph inputs, and as few as can be: every graph input costs CPU time on each replay, so
codes, scales, zero points and table are one buffer (the weight-only kernels read it at offsets) and
the split-K counters are one buffer per device, shared by every layer.

What users rely on stays: `layer.weight` is a QuantizedLinearWeight over views of the buffer
(`.dequantize()`, `.packed_nbytes`), `state_dict()` holds it under `weight` (loadable with
`torch.load(weights_only=True)`), and `isinstance(layer, nn.Linear)` holds.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import ops
from .layouts.storage import Storage
from .tensor import QuantizedLinearWeight


@dataclass(frozen=True)
class LayerSpec:
    """What forward needs besides tensors: the layout, where its tensors sit in the buffer, the dtype, and
    `call`, the layout's stored_call (a tqk.ops function's name and its constant arguments)."""

    layout: object  # a Layout (tqk/layouts)
    storage: Storage
    dtype: torch.dtype
    call: tuple

    @property
    def key(self) -> str:
        """call, spelled out: what forward reads from the layer (_call_of)."""
        return repr(self.call)


_CALLS: dict[str, tuple] = {}  # LayerSpec.key -> call, for every layer made in this process (a few per model)


@torch.compiler.assume_constant_result
def _call_of(key: str) -> tuple:
    """The call a layer's spec key names. Under torch.compile forward reads one string from the layer (one
    guard) and this runs while tracing: its result is plain constants, which dynamo takes without guards.
    Reading the layout, storage and dtype from the layer instead guarded every field read, on every call:
    30-40 guards per layer, 15-50 us of host time per decode step (docs/perf-notes.md)."""
    return _CALLS[key]


class QuantizedLinear(nn.Linear):
    """out = x @ dequantize(weight).T + bias, the weight decoded inside the Triton kernel."""

    def __init__(self, weight: QuantizedLinearWeight, bias: torch.Tensor | None = None):
        nn.Module.__init__(self)  # not nn.Linear's: it would allocate a float weight
        self.in_features, self.out_features = weight.in_features, weight.out_features
        self._adopt(weight)
        self.bias = None if bias is None else nn.Parameter(bias.detach(), requires_grad=bias.requires_grad)

    @classmethod
    def convert_(cls, linear: nn.Linear, weight: QuantizedLinearWeight) -> "QuantizedLinear":
        """Turn `linear` itself into a QuantizedLinear (its hooks, name and bias are kept), so quantize_
        works in place even when the model is a single nn.Linear."""
        del linear._parameters["weight"]
        linear.__class__ = cls
        linear._adopt(weight)
        return linear

    # --- the weight -------------------------------------------------------------------
    def _adopt(self, weight: QuantizedLinearWeight):
        if not isinstance(weight, QuantizedLinearWeight):
            raise TypeError(f"QuantizedLinear.weight takes a QuantizedLinearWeight, got {type(weight).__name__}; "
                            "quantize a float weight with tqk.quantize_weight(weight, config)")
        if tuple(weight.shape) != (self.out_features, self.in_features):
            raise ValueError(f"weight of shape {tuple(weight.shape)} for a layer of shape "
                             f"({self.out_features}, {self.in_features})")
        # Byte scales (E8M0, e4m3 codes) keep their float partner (NVFP4's float32 tensor scale) as it is: a float
        # cast of the model (.half()) must not round it. Float scales, zero points and tables are in the model's
        # dtype, which is what the kernels read them as (stored_pointers).
        byte_scales = not weight.scales.is_floating_point()
        if weight.zeros is not None and weight.zeros.dtype != weight.scales.dtype and not byte_scales:
            raise ValueError(f"zero points ({weight.zeros.dtype}) and scales ({weight.scales.dtype}) must share a dtype")
        if not byte_scales and weight.scales.dtype != weight.dtype:
            raise ValueError(f"scales ({weight.scales.dtype}) must be in the weight's dtype ({weight.dtype})")
        weight.quant_layout.check_table(weight.table)
        tensors = dict(packed=weight.packed, scales=weight.scales, zeros=weight.zeros, table=weight.table)
        follows = dict(scales=not byte_scales, zeros=not byte_scales, table=True)
        storage, data = Storage.pack(tensors, follows)
        self.spec = self._spec(weight.quant_layout, storage, weight.dtype)
        self._set_buffer("data", data)
        self._refresh_counters()

    def _spec(self, layout, storage, dtype) -> LayerSpec:
        call = layout.stored_call(storage, dtype=dtype, out_features=self.out_features, in_features=self.in_features)
        spec = LayerSpec(layout, storage, dtype, call)
        _CALLS.setdefault(spec.key, call)
        self.spec_key = spec.key
        return spec

    def __setstate__(self, state):  # unpickled (torch.load of a whole model, deepcopy): this process learns the call
        super().__setstate__(state)
        _CALLS.setdefault(self.spec.key, self.spec.call)

    @property
    def quant_layout(self):
        return self.spec.layout

    @property
    def weight_dtype(self) -> torch.dtype:
        return self.spec.dtype

    @property
    def storage(self) -> Storage:
        return self.spec.storage

    def _set_buffer(self, name, t):
        if name in self._buffers:
            self._buffers[name] = t
        else:  # not persistent: state_dict holds the weight as one QuantizedLinearWeight instead
            self.register_buffer(name, t, persistent=False)

    def _refresh_counters(self):
        self._set_buffer("split_counters", self.quant_layout.split_counters(self.out_features, self.in_features,
                                                                             self.data.device))

    @property
    def packed(self) -> torch.Tensor:
        return self.storage.get(self.data, "packed")

    @property
    def scales(self) -> torch.Tensor:
        return self.storage.get(self.data, "scales")

    @property
    def zeros(self) -> torch.Tensor | None:
        return self.storage.get(self.data, "zeros")

    @property
    def table(self) -> torch.Tensor | None:
        return self.storage.get(self.data, "table")

    @property
    def weight(self) -> QuantizedLinearWeight:
        return QuantizedLinearWeight(self.packed, self.scales, self.zeros, self.quant_layout,
                                     (self.out_features, self.in_features), self.weight_dtype, self.table)

    def __setattr__(self, name, value):
        if name == "weight":  # nn.Module would try to register a Parameter under the property's name
            return self._adopt(value)
        super().__setattr__(name, value)

    def _apply(self, fn, recurse=True):
        """.to(device) / .cuda() move the buffer (and remake the counters there); a float cast (.half(),
        .float()), which leaves an int32 buffer as it is, casts the scales, zero points and table in it, and
        the layer then takes that dtype."""
        super()._apply(fn, recurse)
        dtype = fn(torch.empty(0, dtype=self.weight_dtype)).dtype
        if dtype != self.weight_dtype and dtype.is_floating_point:
            storage, data = self.storage.cast(self.data, dtype)
            self.spec = self._spec(self.quant_layout, storage, dtype)
            self._set_buffer("data", data)
        self._refresh_counters()
        return self

    # --- state_dict: `weight` is the QuantizedLinearWeight ---------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # Copies out of the one buffer: torch.save cannot write views of one storage as different dtypes.
        destination[prefix + "weight"] = self.weight._apply_inner(lambda t: t.clone())
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "weight"
        if key in state_dict:
            w = state_dict[key]
            if not (isinstance(w, QuantizedLinearWeight) and w.quant_layout == self.quant_layout
                    and tuple(w.shape) == (self.out_features, self.in_features)):
                error_msgs.append(f"{key}: expected a QuantizedLinearWeight of layout {self.quant_layout} and shape "
                                  f"({self.out_features}, {self.in_features}), got {type(w).__name__} "
                                  f"{tuple(w.shape)}")
            elif w.quant_layout.family == "weight_only" and tuple(w.packed.shape) != (
                    self.out_features, w.quant_layout.weight_format().packed_words(self.in_features)):
                error_msgs.append(f"{key}: packed words {tuple(w.packed.shape)} are not those of "
                                  f"{self.quant_layout} (expected ({self.out_features}, "
                                  f"{w.quant_layout.weight_format().packed_words(self.in_features)}): 3-, 5-, 6- and "
                                  f"7-bit weights saved before dense packing (2026-12-02) must be quantized again)")
            elif local_metadata.get("assign_to_params_buffers", False):
                self._adopt(w)
            else:
                self.weight.copy_(w)
            state_dict = {k: v for k, v in state_dict.items() if k != key}
        elif strict:
            missing_keys.append(key)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # --- the matmul -------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        name, args = _call_of(self.spec_key)
        return getattr(ops, name)(x, self.data, self.bias, self.split_counters, *args)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"dtype={self.weight_dtype}, layout={self.quant_layout}")
