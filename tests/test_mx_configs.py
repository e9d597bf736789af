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


# --- both operands block-scaled (MXDynamicActivationMXWeightConfig, NVFP4DynamicActivationNVFP4WeightConfig) --
def test_dynamic_configs_have_torchaos_defaults_and_layouts():
    """torchao's fields, order and defaults (RCEIL for MX); the layouts they pick."""
    mx = tqk.MXDynamicActivationMXWeightConfig()
    assert (mx.block_size, mx.activation_dtype, mx.weight_dtype, mx.kernel_preference, mx.scaling_mode) == \
        (32, torch.float8_e4m3fn, torch.float8_e4m3fn, "auto", tqk.ScaleCalculationMode.RCEIL)
    assert mx.layout() == tqk.layouts.ScaledLayout(act="e4m3", weight="e4m3", act_granularity="mx",
                                                   weight_granularity="mx", scaling_mode="rceil")
    assert tqk.MXDynamicActivationMXWeightConfig(32, torch.float8_e5m2, torch.float8_e5m2).layout().act == "e5m2"
    for fp4 in (FP4, "fp4_e2m1"):
        layout = tqk.MXDynamicActivationMXWeightConfig(activation_dtype=fp4, weight_dtype=fp4,
                                                       scaling_mode="floor").layout()
        assert (layout.act, layout.weight, layout.scaling_mode, layout.k_multiple()) == ("e2m1", "e2m1", "floor", 32)
    enum_like = type("KernelPreference", (), {"value": "auto"})()  # torchao's KernelPreference.AUTO
    assert tqk.MXDynamicActivationMXWeightConfig(kernel_preference=enum_like).kernel_preference is enum_like
    nv = tqk.NVFP4DynamicActivationNVFP4WeightConfig()
    assert (nv.use_triton_kernel, nv.use_dynamic_per_tensor_scale, nv.step) == (True, True, None)
    assert nv.layout() == tqk.layouts.ScaledLayout(act="e2m1", weight="e2m1", act_granularity="nvfp4",
                                                   weight_granularity="nvfp4")
    assert tqk.NVFP4DynamicActivationNVFP4WeightConfig(use_dynamic_per_tensor_scale=False).layout().static_scale == 1.0


# Pairings beyond the shared tests' examples (tests/layouts/test_scaled_layouts.py runs MXFP8 e4m3 FLOOR,
# MXFP4 RCEIL and NVFP4 over every property): e5m2, MXFP6, mixed elements, NVFP4 without tensor scales.
PAIRINGS = {
    "mxfp8-e5m2": tqk.MXDynamicActivationMXWeightConfig(activation_dtype=torch.float8_e5m2,
                                                        weight_dtype=torch.float8_e5m2),
    "mxfp6-e3m2": tqk.MXDynamicActivationMXWeightConfig(activation_dtype="fp6_e3m2", weight_dtype="fp6_e3m2"),
    "mxfp6-e2m3": tqk.MXDynamicActivationMXWeightConfig(activation_dtype="fp6_e2m3", weight_dtype="fp6_e2m3",
                                                        scaling_mode="floor"),
    "w-mxfp4-a-mxfp8": tqk.MXDynamicActivationMXWeightConfig(weight_dtype=FP4),
    "w-e4m3-a-e5m2": tqk.MXDynamicActivationMXWeightConfig(activation_dtype=torch.float8_e5m2),
    "nvfp4-no-tensor-scale": tqk.NVFP4DynamicActivationNVFP4WeightConfig(use_dynamic_per_tensor_scale=False),
}


@pytest.mark.parametrize("name", list(PAIRINGS))
def test_pairings_match_the_exact_emulation(name):
    """The kernel against the float64 dequantize(W) @ dequantize(quantize(x)) (tqk.testing's references),
    at M = 1, 7, 33, odd N, K of one to five blocks, with bias; zero rows give the bias exactly."""
    config = PAIRINGS[name]
    for i, (m, n, k) in enumerate(((1, 17, 32), (7, 45, 96), (33, 129, 160))):
        g = torch.Generator().manual_seed(i)
        w = torch.randn(n, k, generator=g).to(torch.bfloat16).to(DEV)
        x = torch.randn(m, k, generator=g).to(torch.bfloat16).to(DEV)
        x[m // 2] = 0
        b = torch.randn(n, generator=g).to(torch.bfloat16).to(DEV)
        qw = tqk.quantize_weight(w, config)
        out = qw.linear(x, b)
        T.assert_close_to_scaled_reference(out, x, qw, b, msg=f"{name} M={m} N={n} K={k}")
        assert torch.equal(out[m // 2], b)


@pytest.mark.parametrize("config", [tqk.MXDynamicActivationMXWeightConfig(weight_dtype=FP4, activation_dtype=FP4),
                                    tqk.NVFP4DynamicActivationNVFP4WeightConfig()], ids=["mxfp4", "nvfp4"])
def test_zero_blocks_decode_to_zeros(config):
    """An all-zero block of the weight dequantizes to zeros, and one of the activation contributes nothing:
    the output is the product of the other blocks (against the exact emulation)."""
    g = torch.Generator().manual_seed(3)
    w = torch.randn(24, 128, generator=g).to(torch.bfloat16)
    w[5, 32:64] = 0
    x = torch.randn(4, 128, generator=g).to(torch.bfloat16)
    x[1, :32] = 0
    qw = tqk.quantize_weight(w.to(DEV), config)
    assert bool((qw.dequantize(torch.float64)[5, 32:64] == 0).all())
    assert bool((T.reference_scaled_activation(x.to(DEV), qw.quant_layout)[1, :32] == 0).all())
    out = qw.linear(x.to(DEV))
    T.assert_close_to_scaled_reference(out, x.to(DEV), qw)
    assert bool(torch.isfinite(out).all())


def test_dynamic_layers_that_do_not_divide_the_block_stay_float_and_are_reported():
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(48, 16)).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="left 1 layer"):
        report = tqk.quantize_(model, tqk.MXDynamicActivationMXWeightConfig(activation_dtype=FP4, weight_dtype=FP4))
    assert list(report.quantized) == ["0"]
    assert report.skipped == {"1": "in_features=48 is not a multiple of the MX block size 32"}
    model = nn.Sequential(nn.Linear(48, 24), nn.Linear(40, 16)).to(torch.bfloat16)
    with pytest.warns(UserWarning, match="left 1 layer"):
        report = tqk.quantize_(model, tqk.NVFP4DynamicActivationNVFP4WeightConfig())
    assert list(report.quantized) == ["0"] and type(model[1]) is nn.Linear
    assert report.skipped == {"1": "in_features=40 is not a multiple of the NVFP4 block size 16"}
