"""What CodebookLayout has beyond the shared properties (tests/layouts/test_layouts.py runs those on
its examples): the dense widths' lookups, vector codes of every size, its fourth tensor (the table)
through the op, torch.compile, a dtype cast and torch.load(weights_only=True)."""
from __future__ import annotations

import io

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
from torch import nn

import tqk
from tqk import testing as T
from tqk.kernels.tuning import KernelConfig
from tqk.kernels.weight_only import launch_weight_only
from tqk.layouts import CodebookLayout

DEVICE = T.default_device()


@pytest.mark.parametrize("nbits,group_size", [(4, 0), (3, 64), (5, 64), (6, 64), (7, 64)])
def test_widths_exact(nbits, group_size):
    """4-bit codes with a scale per row, and the dense widths (slices 2 + 1, 4 + 1, 4 + 2, 4 + 2 + 1),
    looked up in both kernels on exact data: bit for bit. One small case per kernel (the shared tests
    run CodebookLayout.examples(), 8 bits)."""
    layout = CodebookLayout(group_size=group_size, nbits=nbits)
    case = T.exact_linear_case(layout, 3, 20, 192, torch.bfloat16, seed=nbits, device=DEVICE)
    qw = case.weight
    ref = T.reference_linear(case.x, qw, case.bias)
    configs = [KernelConfig("gemv", 16, split_k=2), KernelConfig("gemm", 16, 16, one_dot=nbits % 2 == 1)]
    if nbits == 4:  # a wide GEMV tile (a dense one costs the interpreter 3 s more per width)
        configs.append(KernelConfig("gemv", 16, trip_blocks=2, wide=True))
    for config in configs:
        out = launch_weight_only(case.x, qw.packed, qw.scales, None, case.bias, layout.weight_format(), 20, 192,
                                 config, table=qw.table)
        T.assert_exact(out, ref, msg=f"{layout} {config}")


VECTOR_SIZES = range(1, 9)


