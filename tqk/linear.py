"""QuantizedLinear: what quantize_ turns each selected nn.Linear into.

The packed tensors are plain buffers and forward calls the op on them. Why not an nn.Linear holding
the tensor-subclass weight: under torch.compile a subclass parameter is unwrapped by AOTAutograd in
Python on every call, and each of its size()/stride() guards runs the subclass's
`__torch_function__`. For 33 layers that cost 0.75-1.42 ms of CPU per CUDA-graph replay on the H200,
where bf16 costs 0.2 ms. Plain buffers are ordinary graph inputs, and as few as can be: every graph
input costs CPU time on each replay, so scales and zero points are one buffer (`qparams`, sliced in
forward, which compiles to views) and the split-K counters are one buffer per device.

What users rely on stays: `layer.weight` is a QuantizedLinearWeight over the same buffers
(`.dequantize()`, `.packed_nbytes`), `state_dict()` holds it under `weight` (loadable with
`torch.load(weights_only=True)`), and `isinstance(layer, nn.Linear)` holds.
"""
from __future__ import annotations

import torch
from torch import nn

from .tensor import QuantizedLinearWeight


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
        # Byte scales (E8M0, e4m3 codes) keep their float partner (NVFP4's float32 tensor scale) in a buffer of its
        # own, as int32 bits: a float cast of the model (.half()) must not round it.
        byte_scales = not weight.scales.is_floating_point()
        if weight.zeros is not None and weight.zeros.dtype != weight.scales.dtype and not byte_scales:
            raise ValueError(f"zero points ({weight.zeros.dtype}) and scales ({weight.scales.dtype}) must share a dtype")
        self.quant_layout = weight.quant_layout
        self.weight_dtype = weight.dtype
        self._has_zeros = weight.zeros is not None and not byte_scales
        self._set_buffer("packed", weight.packed.detach())
        self._set_buffer("qparams", weight.scales.detach() if not self._has_zeros else
                         torch.stack([weight.scales.detach(), weight.zeros.detach()]))
        self._set_buffer("table", None if weight.table is None else weight.table.detach())  # codebooks' entries
        self._set_buffer("tensor_scale_bits", weight.zeros.detach().float().view(torch.int32)
                         if byte_scales and weight.zeros is not None else None)
        self._refresh_counters()

    def _set_buffer(self, name, t):
        if name in self._buffers:
            self._buffers[name] = t
        else:  # not persistent: state_dict holds the weight as one QuantizedLinearWeight instead
            self.register_buffer(name, t, persistent=False)

    def _refresh_counters(self):
        self._set_buffer("split_counters", self.quant_layout.split_counters(self.out_features, self.in_features,
                                                                             self.packed.device))

    @property
    def scales(self) -> torch.Tensor:
        return self.qparams[0] if self._has_zeros else self.qparams

    @property
    def zeros(self) -> torch.Tensor | None:
        if self._has_zeros:
            return self.qparams[1]
        return None if self.tensor_scale_bits is None else self.tensor_scale_bits.view(torch.float32)

    @property
    def weight(self) -> QuantizedLinearWeight:
        return QuantizedLinearWeight(self.packed, self.scales, self.zeros, self.quant_layout,
                                     (self.out_features, self.in_features), self.weight_dtype, self.table)

    def __setattr__(self, name, value):
        if name == "weight":  # nn.Module would try to register a Parameter under the property's name
            return self._adopt(value)
        super().__setattr__(name, value)

    def _apply(self, fn, recurse=True):
        """.to(device) / .cuda() move the buffers (and remake the counters there); a float cast
        (.half(), .float()) casts scales and zero points and the layer then takes that dtype."""
        super()._apply(fn, recurse)
        if not self.qparams.is_floating_point():  # byte scales: the cast the model dtype takes
            self.weight_dtype = fn(torch.empty(0, dtype=self.weight_dtype)).dtype
        elif self.qparams.dtype != self.weight_dtype:
            self.weight_dtype = self.qparams.dtype
        self._refresh_counters()
        return self

    # --- state_dict: `weight` is the QuantizedLinearWeight ---------------------------------
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination[prefix + "weight"] = self.weight
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
        return self.quant_layout.linear(x, self.packed, self.scales, self.zeros, self.bias, self.split_counters,
                                        dtype=self.weight_dtype, out_features=self.out_features,
                                        in_features=self.in_features, table=self.table)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
                f"dtype={self.weight_dtype}, layout={self.quant_layout}")
