"""torch.compile(fullgraph=True, dynamic=True) through quantized layers: no graph break, the eager
result bit for bit, no recompile when M changes. One compile per config (they are slow on CPU)."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

import tqk
from tqk import testing as T

DT = torch.bfloat16
CONFIGS = [tqk.Int4WeightOnlyConfig(group_size=32), tqk.Int8WeightOnlyConfig(), tqk.Float8WeightOnlyConfig()]


def make_model(config):
    torch.manual_seed(0)
    # ReLU and reshapes only between the quantized layers: exact in any backend, so compiled and
    # eager outputs must be bit-identical.
    model = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 64, bias=False), nn.ReLU(),
                          nn.Linear(64, 32)).to(DT).to(T.default_device())
    report = tqk.quantize_(model, config)
    assert sorted(report.quantized) == ["0", "2", "4"]
    return model


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.mark.usefixtures("deterministic_kernels")  # bit-exact comparisons: one summation order
@pytest.mark.parametrize("config", CONFIGS, ids=["int4-g32", "int8-row", "fp8-row"])
def test_compile_fullgraph_dynamic(config):
    model = make_model(config)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    dev = T.default_device()
    for m in (2, 7, 33):  # M = 1 is specialized by dynamo (0/1 specialization)
        x = torch.randn(m, 64, dtype=DT, device=dev)
        out = compiled(x)
        assert torch.equal(out, model(x)), f"M={m}"
        assert graphs() == 1, f"recompiled at M={m}: {graphs()} graphs"
    x = torch.randn(3, 5, 64, dtype=DT, device=dev)  # a batch dim: a new rank, at most one more graph
    assert torch.equal(compiled(x), model(x))
    assert graphs() <= 2
    assert dict(counters["graph_break"]) == {}
    n = graphs()
    x = torch.randn(5, 64, dtype=DT, device=dev)
    with torch.no_grad():  # inference: grad mode is a guard, so at most one more graph
        out = compiled(x)
        assert torch.equal(out, model(x))
        assert not out.requires_grad
        assert graphs() <= n + 1
        x2 = torch.randn(11, 64, dtype=DT, device=dev)
        n = graphs()
        assert torch.equal(compiled(x2), model(x2))
        assert graphs() == n  # nor under no_grad
    assert dict(counters["graph_break"]) == {}
    torch._dynamo.reset()
