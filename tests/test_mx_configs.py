"""Weight-only MX and NVFP4 configs (issue 13) through the public API: accuracy floors on a seeded
Linear(1024, 1024) (output SQNR against float64, x and W ~ N(0, 1)), the report for a layer they cannot
take, and bad input naming the parameter."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import tqk
from tqk import testing as T

DEV = T.default_device()
FP4 = getattr(torch, "float4_e2m1fn_x2", "fp4_e2m1")

# config -> floor in dB (issue 13; round-to-nearest simulations give 0.5 dB more)
FLOORS = [
    (tqk.MXWeightOnlyConfig(torch.float8_e4m3fn), 30.0),
    (tqk.MXWeightOnlyConfig("fp6_e3m2"), 24.8),
    (tqk.MXWeightOnlyConfig("fp6_e2m3"), 30.4),
    (tqk.MXWeightOnlyConfig(FP4), 18.3),
    (tqk.MXWeightOnlyConfig(FP4, scaling_mode="rceil"), 18.3),
    (tqk.NVFP4WeightOnlyConfig(), 19.9),
]


@pytest.fixture(scope="module")
def seeded_linear():
    return T.seeded_linear(8)


@pytest.mark.parametrize("config,floor", FLOORS, ids=[repr(c) for c, _ in FLOORS])
def test_accuracy_floor(seeded_linear, config, floor):
    w, x, ref = seeded_linear
    qw = tqk.quantize_weight(w.float().to(DEV), config)
    got = T.sqnr(ref, qw.linear(x.float().to(DEV)).double().cpu())
    assert got >= floor, f"{config}: {got:.2f} dB < {floor}"


def test_layers_that_do_not_divide_the_block_stay_float_and_are_reported():
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(48, 16), nn.Linear(40, 8)).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="left 2 layer"):
        report = tqk.quantize_(model, tqk.MXWeightOnlyConfig(FP4))
    assert list(report.quantized) == ["0"]
    assert "in_features=48 is not a multiple of the MX block size 32" in report.skipped["1"]
    assert model[0].quant_layout == tqk.layouts.MXLayout(element="e2m1")
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(40, 16)).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="left 1 layer"):
        report = tqk.quantize_(model, tqk.NVFP4WeightOnlyConfig())
    assert "in_features=40 is not a multiple of the NVFP4 block size 16" in report.skipped["1"]
    assert isinstance(model[1], nn.Linear) and not isinstance(model[1], tqk.QuantizedLinear)


@pytest.mark.parametrize("config", [tqk.MXWeightOnlyConfig(FP4), tqk.NVFP4WeightOnlyConfig(),
                                    tqk.NVFP4WeightOnlyConfig(use_dynamic_per_tensor_scale=False)], ids=repr)
def test_quantized_layer_matches_its_reference_saves_and_casts(config, tmp_path):
    """QuantizedLinear with byte scales: the forward against the float64 reference, state_dict through
    torch.load(weights_only=True), and .half() (the float32 tensor scale is not rounded)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 24)).to(torch.bfloat16)
    tqk.quantize_(model, config)
    layer = model[0]
    x = torch.randn(2, 64, dtype=torch.bfloat16)
    T.assert_close_to_reference(model(x), T.reference_linear(x, layer.weight, layer.bias), x=x, weight=layer.weight,
                                bias=layer.bias)
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh = nn.Sequential(nn.Linear(64, 24)).to(torch.bfloat16)
    tqk.quantize_(fresh, config)
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True), assign=True)
    assert torch.equal(fresh(x), model(x))
    ts = None if layer.weight.zeros is None else layer.weight.zeros.clone()
    model.half()
    assert layer.weight_dtype == torch.float16 and layer.weight.scales.dtype == torch.uint8
    if ts is not None:
        assert layer.weight.zeros.dtype == torch.float32 and torch.equal(layer.weight.zeros, ts)
    xh = x.half()
    T.assert_close_to_reference(model(xh), T.reference_linear(xh, layer.weight, layer.bias), x=xh,
                                weight=layer.weight, bias=layer.bias)


@pytest.mark.parametrize("make,error,match", [
    (lambda: tqk.MXWeightOnlyConfig(torch.int8), TypeError, "weight_dtype must be one of"),
    (lambda: tqk.MXWeightOnlyConfig("fp6_e3m3"), TypeError, "weight_dtype"),
    (lambda: tqk.MXWeightOnlyConfig(block_size=16), ValueError, "block_size=16; OCP MX v1.0 blocks are 32"),
    (lambda: tqk.MXWeightOnlyConfig(scaling_mode="even"), ValueError, "scaling_mode must be one of"),
    (lambda: tqk.NVFP4WeightOnlyConfig(use_dynamic_per_tensor_scale="yes"), TypeError, "must be a bool"),
])
def test_bad_parameters(make, error, match):
    with pytest.raises(error, match=match):
        make()
