"""GPU: the activation-quantized configs (issue 11) compiled on CUDA, where the op is a triton_op and
inductor traces the activation's quantization (torch ops) into the graph around the GEMM.

    pytest -m gpu tests/gpu/test_scaled_gpu.py

* kernel count under torch.compile: each linear launches at most two kernels, the activation's
  scales (one reduction, fused with whatever precedes it, here the ReLU; on the codes path it writes
  the codes too) and the GEMM (scaled_mm_kernel, which otherwise quantizes in its prologue);
* a small MLP under every compile mode of tests/gpu/test_compile_gpu.py, from the first call;
* the Llama-3-8B projection shapes at M = 1, 16, 2048 against the float64 product of the
  quantized activations and weights, within the bf16 rounding bound; and the activation path that
  tqk.kernels.scaled_mm.quantize_in_prologue does not pick at M = 1 and 2048, forced.

Compiled against eager: inductor's fused quantization may round x / scale differently from eager
torch in an element or two (an int8 code one apart, an e4m3 code one ulp apart), which moves an
output by about one activation step times a weight: within REL of the output scale, where a wrong
kernel, scale or stale CUDA-graph buffer is off by O(1).
"""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

import tqk
from tests.gpu.test_compile_gpu import MODES
from tests.test_activation_configs import CONFIGS, FP8, SQNR_FLOOR, family, scaled_reference
from tests.tiny_models import assert_close_run, compiled_call_kernels, graph_breaks, quantized_mlp
from tqk import testing as T

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")
DT = torch.bfloat16
DIMS = [512, 1024, 1024, 512]  # every K a multiple of 128: block and group configs take every layer
LINEARS = len(DIMS) - 1
REL = 2**-5
# NVFP4's activations: e2m1 codes under a block scale that is no power of two, so inductor's fused x / scale
# and eager's can round an element to codes one apart, which moves that row's outputs by up to a third of
# the block's largest value times a weight (0.040 of a 0.39 output scale on the H200, s14 run 1): compared
# by the relative norm of the difference, where a wrong kernel or a stale buffer is off by about 1
REL_NORM_4BIT = 2**-3
# Llama-3-8B projections, (N, K): q/o, k/v (8 KV heads of 128), gate/up, down
LLAMA3_8B = {"qo": (4096, 4096), "kv": (1024, 4096), "gate_up": (14336, 4096), "down": (4096, 14336)}


def _needs_fp8(name):
    if name in FP8 and torch.cuda.is_available() and torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("e4m3 tensor cores need compute capability 8.9")


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("m", [1, 16])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_at_most_two_kernels_per_linear_under_compile(name, m):
    """torch.compile's default mode (no CUDA graphs): one GEMM per quantized linear and at most one
    other kernel per linear, its activation's scales (the row or 1x128 block max; the ReLU before the
    second and third layers fused into it; per row and static it writes the codes too, per tensor
    and per block the GEMM quantizes in its prologue at these M, per tensor taking the largest
    finite row scale itself): nothing else per layer, no separate cast, global amax, memset (split-K
    counters are the layer's) or copy. On the H200 the row and static configs passed on the codes
    path (run A) and the tensor and block ones on the prologue (run C), docs/bench/h200-2026-12-02-s9.
    MX takes the codes path (its block amax and encode: one kernel); NVFP4's dynamic tensor scale is a
    global amax before the blocks' encode, a kernel more (s14 run 2: 10 and 15 kernels for 3 linears while
    it also wrote a scale per row)."""
    _needs_fp8(name)
    model = quantized_mlp(DIMS, CONFIGS[name], DT, CUDA)
    kernels = compiled_call_kernels(model, torch.randn(m, DIMS[0], dtype=DT, device=CUDA))
    gemms = [k for k in kernels if "scaled_mm" in k]
    assert len(gemms) == LINEARS, kernels
    # NVFP4: the global amax (two kernels where inductor splits a long reduction, M = 16 here), the encode
    per_linear = (3 if m == 1 else 4) if CONFIGS[name].layout().act_granularity == "nvfp4" else 2
    assert len(kernels) <= per_linear * LINEARS, kernels
    assert graph_breaks() == {}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_mlp_every_mode_first_call(name, mode):
    """Calls M = 1 three times (CUDA-graph trees: warm-up, record, replay), M = 16 three times,
    then M = 1 again; the very first call is the compiled model's. Each output, cloned at once,
    is within REL of the eager quantized model's on the same input."""
    _needs_fp8(name)
    model = quantized_mlp(DIMS, CONFIGS[name], DT, CUDA)
    compiled = torch.compile(model, **MODES[mode])
    with torch.no_grad():
        for i, m in enumerate((1, 1, 1, 16, 16, 16, 1)):
            x = torch.randn(m, DIMS[0], dtype=DT, device=CUDA)
            out = compiled(x).clone()
            torch.cuda.synchronize()
            if CONFIGS[name].layout().act_granularity == "nvfp4":
                assert_close_run(out, model(x), REL_NORM_4BIT, msg=f"{name} {mode} call {i}, M={m}", norm=True)
            else:
                assert_close_run(out, model(x), REL, msg=f"{name} {mode} call {i}, M={m}")
    assert graph_breaks() == {}


