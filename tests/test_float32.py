"""float32 models are quantized and run, eager and compiled (issue 10, point 5): HF models load in
float32 by default. Each layer's output is compared with the float64 reference of
dequantize(W) @ x + b (tqk.testing, which re-derives W from the packed format independently).

The bound, per output (A = sum_k |x_k| |w_k| + |b|, u32 = 2**-24):
    |out - ref| <= u32 |ref| + (2 u_dot + (K + 8) u32) A
u_dot is the rounding of a dot operand: u32 on the CPU (the interpreter multiplies in float32),
2**-11 on CUDA, where a float32 tl.dot may take its operands as tf32 (10-bit mantissa, Triton's
default for float32 dots, like cuBLAS with allow_tf32) and both x and W are then rounded. A kernel
that rounds activations or weights to bfloat16 (u = 2**-8) is far outside either bound.
"""
from __future__ import annotations

import pytest
import torch
import torch._dynamo

import tqk
from tqk import testing as T
from tests.tiny_models import quantized_mlp

CONFIGS = [tqk.Int4WeightOnlyConfig(group_size=32), tqk.Int4WeightOnlyConfig(group_size=128),
           tqk.Int8WeightOnlyConfig(), tqk.Float8WeightOnlyConfig()]
IDS = ["int4-g32", "int4-g128", "int8-row", "fp8-row"]


def assert_float32_close(out, x, weight, bias, msg=""):
    assert out.dtype == torch.float32, f"output dtype {out.dtype} {msg}"
    ref = T.reference_linear(x, weight, bias)
    magnitude = T.linear_magnitude(x, weight, bias)
    u32 = T.unit_roundoff(torch.float32)
    u_dot = 2**-11 if out.device.type == "cuda" else u32
    tol = u32 * ref.abs() + (2 * u_dot + (x.shape[-1] + 8) * u32) * magnitude
    err = (out.double() - ref).abs()
    bad = ~(err <= tol)
    assert not bool(bad.any()), (f"{int(bad.sum())}/{bad.numel()} outputs out of the float32 bound, worst err/tol "
                                 f"{float((err / tol.clamp(min=1e-300)).max()):.3g} {msg}")


@pytest.mark.parametrize("config", CONFIGS, ids=IDS)
def test_float32_model_eager_matches_reference(config):
    dev = T.default_device()
    model = quantized_mlp([256, 128, 64], config, torch.float32, dev)
    for i in (0, 2):
        w = model[i].weight
        assert w.dtype == torch.float32 and w.dequantize().dtype == torch.float32
    with torch.no_grad():
        for m in (1, 7):  # the GEMV and the GEMM
            x = torch.randn(m, 256, device=dev)
            h = model[0](x)
            assert_float32_close(h, x, model[0].weight, model[0].bias, f"layer 0, M={m}")
            r = model[1](h)
            assert_float32_close(model[2](r), r, model[2].weight, model[2].bias, f"layer 2, M={m}")
            assert torch.equal(model(x), model[2](r))


@pytest.mark.usefixtures("deterministic_kernels")  # bit-exact comparison: one summation order
@pytest.mark.parametrize("config", CONFIGS[::2], ids=IDS[::2])  # int4 and int8 (fp8 runs compiled in MiniLM)
def test_float32_model_compiled_matches_eager(config):
    dev = T.default_device()
    model = quantized_mlp([256, 128, 64], config, torch.float32, dev)
    x = torch.randn(5, 256, device=dev)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        out = compiled(x)  # the first call: no eager call before it
        assert out.dtype == torch.float32
        assert torch.equal(out, model(x))
    torch._dynamo.reset()
