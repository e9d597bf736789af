"""GPU: whole small models under every torch.compile mode and every config, from the first call
(no eager warm-up before it), against the eager quantized model (issue 10, point 1).

    pytest -m gpu tests/gpu/test_compile_gpu.py

No deterministic_kernels fixture here, on purpose: the split-K paths (their counters) are the ones
that broke under CUDA graphs, so they must run. Compiled and eager runs may then pick configs of
different splits (a dynamic M takes its region's): outputs are compared within a small fraction of
their scale (tiny_models.assert_close_run), far below what a wrong kernel, a stale CUDA-graph buffer
or an unwritten KV cache gives.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch._dynamo
from torch._dynamo.utils import counters

import tqk
from tqk.kernels.tuning import select_config
from tests.tiny_models import (assert_close_run, compiled_call_kernels, decode, graph_breaks, graphs, quantized_decoder,
                         quantized_mlp)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")
DT = torch.bfloat16
CONFIGS = {"int4-g128": tqk.Int4WeightOnlyConfig(group_size=128), "int4-g32": tqk.Int4WeightOnlyConfig(group_size=32),
           "int8-row": tqk.Int8WeightOnlyConfig(), "fp8-row": tqk.Float8WeightOnlyConfig()}
MODES = {
    "default": {},
    "fullgraph": {"fullgraph": True},
    "reduce-overhead": {"mode": "reduce-overhead"},
    "reduce-overhead-fullgraph": {"mode": "reduce-overhead", "fullgraph": True},
    "max-autotune": {"mode": "max-autotune"},
    "max-autotune-no-cudagraphs": {"mode": "max-autotune-no-cudagraphs"},
    "dynamic": {"dynamic": True},
}
DIMS = [512, 1024, 1024, 512]  # 1024x512, 1024x1024, 512x1024: N/K like a small model's projections
REL = 2**-6  # split-K order: each layer's output within ~1 bf16 ulp of the other run's


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_mlp_every_mode_first_call(name, mode):
    """Calls: M = 1 three times (CUDA-graph trees: warm-up, record, replay), then M = 16 three
    times (the GEMM, split-K for small M), then M = 1 again (replaying the first graph after the
    second). Every output, cloned at once, equals the eager model's on the same input."""
    model = quantized_mlp(DIMS, CONFIGS[name], DT, CUDA)
    compiled = torch.compile(model, **MODES[mode])
    with torch.no_grad():
        for i, m in enumerate((1, 1, 1, 16, 16, 16, 1)):
            x = torch.randn(m, DIMS[0], dtype=DT, device=CUDA)
            out = compiled(x).clone()  # first: the very first call of the compiled model
            torch.cuda.synchronize()
            assert_close_run(out, model(x), REL, msg=f"call {i}, M={m}")
    assert graph_breaks() == {}


def test_reduce_overhead_int4_g128_split_k_gemv_from_the_first_call():
    """The crash of issue 10: int4 g128 at M = 1 under mode="reduce-overhead", no eager call first.
    The split-K GEMV's counter buffer used to be made lazily, inside cudagraph trees' warm-up, and
    the next run raised `RuntimeError: Detected 1 tensor(s) in the cudagraph pool not tracked as
    outputs`. This model's layers must take the split-K GEMV at M = 1 (asserted first, so the test
    cannot pass by not reaching that path)."""
    model = quantized_mlp(DIMS, CONFIGS["int4-g128"], DT, CUDA)
    key = model[0].weight.quant_layout.weight_format().key
    splits = {(n, k): select_config(key, n, k, 1, CUDA) for k, n in zip(DIMS, DIMS[1:])}
    assert any(c.kernel == "gemv" and c.split_k > 1 for c in splits.values()), f"no split-K GEMV at M=1: {splits}"
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        for i in range(5):
            x = torch.randn(1, DIMS[0], dtype=DT, device=CUDA)
            out = compiled(x).clone()
            torch.cuda.synchronize()
            assert_close_run(out, model(x), REL, msg=f"call {i}")


