"""GPU tests: the compiled kernels (no interpreter), larger shapes, CUDA graphs, gemlite.

    pytest -m gpu tests/gpu                                  # ~minutes on an H100
    TQK_HYPOTHESIS_PROFILE=gpu pytest -m gpu tests/gpu       # many more examples
    TQK_GPU_EXAMPLES=5 pytest -m gpu tests/gpu               # a quick pass

Every test is marked `gpu` (deselected by default: addopts has -m 'not gpu') and skipped
without CUDA. The rest of the suite is device-agnostic and also runs on CUDA when present.
"""
from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch._dynamo
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import tqk
from tqk import testing as T
from tqk.kernels.weight_only import interpreting, launch_weight_only

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

CUDA = torch.device("cuda")
EXAMPLES = T.all_layout_examples()
IDS = [repr(ex) for ex in EXAMPLES]
# Each new tile / dtype / bias combination compiles a kernel (~1 s): a moderate example count
# and a small config space keep this file at minutes; TQK_HYPOTHESIS_PROFILE=gpu raises it.
MANY = settings(max_examples=int(os.environ.get("TQK_GPU_EXAMPLES", max(15, settings.default.max_examples))),
                deadline=None)  # TQK_GPU_EXAMPLES=5: a quick pass
CONFIGS = {"int4-g128": tqk.Int4WeightOnlyConfig(group_size=128), "int4-g32": tqk.Int4WeightOnlyConfig(group_size=32),
           "int8-row": tqk.Int8WeightOnlyConfig(), "fp8-row": tqk.Float8WeightOnlyConfig()}


def test_not_interpreted():
    assert not interpreting(), "TRITON_INTERPRET=1 on a CUDA machine: the GPU tests would test the interpreter"


def _kernel_configs():
    return T.kernel_configs(block_n=(16, 64, 128), block_m=(16, 64), split_k=(1, 3), num_warps=(4,), num_stages=(3,))


def _launch(case, config):
    qw, x = case.weight, case.x
    n, k = qw.shape
    # table: a codebook's entries (None for the other layouts); without it a codebook's launch raises
    return launch_weight_only(x, qw.packed, qw.scales, qw.zeros, case.bias, qw.quant_layout.weight_format(), n, k,
                              config, table=qw.table)


# ------------------------------------------------------------------------------------------
# Property tests on the compiled kernels
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@MANY
@given(data=st.data(), config=_kernel_configs())
def test_kernels_match_reference(layout, data, config):
    max_m = 8 if config.kernel == "gemv" else 300
    case = data.draw(T.quantized_linear_cases(layout, max_m=max_m, max_n=1100, max_k=2100, device=CUDA), label="case")
    out = _launch(case, config)
    T.assert_close_to_reference(out, T.reference_linear(case.x, case.weight, case.bias), x=case.x,
                                weight=case.weight, bias=case.bias, msg=f"{case} {config}")


@pytest.mark.parametrize("layout", EXAMPLES, ids=IDS)
@MANY
@given(data=st.data(), config=_kernel_configs())
def test_kernels_exact_on_exact_data(layout, data, config):
    """Exact data (see tqk.testing.exact_linear_case): bit-exact output whatever the tiles, the
    split-K order or the tensor-core accumulation order (every partial sum fits 24 bits)."""
    max_m = 8 if config.kernel == "gemv" else 300
    case = data.draw(T.exact_linear_cases(layout, max_m=max_m, max_n=1100, max_k=512, device=CUDA), label="case")
    T.assert_exact(_launch(case, config), T.reference_linear(case.x, case.weight, case.bias),
                   msg=f"{case} {config}")


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("m", [1, 16, 128, 2048])
def test_llm_shapes_through_the_public_op(name, m):
    """K = N = 4096, the kernel and tiles the op picks (tuned table or heuristic)."""
    torch.manual_seed(m)
    lin = nn.Linear(4096, 4096, dtype=torch.bfloat16, device=CUDA)
    with torch.no_grad():
        lin.weight.normal_(0, 0.02)
    x = torch.randn(m, 4096, dtype=torch.bfloat16, device=CUDA)
    ref_float = T.reference_linear(x, lin.weight, lin.bias)
    tqk.quantize_(lin, CONFIGS[name])
    with torch.no_grad():
        out = lin(x)
    T.assert_close_to_reference(out, T.reference_linear(x, lin.weight, lin.bias), x=x, weight=lin.weight,
                                bias=lin.bias)
    floor = {"int4-g128": 18, "int4-g32": 20, "int8-row": 38, "fp8-row": 26}[name]
    assert T.sqnr(ref_float, out) > floor


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fp16_and_bf16_models(dtype):
    for name, config in CONFIGS.items():
        lin = nn.Linear(1024, 768, dtype=dtype, device=CUDA)
        tqk.quantize_(lin, config)
        for m in (1, 3, 64):
            x = torch.randn(m, 1024, dtype=dtype, device=CUDA)
            T.assert_close_to_reference(lin(x), T.reference_linear(x, lin.weight, lin.bias), x=x, weight=lin.weight,
                                        bias=lin.bias, msg=name)


