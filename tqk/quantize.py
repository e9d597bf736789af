"""quantize_: swap every selected nn.Linear weight for a QuantizedLinearWeight, in place."""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from .configs.base import CannotQuantize, QuantConfig, quantize_weight
from .linear import QuantizedLinear
from .tensor import QuantizedLinearWeight


@dataclass
class FqnToConfig:
    """Per-layer configs: keys are exact module names or "re:<pattern>" (full match); a value of
    None leaves the layer in float. An exact name wins over patterns; patterns are tried in
    order. "_default" applies to every nn.Linear that nothing else matches."""

    fqn_to_config: dict[str, QuantConfig | None] = field(default_factory=dict)

    def config_for(self, fqn: str, module: nn.Module) -> tuple[bool, QuantConfig | None]:
        """(matched, config)."""
        if fqn in self.fqn_to_config:
            return True, self.fqn_to_config[fqn]
        for key, config in self.fqn_to_config.items():
            if key.startswith("re:") and re.fullmatch(key[3:], fqn):
                return True, config
        if "_default" in self.fqn_to_config and isinstance(module, nn.Linear):
            return True, self.fqn_to_config["_default"]
        return False, None


@dataclass
class QuantizeReport:
    """What quantize_ did: the layers it quantized (name -> layout) and those it left in float
    (name -> reason)."""

    quantized: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self):
        lines = [f"quantized {len(self.quantized)} layers, left {len(self.skipped)} in float"]
        lines += [f"  not quantized {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _is_linear(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Linear)


def quantize_(
    model: nn.Module,
    config: QuantConfig | FqnToConfig,
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    device: torch.device | str | None = None,
) -> QuantizeReport:
    """Quantize the weights of `model`'s linear layers in place (torchao's contract).

    filter_fn(module, fqn) selects layers (default: every nn.Linear). `device`: move each
    selected layer there before quantizing it, so a model too large for the GPU in bf16 can be
    quantized layer by layer. Each nn.Linear becomes a tqk.QuantizedLinear (the same object, its
    class changed); another selected module keeps its class and gets a QuantizedLinearWeight
    parameter. A layer the config cannot take is left in float and listed, with the reason, in
    the returned report (and a warning). A model with layers quantized already is refused before
    anything changes."""
    if not isinstance(config, (QuantConfig, FqnToConfig)):
        raise TypeError(f"config must be a tqk config or FqnToConfig, got {type(config).__name__}")
    selected = []
    for fqn, module in list(model.named_modules()):
        if isinstance(config, FqnToConfig):
            matched, layer_config = config.config_for(fqn, module)
            if not matched or layer_config is None:
                continue
        else:
            if not (filter_fn or _is_linear)(module, fqn):
                continue
            layer_config = config
        selected.append((fqn, module, layer_config))
    done = [fqn or "<model>" for fqn, module, _ in selected
            if isinstance(module, QuantizedLinear) or isinstance(getattr(module, "weight", None), QuantizedLinearWeight)]
    if done:
        raise ValueError(f"tqk.quantize_: {len(done)} layer(s) are quantized already ({', '.join(done[:4])}"
                         f"{', ...' if len(done) > 4 else ''}); a config cannot be applied twice")
    report = QuantizeReport()
    for fqn, module, layer_config in selected:
        weight = getattr(module, "weight", None)
        if not isinstance(weight, torch.Tensor):
            report.skipped[fqn] = f"{type(module).__name__} has no weight tensor"
            continue
        if device is not None:
            module.to(device)
            weight = module.weight
        try:
            qweight = quantize_weight(weight.detach(), layer_config)
        except CannotQuantize as e:
            report.skipped[fqn] = str(e)
            continue
        if type(module) is nn.Linear:
            QuantizedLinear.convert_(module, qweight)
        else:  # a subclass may have its own forward: keep it, with the weight as a tensor subclass
            module.weight = nn.Parameter(qweight, requires_grad=False)
        report.quantized[fqn] = repr(qweight.quant_layout)
    if report.skipped:
        warnings.warn(f"tqk.quantize_ left {len(report.skipped)} layer(s) in float:\n{report}", stacklevel=2)
    return report


def unwrap_tensor_subclass(model: nn.Module) -> nn.Module:
    """Turn each nn.Linear whose weight is a QuantizedLinearWeight into a QuantizedLinear, as quantize_
    makes them, in place. That is the state after `load_state_dict(quantized_state, assign=True)` into
    a float model: it runs, but a tensor-subclass weight costs CPU time on every compiled call.
    (torchao's name for its own such step.)"""
    for module in model.modules():
        if type(module) is nn.Linear and isinstance(module.weight, QuantizedLinearWeight):
            QuantizedLinear.convert_(module, module.weight)
    return model
