"""torch.compile through quantized layers: no graph break, the eager result bit for bit, no
recompile when M changes, every compile mode from the first call (no eager warm-up), a static
KV-cache decode loop. Few compiles: they are slow on CPU (the GPU runs every mode x config in
tests/gpu/test_compile_gpu.py)."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

import tqk
from tests.tiny_models import assert_close_run, decode, graph_breaks, quantized_decoder, quantized_mlp
from tqk import testing as T

DT = torch.bfloat16
CONFIGS = [tqk.Int4WeightOnlyConfig(group_size=32), tqk.Int8WeightOnlyConfig(), tqk.Float8WeightOnlyConfig(),
           tqk.CodebookWeightOnlyConfig(torch.uint6, block_size=(1, 2))]  # a vector table: the op's 4th tensor, 2-D


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
@pytest.mark.parametrize("config", CONFIGS, ids=["int4-g32", "int8-row", "fp8-row", "codebook-uint6-v2"])
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


# ------------------------------------------------------------------------------------------
# Every compile mode from the first call (no eager warm-up): issue 10, point 1
# ------------------------------------------------------------------------------------------
# Each CPU inductor compile costs seconds, so: test_compile_fullgraph_dynamic above runs every
# config under fullgraph=True, dynamic=True; below, each remaining mode runs one config, a
# different one per mode, so that each config meets more than one mode. On the CPU,
# "reduce-overhead" and "max-autotune" have no CUDA graphs to take and fall back to plain
# inductor: what is tested here is that they compile, run and match; their CUDA graphs are
# tested in tests/gpu/test_compile_gpu.py (every mode x every config).
MODES = [
    ("default", {}, tqk.Int8WeightOnlyConfig()),
    ("reduce-overhead", {"mode": "reduce-overhead"}, tqk.Int4WeightOnlyConfig(group_size=32)),
    ("max-autotune", {"mode": "max-autotune"}, tqk.Float8WeightOnlyConfig()),
]


@pytest.mark.usefixtures("deterministic_kernels")  # bit-exact comparisons: one summation order
@pytest.mark.parametrize("kwargs,config", [m[1:] for m in MODES], ids=[m[0] for m in MODES])
def test_compile_mode_first_call_matches_eager(kwargs, config):
    dev = T.default_device()
    model = quantized_mlp([64, 96, 64, 32], config, DT, dev)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, **kwargs)
    with torch.no_grad():
        for m in (3, 3, 9):  # the first call compiles (no eager call before it), then a repeat, a new M
            x = torch.randn(m, 64, dtype=DT, device=dev)
            out = compiled(x).clone()  # a CUDA-graph output is overwritten by the next replay
            assert torch.equal(out, model(x)), f"M={m}"
    assert graphs() >= 1 and graph_breaks() == {}
    torch._dynamo.reset()


def test_static_kv_cache_decode_loop_first_call():
    """A decoder with a static KV cache (index_copy_ into buffers), decoded token by token, compiled
    from its first step: the logits of every step match the eager quantized model's, and the
    loop runs on one graph (the position is a tensor, so no recompile per step). int8: the
    interpreter runs its GEMV 3-4x faster than int4's (~0.8 s per step of this model against 3 s),
    and the modes above give int4 its compiled runs. Not bit-exact: inductor fuses the norms, SiLU
    and attention differently from eager, a few bf16 roundings apart."""
    dev = T.default_device()
    model = quantized_decoder(tqk.Int8WeightOnlyConfig(), DT, dev, vocab=64)
    tokens = torch.randint(0, 64, (1, 6), generator=torch.Generator().manual_seed(1)).to(dev)
    torch._dynamo.reset()
    counters.clear()
    compiled = torch.compile(model, fullgraph=True)
    got = decode(compiled, model, tokens)
    cache = model.layers[1].k_cache.clone()
    want = decode(model, model, tokens)
    assert graphs() == 1 and graph_breaks() == {}
    assert_close_run(got, want, rel=2**-5, msg="logits")
    assert_close_run(cache, model.layers[1].k_cache, rel=2**-5, msg="KV cache written by the compiled model")
    assert bool(cache[:, :, tokens.shape[1]:].eq(0).all())  # slots past the last position untouched
    torch._dynamo.reset()


def _graph_inputs_and_guards(model, x) -> tuple[int, int]:
    """(graph inputs, guards on the first layer) of `model` compiled: every input and every guard costs host
    time on every call, CUDA-graph replays included."""
    seen = {}

    def backend(gm, example_inputs):
        seen["inputs"] = len(example_inputs)
        return gm.forward

    def keep_all(entries):
        seen["guards"] = sum("._modules['0']" in e.name for e in entries)
        return [True] * len(entries)

    torch._dynamo.reset()
    with torch.no_grad():
        torch.compile(model, backend=backend, fullgraph=True, options={"guard_filter_fn": keep_all})(x)
    torch._dynamo.reset()
    return seen["inputs"], seen["guards"]


@pytest.mark.parametrize("config", [CONFIGS[0], CONFIGS[3], tqk.Int8DynamicActivationInt8WeightConfig()],
                         ids=["int4-g32", "codebook-uint6-v2", "int8-dynamic"])
def test_compiled_layer_costs_what_a_float_linear_does(config):
    """A quantized linear compiles to one graph input (its buffer, tqk/layouts/storage.py) as a float linear
    does (its weight), and about its guards: the layout and where its tensors sit are one identity guard
    (tqk/linear.py, _call_of), not a guard per field. Codes and scales as two buffers and the fields read
    one by one made a quantized decode step's CUDA-graph replay cost 1.5-1.7x bf16's host time."""
    torch.manual_seed(0)
    x = torch.randn(2, 64, dtype=DT, device=T.default_device())
    plain = nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 64, bias=False)).to(DT).to(T.default_device())
    float_inputs, float_guards = _graph_inputs_and_guards(plain, x)
    tqk.quantize_(plain, config)
    inputs, guards = _graph_inputs_and_guards(plain, x)
    assert inputs == float_inputs, f"{inputs} graph inputs, a float model has {float_inputs}"
    # + 5: the spec's type and identity, the buffer and module dicts' types (nn.Module.__getattr__), the counters
    assert guards <= float_guards + 5, f"{guards} guards on the first layer, a float linear has {float_guards}"
