"""Configs say what the user asked for; a handler registered per config type does it.

quantize_ looks up the handler of the config's type and knows nothing about formats. A handler
takes the float weight and returns a QuantizedLinearWeight, or raises CannotQuantize with the
reason a layer is left in float (shape, dtype, non-finite values), which quantize_ reports.
"""
from __future__ import annotations

from typing import Callable

import torch

HANDLERS: dict[type, Callable] = {}


class CannotQuantize(Exception):
    """This layer's weight cannot take this config; the message says why."""


class QuantConfig:
    """Base of tqk's configs (frozen dataclasses)."""


def register_handler(config_type: type):
    def wrap(fn):
        HANDLERS[config_type] = fn
        return fn
    return wrap


def quantize_weight(weight: torch.Tensor, config: QuantConfig):
    """Quantize one [out_features, in_features] float weight with `config`."""
    handler = HANDLERS.get(type(config))
    if handler is None:
        raise TypeError(f"{type(config).__name__} is not a tqk config (known: {[c.__name__ for c in HANDLERS]})")
    check_weight(weight)
    return handler(weight, config)


def check_weight(weight: torch.Tensor):
    from ..tensor import QuantizedLinearWeight  # configs know the tensor type only to refuse it

    if isinstance(weight, QuantizedLinearWeight):
        raise ValueError("this weight is already quantized by tqk: a config cannot be applied twice")
    if weight.dim() != 2:
        raise CannotQuantize(f"weight must be 2-D [out_features, in_features], got shape {tuple(weight.shape)}")
    if weight.dtype not in (torch.bfloat16, torch.float16, torch.float32):
        raise CannotQuantize(f"weight dtype {weight.dtype}: tqk kernels run bfloat16, float16 or float32 models")
    if weight.device.type == "meta":
        raise CannotQuantize("weight is on the meta device: load or materialize it before quantize_")
    if not bool(torch.isfinite(weight).all()):
        raise CannotQuantize("weight has NaN or Inf values")


def check_group_size(group_size: int, in_features: int, allowed=None):
    if allowed is not None and group_size not in allowed:
        raise ValueError(f"group_size={group_size} is not supported; choose one of {sorted(allowed)}")
    if in_features % group_size:
        raise CannotQuantize(f"group_size={group_size} does not divide in_features={in_features}")
