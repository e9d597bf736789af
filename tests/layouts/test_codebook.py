"""What CodebookLayout has beyond the shared properties (tests/layouts/test_layouts.py runs those on
its examples): the dense widths' lookups, its fourth tensor (the table) through the op, torch.compile,
a dtype cast and torch.load(weights_only=True)."""
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