@pytest.mark.parametrize("mode", ["default", "reduce-overhead", "max-autotune"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_static_kv_cache_decode_every_mode_first_call(name, mode):
    """A 2-layer decoder (dim 512, MLP 1024, vocab 1024) with static KV caches updated by
    index_copy_, decoded token by token (M = 1: the GEMV, split-K), compiled with fullgraph=True
    from its first step. Logits of each step and the cache contents match the eager quantized
    model's; the position is a tensor, so the loop is one graph. (Under reduce-overhead the
    cache buffers are mutated inside the CUDA graph: cudagraph trees must keep those writes.)"""
    model = quantized_decoder(CONFIGS[name], DT, CUDA, vocab=1024, dim=512, heads=8, hidden=1024, max_seq=32)
    tokens = torch.randint(0, 1024, (1, 12), generator=torch.Generator().manual_seed(1)).to(CUDA)
    compiled = torch.compile(model, fullgraph=True, **({} if mode == "default" else {"mode": mode}))
    got = decode(compiled, model, tokens)
    cache = model.layers[1].v_cache.clone()
    want = decode(model, model, tokens)
    assert graphs() == 1 and graph_breaks() == {}
    assert_close_run(got, want, 2**-5, msg="logits")
    assert_close_run(cache, model.layers[1].v_cache, 2**-5, msg="KV cache written by the compiled model")


# The other format families (issues 12, 13): each decodes on its own constexpr path, and each
# path must compile inside inductor's copy of the kernel, at M = 1 (GEMV) and M = 16 (GEMM).
FAMILIES = {
    "uint3-g128": tqk.UIntxWeightOnlyConfig(bit_width=3, group_size=128),
    "uint2-g64-hqq": tqk.UIntxWeightOnlyConfig(bit_width=2, group_size=64, use_hqq=True),
    "fp6-e3m2": tqk.FPXWeightOnlyConfig(ebits=3, mbits=2),
    "codebook-uint4": tqk.CodebookWeightOnlyConfig(dtype=torch.uint4),
    "codebook-uint8-pairs": tqk.CodebookWeightOnlyConfig(dtype=torch.uint8, block_size=(1, 2)),
    "mxfp4": tqk.MXWeightOnlyConfig(weight_dtype=torch.float4_e2m1fn_x2),
    "mxfp8": tqk.MXWeightOnlyConfig(weight_dtype=torch.float8_e4m3fn),
    "nvfp4": tqk.NVFP4WeightOnlyConfig(),
}


@pytest.mark.parametrize("mode", ["default", "reduce-overhead-fullgraph"])
@pytest.mark.parametrize("name", list(FAMILIES))
def test_every_format_family_first_call(name, mode):
    """As test_mlp_every_mode_first_call, for the formats beyond int4/int8/fp8."""
    model = quantized_mlp(DIMS, FAMILIES[name], DT, CUDA)
    compiled = torch.compile(model, **MODES[mode])
    with torch.no_grad():
        for i, m in enumerate((1, 1, 1, 16, 16, 1)):
            x = torch.randn(m, DIMS[0], dtype=DT, device=CUDA)
            out = compiled(x).clone()
            torch.cuda.synchronize()
            assert_close_run(out, model(x), REL, msg=f"call {i}, M={m}")
    assert graph_breaks() == {}


@pytest.mark.parametrize("m", [1, 16], ids=lambda m: f"M={m}")
@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_kernel_per_quantized_linear_under_compile(name, m):
    """torch.compile's default mode (no CUDA graphs), M = 1 (the split-K GEMV) and 16 (the split-K
    GEMM, by the heuristic at these N): each quantized linear is one kernel launch, and nothing else
    runs per layer (no memset of split-K counters or outputs, no cast): the step is the 3 tqk kernels
    and the 2 ReLUs (inductor may fuse a ReLU into nothing else here: the tqk kernels are opaque to it)."""
    model = quantized_mlp(DIMS, CONFIGS[name], DT, CUDA)
    kernels = compiled_call_kernels(model, torch.randn(m, DIMS[0], dtype=DT, device=CUDA))
    tqk_kernels = [k for k in kernels if "weight_only" in k]
    assert len(tqk_kernels) == 3, kernels
    assert len(kernels) <= 3 + 2, kernels


# ------------------------------------------------------------------------------------------
# Bad input to a compiled model on the GPU: a clear error, not one from inductor or cudagraph trees
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_model_input_changes_dtype_or_device(mode):
    model = quantized_mlp([256, 128, 64], CONFIGS["int8-row"], DT, CUDA)
    compiled = torch.compile(model, **({} if mode == "default" else {"mode": mode}))
    x = torch.randn(4, 256, dtype=DT, device=CUDA)
    with torch.no_grad():
        for _ in range(3):
            assert_close_run(compiled(x).clone(), model(x), REL)
        with pytest.raises(TypeError, match="input dtype torch.float16 does not match the quantized weight's dtype "
                                            "torch.bfloat16"):
            compiled(x.half())
        with pytest.raises(ValueError, match="input is on cpu but the quantized weight is on cuda"):
            compiled(x.cpu())
        assert_close_run(compiled(x).clone(), model(x), REL)  # and the model still runs


def test_layers_on_cpu_and_cuda():
    """A model split across the CPU and the GPU. On a CUDA machine the CPU has no Triton backend
    (no interpreter), so a quantized CPU layer cannot run: it must be either left in float and
    reported (the reason naming the device), or refused when called with a clear error from tqk
    naming it; never an error raised inside Triton about a CPU pointer."""
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.Linear(32, 16)).to(DT)
    model[0].to(CUDA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning only if a layer is left in float; both outcomes are allowed
        report = tqk.quantize_(model, CONFIGS["int8-row"])
    assert "0" in report.quantized
    x = torch.randn(2, 64, dtype=DT, device=CUDA)
    with torch.no_grad():
        h = model[0](x).cpu()
        if "1" in report.skipped:
            assert "cpu" in report.skipped["1"]
            assert model[1](h).shape == (2, 16)
        else:
            with pytest.raises((TypeError, ValueError, RuntimeError), match="cpu") as err:
                model[1](h)
            raised_in = str(err.traceback[-1].path)
            assert "triton" not in raised_in and "tqk" in raised_in, f"raised in {raised_in}: {err.value}"