@pytest.mark.parametrize("m", [1, 16, 2048])
@pytest.mark.parametrize("shape", list(LLAMA3_8B))
@pytest.mark.parametrize("name", list(CONFIGS))
def test_llama3_8b_shapes_against_float64_reference(name, shape, m):
    """The public op (eager) at the layer shapes of Llama-3-8B: within the bf16 rounding bound of
    the float64 product of the quantized activations and weights, and within the config's SQNR
    floor of the float layer."""
    _needs_fp8(name)
    n, k = LLAMA3_8B[shape]
    torch.manual_seed(m)
    lin = nn.Linear(k, n, dtype=DT, device=CUDA)
    x = torch.randn(m, k, dtype=DT, device=CUDA)
    ref_float = T.reference_linear(x, lin.weight, lin.bias)
    report = tqk.quantize_(lin, CONFIGS[name])
    assert list(report.quantized) == [""], report
    with torch.no_grad():
        out = lin(x)
    ref, xq, w = scaled_reference(lin, x)
    T.assert_close_to_reference(out, ref, x=xq, weight=w, bias=lin.bias, msg=f"{name} {shape} M={m}")
    sqnr = T.sqnr(ref_float, out)
    assert sqnr >= SQNR_FLOOR[family(name)], f"{name} {shape} M={m}: SQNR {sqnr:.2f} dB"



@pytest.mark.parametrize("m", [1, 2048])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_forced_activation_paths_against_float64_reference(name, m):
    """Both ways into the GEMM at Llama-3-8B's o projection (4096 x 4096), eager: the codes path at
    M = 1 and the prologue at M = 2048 forced through ScaledLayout.act_quant beside the path tqk
    picks, each within the bf16 rounding bound of the float64 reference. The two write the same
    codes (the same reciprocal multiply, clamp and rounding), so int8 x int8 with row scales, whose
    int32 sums do not depend on the tile, gives the same output bit for bit."""
    import dataclasses

    _needs_fp8(name)
    if not CONFIGS[name].layout().takes_prologue:
        pytest.skip("MX / NVFP4 activations are quantized by torch ops only (the codes path)")
    n, k = LLAMA3_8B["qo"]
    torch.manual_seed(m + 1)
    lin = nn.Linear(k, n, dtype=DT, device=CUDA)
    x = torch.randn(m, k, dtype=DT, device=CUDA)
    tqk.quantize_(lin, CONFIGS[name])
    w = lin.weight
    outs = {}
    for act_quant in ("prologue", "codes"):
        layout = dataclasses.replace(w.quant_layout, act_quant=act_quant)
        forced = tqk.QuantizedLinearWeight(w.packed, w.scales, w.zeros, layout, tuple(w.shape), w.dtype)
        with torch.no_grad():
            outs[act_quant] = forced.linear(x, lin.bias, lin.split_counters)
        ref = T.reference_scaled_linear(x, forced, lin.bias)
        xq = T.reference_scaled_activation(x, layout)
        T.assert_close_to_reference(outs[act_quant], ref, x=xq, weight=T.scaled_dequantize_reference(forced),
                                    bias=lin.bias, msg=f"{name} {act_quant} M={m}")
    fmt = w.quant_layout.scaled_format()
    if fmt.act == "int8" and fmt.a_scale != "block" and fmt.w_scale == "row":
        assert torch.equal(outs["prologue"], outs["codes"])


# the tuner's tile options, each forced (a tuned table picks them only where they win): late scaling of the
# K-step partials and W4A8's transposed tile, at wgmma tiles (64+ rows or, transposed, 64+ weight rows) and a
# small one
TUNER_OPTIONS = [
    dict(block_m=128, block_n=128, num_warps=8, num_stages=3, late_scale=True),
    dict(block_m=64, block_n=128, num_warps=4, num_stages=4, late_scale=True),
    dict(block_m=128, block_n=128, num_warps=8, num_stages=3, swap_ab=True),
    dict(block_m=128, block_n=64, num_warps=4, num_stages=4, swap_ab=True, late_scale=True),
    dict(block_m=16, block_n=64, num_warps=4, num_stages=4, swap_ab=True, split_k=4),
    dict(block_m=16, block_n=128, num_warps=4, num_stages=4, swap_ab=True),
]
K_STEP_CONFIGS = [name for name, c in CONFIGS.items() if c.layout().scaled_format().k_steps]


@pytest.mark.parametrize("option", range(len(TUNER_OPTIONS)))
@pytest.mark.parametrize("name", K_STEP_CONFIGS)
def test_tuner_options_against_float64_reference(name, option, monkeypatch):
    """ScaledConfig.late_scale and swap_ab (scaled_mm_kernel), forced at Llama-3-8B's o projection, on
    the codes path at M = 200 and the prologue (where it takes one) at M = 16: within the bf16 rounding bound
    of the float64 reference. swap_ab applies to int4 weights only (a no-op elsewhere, skipped)."""
    import dataclasses

    import tqk.ops
    from tqk.kernels.scaled_mm import ScaledConfig

    _needs_fp8(name)
    fields = TUNER_OPTIONS[option]
    layout = CONFIGS[name].layout()
    fmt = layout.scaled_format()
    if fields.get("swap_ab") and fmt.weight != "int4":
        pytest.skip("swap_ab: int4 weights only")
    n, k = LLAMA3_8B["qo"]
    torch.manual_seed(option)
    lin = nn.Linear(k, n, dtype=DT, device=CUDA)
    tqk.quantize_(lin, CONFIGS[name])
    w = lin.weight
    config = ScaledConfig(block_k=fmt.group, **fields)
    monkeypatch.setattr(tqk.ops, "scaled_config", lambda *args: config)
    paths = [(200, "codes")] + ([(16, "prologue")] if layout.takes_prologue else [])
    for m, act_quant in paths:
        x = torch.randn(m, k, dtype=DT, device=CUDA)
        forced = tqk.QuantizedLinearWeight(w.packed, w.scales, w.zeros,
                                           dataclasses.replace(w.quant_layout, act_quant=act_quant), tuple(w.shape),
                                           w.dtype)
        with torch.no_grad():
            out = forced.linear(x, lin.bias)
        T.assert_close_to_scaled_reference(out, x, forced, lin.bias, msg=f"{name} {fields} M={m} {act_quant}")