def test_backward_gives_input_and_bias_grads():
    lin = nn.Linear(256, 128, dtype=torch.bfloat16, device=CUDA)
    tqk.quantize_(lin, tqk.Int4WeightOnlyConfig(group_size=64))
    x = torch.randn(5, 256, dtype=torch.bfloat16, device=CUDA, requires_grad=True)
    lin(x).float().square().sum().backward()
    w = T.dequantize_reference(lin.weight)
    out = T.reference_linear(x, lin.weight, lin.bias)
    gx = (2 * out) @ w
    assert T.sqnr(gx, x.grad) > 30 and T.sqnr((2 * out).sum(0), lin.bias.grad) > 30


# ------------------------------------------------------------------------------------------
# torch.compile with CUDA graphs
# ------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("deterministic_kernels")  # bit-exact comparison: one schedule (conftest)
@pytest.mark.parametrize("name", ["int4-g128", "int8-row", "fp8-row"])
def test_compile_reduce_overhead_matches_eager(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(512, 1024), nn.ReLU(), nn.Linear(1024, 512)).to(torch.bfloat16).to(CUDA)
    tqk.quantize_(model, CONFIGS[name])
    torch._dynamo.reset()
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
    with torch.no_grad():
        for m in (1, 1, 1, 8, 8, 8):  # repeated shapes: warm-up, record, replay
            x = torch.randn(m, 512, dtype=torch.bfloat16, device=CUDA)
            out = compiled(x).clone()  # CUDA-graph outputs are overwritten by the next replay
            assert torch.equal(out, model(x)), f"M={m}"
    torch._dynamo.reset()


# ------------------------------------------------------------------------------------------
# Against gemlite, on the same int4 codes, scales and zeros
# ------------------------------------------------------------------------------------------
def _gemlite_linear(qw, bias, dtype):
    gemlite = pytest.importorskip("gemlite")
    from gemlite.core import DType, GemLiteLinearTriton

    try:
        gemlite.set_autotune(False)
    except Exception:  # older / newer signatures: autotuning only costs time
        pass
    gdt = {torch.bfloat16: DType.BF16, torch.float16: DType.FP16}[dtype]
    n, k = qw.shape
    group = qw.quant_layout.group_size
    kwargs = dict(group_size=group, in_features=k, out_features=n, input_dtype=gdt, output_dtype=gdt)
    try:
        layer = GemLiteLinearTriton(4, acc_dtype=DType.FP32, **kwargs)
    except TypeError:
        layer = GemLiteLinearTriton(4, **kwargs)
    # gemlite (HQQ convention): W = (W_q - zero) * scale, W_q uint8 [N, K], scales / zeros [N, K // group]
    layer.pack(qw.codes(), qw.scales.t().contiguous(), qw.zeros.t().contiguous(), bias=bias)
    return layer


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("m", [1, 16, 128])
def test_agrees_with_gemlite_on_the_same_int4_weights(dtype, m):
    torch.manual_seed(0)
    lin = nn.Linear(4096, 4096, dtype=dtype, device=CUDA)
    tqk.quantize_(lin, tqk.Int4WeightOnlyConfig(group_size=128))
    qw = lin.weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            glayer = _gemlite_linear(qw, lin.bias.detach(), dtype)
            x = torch.randn(m, 4096, dtype=dtype, device=CUDA)
            theirs = glayer(x)
        except pytest.skip.Exception:
            raise
        except Exception as e:  # gemlite cannot run this case: nothing to compare
            pytest.skip(f"gemlite failed on {dtype}, M={m}: {type(e).__name__}: {e}")
    with torch.no_grad():
        ours = lin(x)
    ref = T.reference_linear(x, qw, lin.bias)
    # Ours within the rounding bound of the exact result ...
    T.assert_close_to_reference(ours, ref, x=x, weight=qw, bias=lin.bias)
    # ... and gemlite, given the same codes, computes the same function. Its kernels may round a
    # dequantized weight twice (q * s, then - z * s, in bf16/fp16): allow 3 u * A instead of u * A.
    # Misread codes, scales or zeros give O(1) errors, far outside either bound.
    assert theirs.shape == ours.shape
    T.assert_close_to_reference(theirs.to(dtype), ref, k=4096, magnitude=3 * T.linear_magnitude(x, qw, lin.bias),
                                msg="gemlite")
    assert T.sqnr(ours, theirs) > 35
