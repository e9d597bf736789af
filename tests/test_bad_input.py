"""Bad inputs raise a clear error (type and message) before any kernel runs, or are reported
by quantize_; nothing crashes inside Triton or returns garbage."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import nn

import tqk
import tqk.ops  # (imported by the first call otherwise: the tests below patch it before any)
from tqk import testing as T

DT = torch.bfloat16
DEV = T.default_device()  # CUDA when present; else CPU through the interpreter


def qlinear(k=64, n=16, config=None, dtype=DT, bias=True):
    lin = nn.Linear(k, n, bias=bias, dtype=dtype, device=DEV)
    report = tqk.quantize_(lin, config or tqk.Int4WeightOnlyConfig(group_size=32))
    assert report.quantized
    return lin


@pytest.mark.parametrize("dtype", [torch.float64, torch.int32, torch.int64, torch.uint8])
def test_wrong_input_dtype(dtype):
    lin = qlinear()
    x = torch.ones(2, 64, dtype=dtype, device=DEV)
    with pytest.raises(TypeError, match=r"takes bfloat16, float16 or float32 input, got torch\."):
        lin(x)


def test_input_dtype_differs_from_weight_dtype():
    lin = qlinear(dtype=DT)
    with pytest.raises(TypeError, match="does not match the quantized weight's dtype torch.bfloat16"):
        lin(torch.ones(2, 64, dtype=torch.float16, device=DEV))


@pytest.mark.parametrize("shape", [(2, 63), (2, 65), (64, 2), (64,) * 0])
def test_input_last_dim_must_be_in_features(shape):
    lin = qlinear()
    x = torch.ones(shape, dtype=DT, device=DEV) if shape else torch.tensor(1.0, dtype=DT, device=DEV)
    with pytest.raises(ValueError, match="last dim must be in_features=64"):
        lin(x)


def test_input_must_be_a_tensor():
    lin = qlinear()
    with pytest.raises(TypeError, match="linear input must be a tensor"):
        lin.weight.linear([[1.0] * 64])


def test_group_size_not_dividing_k_is_skipped_with_reason():
    model = nn.Sequential(nn.Linear(96, 128), nn.Linear(128, 8)).to(DT).to(DEV)
    with pytest.warns(UserWarning, match="group_size=64 does not divide in_features=96"):
        report = tqk.quantize_(model, tqk.Int4WeightOnlyConfig(group_size=64))
    assert report.skipped == {"0": "group_size=64 does not divide in_features=96"}
    assert list(report.quantized) == ["1"]
    assert type(model[0].weight) is nn.Parameter  # left in float, and still works
    assert model(torch.ones(2, 96, dtype=DT, device=DEV)).shape == (2, 8)


@pytest.mark.parametrize("make,phrase", [
    (lambda: tqk.Int4WeightOnlyConfig(group_size=48), "group_size=48 is not supported"),
    (lambda: tqk.Int4WeightOnlyConfig(group_size=16), "group_size=16 is not supported"),
    (lambda: tqk.Int4WeightOnlyConfig(group_size=0), "group_size=0 is not supported"),
    (lambda: tqk.Int8WeightOnlyConfig(group_size=24), "multiples of 16"),
    (lambda: tqk.Int8WeightOnlyConfig(granularity=tqk.PerGroup(0)), "multiples of 16"),
    (lambda: tqk.Float8WeightOnlyConfig(granularity=tqk.PerGroup(40)), "multiples of 16"),
    (lambda: tqk.Float8WeightOnlyConfig(granularity=tqk.PerBlock((128, 128))), "not supported"),
    (lambda: tqk.Int8WeightOnlyConfig(granularity=tqk.PerAxis(1)), "not supported"),
], ids=["int4-48", "int4-16", "int4-0", "int8-24", "int8-pergroup0", "fp8-40", "fp8-perblock", "int8-peraxis"])
def test_unsupported_group_size_fails_at_config_construction(make, phrase):
    with pytest.raises(ValueError, match=phrase):
        make()


def test_unsupported_float8_dtype():
    with pytest.raises(TypeError, match="weight_dtype must be one of"):
        tqk.Float8WeightOnlyConfig(weight_dtype=torch.int8)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("config", [tqk.Int4WeightOnlyConfig(group_size=32), tqk.Int8WeightOnlyConfig(),
                                    tqk.Float8WeightOnlyConfig()], ids=["int4", "int8", "fp8"])
def test_non_finite_weights_are_skipped_and_reported(bad, config):
    model = nn.Sequential(nn.Linear(64, 8), nn.Linear(64, 8)).to(DT)
    with torch.no_grad():
        model[1].weight[3, 17] = bad
    with pytest.warns(UserWarning, match="NaN or Inf"):
        report = tqk.quantize_(model, config)
    assert report.skipped == {"1": "weight has NaN or Inf values"} and list(report.quantized) == ["0"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_weight_with_cpu_input():
    """(Also the wrong-device bias case: a CPU bias with CUDA input is refused.)"""
    lin = nn.Linear(64, 16, dtype=DT, device="cuda")
    tqk.quantize_(lin, tqk.Int8WeightOnlyConfig())
    with pytest.raises(ValueError, match="input is on cpu but the quantized weight is on cuda"):
        lin(torch.ones(2, 64, dtype=DT))
    with pytest.raises(ValueError, match="bias must be"):
        F.linear(torch.ones(2, 64, dtype=DT, device="cuda"), lin.weight, torch.zeros(16, dtype=DT))


def test_config_applied_twice():
    lin = qlinear()
    with pytest.raises(ValueError, match=r"1 layer\(s\) are quantized already \(<model>\); a config cannot be applied"):
        tqk.quantize_(lin, tqk.Int8WeightOnlyConfig())
    model = nn.Sequential(nn.Linear(64, 8), nn.Linear(64, 8)).to(DT).to(DEV)
    tqk.quantize_(model, tqk.Int8WeightOnlyConfig(), filter_fn=lambda m, fqn: fqn == "1")
    with pytest.raises(ValueError, match=r"quantized already \(1\)"):  # refused before layer 0 changes
        tqk.quantize_(model, tqk.Int8WeightOnlyConfig())
    assert type(model[0]) is nn.Linear
    with pytest.raises(ValueError, match="applied twice"):
        tqk.quantize_weight(lin.weight, tqk.Int4WeightOnlyConfig())


def test_float64_model_is_skipped_with_reason():
    model = nn.Sequential(nn.Linear(64, 8)).to(torch.float64)
    with pytest.warns(UserWarning, match="left 1 layer"):
        report = tqk.quantize_(model, tqk.Int8WeightOnlyConfig())
    reason = report.skipped["0"]
    assert "torch.float64" in reason and "bfloat16, float16 or float32" in reason
    assert report.quantized == {}


def test_not_a_config():
    with pytest.raises(TypeError, match="is not a tqk config"):
        tqk.quantize_weight(torch.ones(8, 64, dtype=DT), object())


def test_weight_not_2d_is_reported():
    with pytest.raises(tqk.CannotQuantize, match="must be 2-D"):
        tqk.quantize_weight(torch.ones(2, 8, 64, dtype=DT), tqk.Int8WeightOnlyConfig())


@pytest.mark.parametrize("bias", [torch.zeros(17, dtype=DT), torch.zeros(1, 16, dtype=DT),
                                  torch.zeros(16, dtype=torch.float16), torch.zeros(16, dtype=torch.float32)],
                         ids=["17", "1x16", "fp16", "fp32"])
def test_wrong_bias(bias):
    lin = qlinear(bias=False)
    bias = bias.to(DEV)
    x = torch.ones(2, 64, dtype=DT, device=DEV)
    with pytest.raises(ValueError, match=r"bias must be a torch.bfloat16 tensor of shape \(16,\)"):
        F.linear(x, lin.weight, bias)
    lin.bias = nn.Parameter(bias, requires_grad=False)
    with pytest.raises(ValueError, match="bias must be"):
        lin(x)


def test_changing_dtype_of_quantized_weight():
    lin = qlinear()
    with pytest.raises(TypeError, match="cannot change dtype"):
        lin.weight.to(torch.float16)


def test_valid_edge_inputs_do_not_return_garbage():
    """The inputs next to the invalid ones work: M = 0, non-contiguous x, a 3-D batch."""
    lin = qlinear(k=64, n=16)
    assert lin(torch.ones(0, 64, dtype=DT, device=DEV)).shape == (0, 16)
    x = torch.randn(64, 6, dtype=DT, device=DEV).t()  # stride(-1) != 1
    T.assert_close_to_reference(lin(x), T.reference_linear(x, lin.weight, lin.bias), x=x, weight=lin.weight,
                                bias=lin.bias)
    x3 = torch.randn(2, 3, 64, dtype=DT, device=DEV)
    T.assert_close_to_reference(lin(x3), T.reference_linear(x3, lin.weight, lin.bias), x=x3, weight=lin.weight,
                                bias=lin.bias)


def test_split_k_counters_are_made_with_the_layer(monkeypatch):
    """A layer whose GEMV splits K holds zeroed counters from quantize_ on (made lazily in a call,
    they landed in CUDA-graph trees' pool and broke the next replay), enough for the largest M the
    tuned configs run as a split GEMV; layers on one device share them; a layer that never splits
    holds none."""
    from tqk.kernels import tuning
    gemv = tuning.KernelConfig("gemv", block_n=16, split_k=4)
    gemm = tuning.KernelConfig("gemm", block_n=16, block_m=16)
    for module in (tuning, tqk.ops):
        monkeypatch.setattr(module, "select_config", lambda key, n, k, m, device: gemv if m <= 2 else gemm)
    from tqk.kernels import weight_only
    assert weight_only.split_counter_slots(tqk.layouts.AffineLayout(32).weight_format(), 40, 512, DEV) == 2 * 3
    lin, other = qlinear(k=512, n=40), qlinear(k=512, n=24)
    assert lin.split_counters is other.split_counters  # one graph input for the whole model
    assert lin.split_counters.numel() >= 6 and int(lin.split_counters.count_nonzero()) == 0
    assert "split_counters" not in lin.state_dict()
    x = torch.randn(2, 512, dtype=DT, device=DEV)
    T.assert_close_to_reference(lin(x), T.reference_linear(x, lin.weight, lin.bias), x=x, weight=lin.weight,
                                bias=lin.bias)
    assert int(lin.split_counters.count_nonzero()) == 0
    monkeypatch.setattr(tuning, "select_config", lambda key, n, k, m, device: gemm)
    lin.to(DEV)
    assert lin.split_counters is None


def test_split_k_gemm_counters_are_made_with_the_layer(monkeypatch):
    """A layer whose GEMM splits K holds counters from quantize_ on too: one per (M tile, N tile) of the
    largest M its config serves (bucket 16's serves M up to 64 under dynamic shapes, tqk.ops), so its
    calls never make a buffer of their own, and they leave the counters at zero."""
    from tqk.kernels import tuning, weight_only
    split = tuning.KernelConfig("gemm", block_n=16, block_m=16, split_k=3)
    plain = tuning.KernelConfig("gemm", block_n=16, block_m=16)
    for module in (tuning, tqk.ops):
        monkeypatch.setattr(module, "select_config",
                            lambda key, n, k, m, device: split if tuning.m_bucket(m) == 16 else plain)
    assert weight_only.split_counter_slots(tqk.layouts.AffineLayout(32).weight_format(), 40, 512, DEV) == 4 * 3
    lin = qlinear(k=512, n=40)
    assert lin.split_counters is not None and int(lin.split_counters.count_nonzero()) == 0
    own = []
    real = weight_only.split_counts
    monkeypatch.setattr(weight_only, "split_counts", lambda counters, slots, device: (
        own.append(counters is None or counters.numel() < slots), real(counters, slots, device))[1])
    for m in (16, 9, 16):
        x = torch.randn(m, 512, dtype=DT, device=DEV)
        T.assert_close_to_reference(lin(x), T.reference_linear(x, lin.weight, lin.bias), x=x, weight=lin.weight,
                                    bias=lin.bias)
        assert int(lin.split_counters.count_nonzero()) == 0
    assert own == [False] * 3


# ------------------------------------------------------------------------------------------
# Whole models (issue 10, "Bad input"): the meta device, mixed devices, quantize_ twice, and a
# compiled model whose input changes dtype or device
# ------------------------------------------------------------------------------------------
CONFIGS = [tqk.Int4WeightOnlyConfig(group_size=32), tqk.Int8WeightOnlyConfig(), tqk.Float8WeightOnlyConfig()]
CONFIG_IDS = ["int4", "int8", "fp8"]
META_REASON = "weight is on the meta device: load or materialize it before quantize_"


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
def test_model_on_meta_device_is_reported_layer_by_layer(config):
    with torch.device("meta"):
        model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8)).to(DT)
    with pytest.warns(UserWarning, match=r"left 2 layer\(s\) in float"):
        report = tqk.quantize_(model, config)
    assert report.quantized == {}
    assert report.skipped == {"0": META_REASON, "2": META_REASON}
    assert type(model[0]) is nn.Linear and model[0].weight.is_meta  # untouched: it can still be loaded
    assert model(torch.ones(2, 64, dtype=DT, device="meta")).shape == (2, 8)


def test_layers_on_cpu_and_meta():
    """The mixed-device case a CPU-only machine can make (CPU and CUDA: tests/gpu/test_compile_gpu.py):
    the materialized layer is quantized and runs, the meta one is reported and left as it was."""
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 8)).to(DT).to(DEV)
    with torch.device("meta"):
        model[1] = nn.Linear(32, 8, dtype=DT)
    with pytest.warns(UserWarning, match=r"left 1 layer\(s\) in float"):
        report = tqk.quantize_(model, tqk.Int8WeightOnlyConfig())
    assert list(report.quantized) == ["0"] and report.skipped == {"1": META_REASON}
    assert type(model[1]) is nn.Linear and model[1].weight.is_meta
    x = torch.randn(3, 64, dtype=DT, device=DEV)
    with torch.no_grad():
        h = model[0](x)
    T.assert_close_to_reference(h, T.reference_linear(x, model[0].weight, model[0].bias), x=x,
                                weight=model[0].weight, bias=model[0].bias)
    with pytest.raises(ValueError, match=f"input is on meta but the quantized weight is on {DEV.type}"):
        model[0](x.to("meta"))


def test_cpu_layer_without_the_interpreter(monkeypatch):
    """On a CUDA machine Triton compiles for the GPU and has no CPU backend: a quantized layer left on
    the CPU (quantize_ on the CPU, then only part of the model moved) must get tqk's error naming the
    device, not Triton's "Pointer argument cannot be accessed" from its launcher. The H200 run of
    tests/gpu/test_compile_gpu.py::test_layers_on_cpu_and_cuda found that crash."""
    lin = nn.Linear(64, 16, dtype=DT)
    tqk.quantize_(lin, tqk.Int8WeightOnlyConfig())
    monkeypatch.setattr(tqk.ops, "interpreting", lambda: False)
    with pytest.raises(ValueError, match="on the CPU only through Triton's interpreter.*are on cpu"):
        lin(torch.randn(2, 64, dtype=DT))


@pytest.mark.usefixtures("deterministic_kernels")
def test_quantize_twice_is_refused_and_changes_nothing():
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8)).to(DT).to(DEV)
    tqk.quantize_(model, tqk.Int4WeightOnlyConfig(group_size=32))
    x = torch.randn(4, 64, dtype=DT, device=DEV)
    with torch.no_grad():
        before = model(x)
    state = {k: v.dequantize() if hasattr(v, "dequantize") else v.clone() for k, v in model.state_dict().items()}
    for config in CONFIGS:
        with pytest.raises(ValueError, match=r"2 layer\(s\) are quantized already \(0, 2\); a config cannot be applied"):
            tqk.quantize_(model, config)
    with torch.no_grad():
        assert torch.equal(model(x), before)
    after = model.state_dict()
    assert sorted(after) == sorted(state) and sorted(after) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    for k, v in after.items():
        assert torch.equal(v.dequantize() if hasattr(v, "dequantize") else v, state[k]), k


def _compiled_mlp(fullgraph):
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8)).to(DT).to(DEV)
    tqk.quantize_(model, tqk.Int8WeightOnlyConfig())
    torch._dynamo.reset()
    return model, torch.compile(model, fullgraph=fullgraph)


def _refused_by_tqk(error_type, fullgraph):
    """The error a compiled call raises when tqk's input check fails while dynamo traces it: the
    check's own error; under fullgraph=True torch reports any exception raised in traced code as
    Unsupported("Observed exception"), whose message carries the check's (as "raised exception
    TypeError('input dtype ...')"). Either way the call never reaches inductor or a kernel."""
    return (error_type, torch._dynamo.exc.Unsupported) if fullgraph else error_type


# One compile per case on the CPU (a tiny model): the default mode, what most users run, where
# dynamo falls back to eager and the check's error comes out as it is; and fullgraph=True.
@pytest.mark.usefixtures("deterministic_kernels")
@pytest.mark.parametrize("fullgraph", [False, True], ids=["default", "fullgraph"])
def test_compiled_model_input_changes_dtype(fullgraph):
    """bf16 model, bf16 input, then float16 and float32 input: an error naming both dtypes, from
    tqk's check (dynamo retraces for the new dtype and the check runs while tracing), not from
    inside inductor; and the model then still runs in bf16."""
    model, compiled = _compiled_mlp(fullgraph)
    x = torch.randn(4, 64, dtype=DT, device=DEV)
    with torch.no_grad():
        assert torch.equal(compiled(x), model(x))
        for other in (torch.float16, torch.float32):
            with pytest.raises(_refused_by_tqk(TypeError, fullgraph),
                               match=f"input dtype {other} does not match the quantized weight's dtype torch.bfloat16"):
                compiled(x.to(other))
        assert torch.equal(compiled(x), model(x))
    torch._dynamo.reset()


@pytest.mark.usefixtures("deterministic_kernels")
@pytest.mark.parametrize("fullgraph", [False, True], ids=["default", "fullgraph"])
def test_compiled_model_input_changes_device(fullgraph):
    """A compiled model given a meta input (on a CUDA machine the same check refuses a CPU input:
    tests/gpu/test_compile_gpu.py): an error naming both devices."""
    model, compiled = _compiled_mlp(fullgraph)
    x = torch.randn(4, 64, dtype=DT, device=DEV)
    with torch.no_grad():
        assert torch.equal(compiled(x), model(x))
        with pytest.raises(_refused_by_tqk(ValueError, fullgraph),
                           match=f"input is on meta but the quantized weight is on {DEV.type}"):
            compiled(x.to("meta"))
        assert torch.equal(compiled(x), model(x))
    torch._dynamo.reset()


def test_quantized_linear_takes_only_a_matching_quantized_weight():
    """Assigning a float tensor, a weight of another shape, one whose zero points and scales differ
    in dtype or one whose scales are not in its dtype is refused with the reason, and the layer is
    left as it was."""
    lin = qlinear(k=64, n=16)
    x = torch.randn(2, 64, dtype=DT, device=DEV)
    want = lin(x)
    with pytest.raises(TypeError, match="takes a QuantizedLinearWeight, got Tensor"):
        lin.weight = torch.zeros(16, 64, dtype=DT, device=DEV)
    with pytest.raises(ValueError, match=r"weight of shape \(16, 128\) for a layer of shape \(16, 64\)"):
        lin.weight = qlinear(k=128, n=16).weight
    w = lin.weight
    mixed = tqk.QuantizedLinearWeight(w.packed, w.scales, w.zeros.float(), w.quant_layout, tuple(w.shape), w.dtype)
    with pytest.raises(ValueError, match="must share a dtype"):
        lin.weight = mixed
    other = torch.float16 if DT != torch.float16 else torch.bfloat16
    in_other = tqk.QuantizedLinearWeight(w.packed, w.scales.to(other), w.zeros.to(other), w.quant_layout,
                                         tuple(w.shape), w.dtype)
    with pytest.raises(ValueError, match=rf"scales \({other}\) must be in the weight's dtype \({DT}\)"):
        lin.weight = in_other
    assert torch.equal(lin(x), want)