@pytest.mark.parametrize("v", VECTOR_SIZES, ids=lambda v: f"v={v}")
def test_vector_pack_unpack_and_dequantize_exact(v):
    """Codes [N, K / v] pack and unpack bit for bit (the documented plane order), and dequantize puts
    code c's entry at features c * v .. c * v + v - 1 of its row, times the group's scale."""
    layout = CodebookLayout(group_size=16 * v, nbits=5, vector_size=v)
    n, k = 7, 3 * 16 * v
    qw = T.random_codes_weight(layout, n, k, torch.float32, seed=v)
    codes = qw.codes()
    assert codes.shape == (n, k // v) and qw.table.shape == ((32, v) if v > 1 else (32,))
    assert torch.equal(layout.unpack(layout.pack(codes), k), codes)
    assert torch.equal(T.unpack_reference(qw.packed, 5, 16, k // v), codes)
    assert qw.packed.shape == (n, layout.weight_format().packed_words(k))
    entries = qw.table.double().reshape(32, v)[codes.long()].reshape(n, k)  # [N, K / v, v] side by side
    scale = qw.scales.double().t().repeat_interleave(16 * v, dim=1)
    assert torch.equal(qw.dequantize(), (entries * scale).float())  # float32: the product rounded once
    assert torch.equal(T.dequantize_reference(qw), entries * scale)


@pytest.mark.parametrize("v", VECTOR_SIZES, ids=lambda v: f"v={v}")
def test_vector_kernels_exact(v):
    """Every vector size through both kernels on exact data, bit for bit: odd N and M, K a multiple of v
    but of no block; the GEMV narrow with split-K and wide, the GEMM per plane and as one dot. Per row
    for odd v (67 codes a row: a ragged plane), two groups of two planes for even v (6-bit: less than a
    block). K <= 512, as exact cases need."""
    layout = CodebookLayout(group_size=0 if v % 2 else 32 * v, nbits=4 if v % 2 else 6, vector_size=v)
    k = 67 * v if v % 2 else 64 * v
    n = 21
    case = T.exact_linear_case(layout, 3, n, k, torch.bfloat16, seed=v, device=DEVICE)
    qw = case.weight
    ref = T.reference_linear(case.x, qw, case.bias)
    for config in (KernelConfig("gemv", 16, split_k=2), KernelConfig("gemv", 16, trip_blocks=2, wide=True),
                   KernelConfig("gemm", 16, 16), KernelConfig("gemm", 32, 16, split_k=2, one_dot=True)):
        out = launch_weight_only(case.x, qw.packed, qw.scales, None, case.bias, layout.weight_format(), n, k,
                                 config, table=qw.table)
        T.assert_exact(out, ref, msg=f"{layout} {config}")


@pytest.mark.parametrize("v,group_size", [(2, 0), (4, 64), (8, 0)], ids=["v=2-row", "v=4-g64", "v=8-row"])
def test_vector_kernels_match_float64_on_quantized_weights(v, group_size):
    """Weights of the config's own k-means through the op (the GEMV at M = 1, the GEMM at M = 33),
    against the float64 reference within the shared error bound."""
    torch.manual_seed(v)
    n, k = 45, 256
    w = torch.randn(n, k, dtype=torch.float16, device=DEVICE)
    qw = tqk.quantize_weight(w, tqk.CodebookWeightOnlyConfig(torch.uint6, (1, v), group_size or None))
    assert qw.quant_layout == CodebookLayout(group_size=group_size, nbits=6, vector_size=v)
    for m in (1, 33):
        x = torch.randn(m, k, dtype=torch.float16, device=DEVICE)
        bias = torch.randn(n, dtype=torch.float16, device=DEVICE)
        T.assert_close_to_reference(F.linear(x, qw, bias), T.reference_linear(x, qw, bias), x=x, weight=qw,
                                    bias=bias, msg=f"v={v} M={m}")


def test_vector_layout_bad_parameters():
    for kwargs, match in ((dict(vector_size=9), "vector_size"), (dict(vector_size=0), "vector_size"),
                          (dict(vector_size=4, group_size=32), "multiple of 64")):
        with pytest.raises(ValueError, match=match):
            CodebookLayout(**kwargs)
    qw = T.random_codes_weight(CodebookLayout(nbits=2, vector_size=2), 8, 32, torch.bfloat16, seed=0, device=DEVICE)
    x = torch.randn(1, 32, dtype=torch.bfloat16, device=DEVICE)
    for bad in (qw.table.flatten(), qw.table[:, :1], qw.table.t()):  # a vector table is [entries, v], contiguous
        wrong = type(qw)(qw.packed, qw.scales, None, qw.quant_layout, tuple(qw.shape), qw.dtype, bad)
        with pytest.raises(ValueError, match=r"codebook table must be a contiguous tensor of shape \(4, 2\)"):
            F.linear(x, wrong)


def test_table_is_checked():
    qw = T.random_codes_weight(CodebookLayout(nbits=2), 8, 32, torch.bfloat16, seed=0, device=DEVICE)
    x = torch.randn(1, 32, dtype=torch.bfloat16, device=DEVICE)
    for bad in (None, qw.table[:3], qw.table.repeat(2)):
        wrong = type(qw)(qw.packed, qw.scales, None, qw.quant_layout, tuple(qw.shape), qw.dtype, bad)
        with pytest.raises(ValueError, match="codebook table"):
            F.linear(x, wrong)
    affine = T.random_codes_weight(tqk.layouts.AffineLayout(nbits=2), 8, 32, torch.bfloat16, seed=0, device=DEVICE)
    with_table = type(affine)(affine.packed, affine.scales, affine.zeros, affine.quant_layout, (8, 32),
                              torch.bfloat16, qw.table)
    with pytest.raises(ValueError, match="takes no codebook table"):
        F.linear(x, with_table)


def test_compile_cast_and_weights_only_round_trip():
    """The table is a graph input like the scales: fullgraph compile equals eager; .to(float16) casts
    it with the scales; a state_dict saved and loaded with weights_only=True carries it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 16)).to(torch.bfloat16).to(DEVICE)
    tqk.quantize_(model, tqk.CodebookWeightOnlyConfig(torch.uint4))
    x = torch.randn(5, 64, dtype=torch.bfloat16, device=DEVICE)
    torch._dynamo.reset()
    with torch.no_grad():
        eager = model(x)
        assert torch.equal(torch.compile(model, fullgraph=True)(x), eager)
    torch._dynamo.reset()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    assert torch.equal(state["0.weight"].table, model[0].table)
    with torch.device("meta"):
        fresh = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 16)).to(torch.bfloat16)
    fresh.load_state_dict(state, assign=True)
    with torch.no_grad():
        assert torch.equal(fresh(x), eager)
    model.to(torch.float16)
    assert model[0].table.dtype == torch.float16 and model[0].weight.table.dtype == torch.float16
    h = x.half()
    T.assert_close_to_reference(model[0](h), T.reference_linear(h, model[0].weight, model[0].bias), x=h,
                                weight=model[0].weight, bias=model[0].bias)
