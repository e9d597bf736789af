"""The activation-quantized configs (tqk/configs/dynamic.py, torchao's names) through the public
path: quantize_ on small models, then eager, state_dict and torch.compile.

* accuracy: every config on a bf16 and a float32 two-layer MLP, within a loose SQNR floor of the
  float model (what the scheme costs), and each layer within the rounding bound of the exact
  product of its quantized activations and weights (what a correct kernel gives: much tighter);
* torchao's defaults and the layout each config picks;
* bad input: a clear error at config construction (granularity, dtype, mapping, group size,
  static scale), a layer the config cannot take left in float and reported, fp8 on a GPU older
  than compute capability 8.9 refused at quantize time (simulated on the CPU);
* a NaN in one activation row stays in that row, as with F.linear;
* state_dict round trip through torch.load(weights_only=True), bit for bit;
* torch.compile(fullgraph=True), static and dynamic shapes, and mode="reduce-overhead".

Small shapes: the kernels run in Triton's interpreter on the CPU. Compiles are ~1 s each for
this model (the interpreter's op is opaque to inductor), so every config meets every mode.
The GPU side (kernel counts, CUDA graphs, Llama shapes) is tests/gpu/test_scaled_gpu.py.
"""
from __future__ import annotations

import copy
import dataclasses
import io
import re
import types

import pytest
import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

import tqk
from tqk import testing as T
from tqk.configs import dynamic
from tqk.configs.base import HANDLERS
from tqk.layouts.scaled import ScaledLayout

PB = tqk.PerBlock
BLOCK_PAIR = [PB((1, 128)), PB((128, 128))]
FP4 = getattr(torch, "float4_e2m1fn_x2", "fp4_e2m1")
# Static scales for MLP inputs ~N(0, 1) (|x| <= ~4): amax / qmax. The accuracy test calibrates
# them on the model instead (static_for).
CONFIGS = {
    "int8-row": tqk.Int8DynamicActivationInt8WeightConfig(),
    "int8-tensor": tqk.Int8DynamicActivationInt8WeightConfig(granularity=tqk.PerTensor()),
    "int8-static": tqk.Int8StaticActivationInt8WeightConfig(act_quant_scale=torch.tensor(4 / 127)),
    "fp8-tensor": tqk.Float8DynamicActivationFloat8WeightConfig(),
    "fp8-row": tqk.Float8DynamicActivationFloat8WeightConfig(granularity=tqk.PerRow()),
    "fp8-block": tqk.Float8DynamicActivationFloat8WeightConfig(granularity=BLOCK_PAIR),
    "fp8-static": tqk.Float8StaticActivationFloat8WeightConfig(scale=torch.tensor(4 / 448)),
    "w4a8-int8": tqk.Int8DynamicActivationIntxWeightConfig(),
    "w4a8-fp8": tqk.Float8DynamicActivationInt4WeightConfig(),
    # block-scaled floats on both operands (tqk/configs/mx.py)
    "mxfp8-rceil": tqk.MXDynamicActivationMXWeightConfig(),
    "mxfp4-floor": tqk.MXDynamicActivationMXWeightConfig(activation_dtype=FP4, weight_dtype=FP4, scaling_mode="floor"),
    "nvfp4-dynamic": tqk.NVFP4DynamicActivationNVFP4WeightConfig(),
}
NAMES = list(CONFIGS)
# the configs whose GEMM takes fp8 dots: e4m3 operands, or MX (e2m1 moved into e4m3); NVFP4's are float16
FP8 = [name for name, c in CONFIGS.items() if c.layout().scaled_format().act == "e4m3" or c.layout().weight == "e4m3"]
# SQNR (dB) of the quantized MLP's output against the float model's, two layers: loose floors,
# what each scheme costs with room to spare (measured: int8 37-39 with dynamic scales, 31-35
# static; fp8 ~26; W4A8 ~20; MXFP8 ~26, MXFP4 ~12.5, NVFP4 ~14.3). A wrong scale, code or group is off
# by O(1): far below any floor.
SQNR_FLOOR = {"int8": 30.0, "fp8": 20.0, "w4a8": 15.0, "mxfp8": 20.0, "mxfp4": 10.0, "nvfp4": 11.0}
DTYPES = [pytest.param(torch.bfloat16, id="bf16"), pytest.param(torch.float32, id="fp32")]


def mlp(dtype=torch.bfloat16, seed=0) -> nn.Sequential:
    """Linear(256, 384), ReLU, Linear(384, 128), both with bias: K and N multiples of 128, so every
    config in CONFIGS (1x128 / 128x128 blocks, groups of 128) takes both layers."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(256, 384), nn.ReLU(), nn.Linear(384, 128)).to(dtype)


def quantized_mlp(name, dtype=torch.bfloat16, seed=0) -> nn.Sequential:
    model = mlp(dtype, seed)
    report = tqk.quantize_(model, CONFIGS[name])
    assert sorted(report.quantized) == ["0", "2"] and not report.skipped, report
    return model


def static_for(name, model, x):
    """CONFIGS[name], its static activation scale (if it has one) calibrated on `model` and `x`:
    the largest |input| any linear sees, over the format's largest code."""
    config = CONFIGS[name]
    field = {"int8-static": "act_quant_scale", "fp8-static": "scale"}.get(name)
    if field is None:
        return config
    amax = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: amax.append(float(args[0].abs().max())))
             for m in model.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    qmax = 127.0 if name.startswith("int8") else 448.0
    return dataclasses.replace(config, **{field: torch.tensor(max(amax) / qmax)})


def scaled_reference(layer: tqk.QuantizedLinear, x: torch.Tensor):
    """(float64 reference, dequantized activations, dequantized weight) of one quantized layer: the
    exact product the GEMM should round once. The activation codes come from tqk's own quantizer
    (tqk/quant/activation.py), so this checks the GEMM and the stored weight, not the choice of
    activation codes (the SQNR floors check those)."""
    xq = T.reference_scaled_activation(x, layer.quant_layout)
    return T.reference_scaled_linear(x, layer.weight, layer.bias), xq.reshape(x.shape), \
        T.scaled_dequantize_reference(layer.weight)


def assert_layer_exact(layer, x, msg=""):
    """The layer's output within the rounding bound (tqk.testing) of scaled_reference."""
    with torch.no_grad():
        out = layer(x)
    ref, xq, w = scaled_reference(layer, x)
    T.assert_close_to_reference(out, ref, x=xq, weight=w, bias=layer.bias, msg=msg)


def family(name: str) -> str:
    return name.split("-")[0]


# ------------------------------------------------------------------------------------------
# Accuracy through quantize_
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_config_quantizes_mlp_close_to_float(name, dtype):
    """Both layers become QuantizedLinear with the config's layout and keep their biases; the
    output is within the config's SQNR floor of the float model (float64 reference); each layer
    is within the rounding bound of its exact quantized product."""
    model = mlp(dtype)
    x = torch.randn(16, 256, dtype=dtype)
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x.double())
    biases = [model[0].bias.detach().clone(), model[2].bias.detach().clone()]
    config = static_for(name, model, x)
    report = tqk.quantize_(model, config)
    layout = repr(config.layout())
    assert report.quantized == {"0": layout, "2": layout} and report.skipped == {}, report
    for layer, bias in zip((model[0], model[2]), biases):
        assert type(layer) is tqk.QuantizedLinear and layer.quant_layout == config.layout()
        assert isinstance(layer.bias, nn.Parameter) and torch.equal(layer.bias, bias)
        assert layer.weight.dtype == dtype
    with torch.no_grad():
        out = model(x)
        hidden = model[1](model[0](x))
    assert out.dtype == dtype and out.shape == (16, 128) and bool(torch.isfinite(out).all())
    sqnr = T.sqnr(ref, out)
    assert sqnr >= SQNR_FLOOR[family(name)], f"{name} {dtype}: SQNR {sqnr:.2f} dB < {SQNR_FLOOR[family(name)]}"
    assert_layer_exact(model[0], x, msg=f"{name} layer 0")
    assert_layer_exact(model[2], hidden, msg=f"{name} layer 2")


@pytest.mark.parametrize("name", ["int8-row", "fp8-tensor", "fp8-block", "w4a8-fp8", "mxfp4-floor", "nvfp4-dynamic"])
def test_batched_and_empty_inputs(name):
    """A 3-D batch is the 2-D rows reshaped (per-row and per-block scales are per token); M = 0 is
    an empty output, no kernel."""
    lin = nn.Linear(256, 128).to(torch.bfloat16)
    tqk.quantize_(lin, CONFIGS[name])
    x = torch.randn(2, 3, 256, dtype=torch.bfloat16)
    with torch.no_grad():
        out = lin(x)
        assert torch.equal(out, lin(x.reshape(6, 256)).reshape(2, 3, 128))
        assert lin(torch.randn(0, 256, dtype=torch.bfloat16)).shape == (0, 128)
    assert_layer_exact(lin, x, msg=name)


# ------------------------------------------------------------------------------------------
# torchao's defaults and the layouts
# ------------------------------------------------------------------------------------------
def test_torchao_defaults_and_layouts():
    """Defaults as torchao's: float8 per tensor, int8 per row symmetric, W4A8 groups of 128 (tqk's
    one deliberate difference: Int8DynamicActivationIntxWeightConfig's weights are ASYMMETRIC by
    default, torchao's SYMMETRIC; its docstring says why)."""
    f8 = tqk.Float8DynamicActivationFloat8WeightConfig()
    assert (f8.activation_dtype, f8.weight_dtype, f8.granularity) == (torch.float8_e4m3fn, torch.float8_e4m3fn, None)
    e4m3 = dict(act="e4m3", weight="e4m3")
    assert f8.layout() == ScaledLayout(**e4m3, act_granularity="tensor", weight_granularity="tensor")
    for g in (tqk.PerTensor(), [tqk.PerTensor(), tqk.PerTensor()]):
        assert tqk.Float8DynamicActivationFloat8WeightConfig(granularity=g).layout() == f8.layout()
    for g in (tqk.PerRow(), [tqk.PerRow(), tqk.PerRow()]):
        assert tqk.Float8DynamicActivationFloat8WeightConfig(granularity=g).layout() == \
            ScaledLayout(**e4m3, act_granularity="row", weight_granularity="row")
    block = tqk.Float8DynamicActivationFloat8WeightConfig(granularity=BLOCK_PAIR).layout()
    assert block == ScaledLayout(**e4m3, act_granularity="block", weight_granularity="block")
    assert block.k_multiple() == 128

    i8 = tqk.Int8DynamicActivationInt8WeightConfig()
    assert i8.act_mapping_type == tqk.MappingType.SYMMETRIC and i8.granularity == tqk.PerRow()
    assert i8.layout() == ScaledLayout(act="int8", weight="int8", act_granularity="row", weight_granularity="row")
    assert tqk.Int8DynamicActivationInt8WeightConfig(granularity=tqk.PerTensor()).layout() == \
        ScaledLayout(act="int8", weight="int8", act_granularity="tensor", weight_granularity="tensor")
    assert i8.layout().k_multiple() == 1  # any in_features

    s8 = tqk.Int8StaticActivationInt8WeightConfig(act_quant_scale=torch.tensor(0.25))
    assert s8.granularity == tqk.PerRow() and s8.act_mapping_type == tqk.MappingType.SYMMETRIC
    assert s8.layout() == ScaledLayout(act="int8", weight="int8", act_granularity="static", weight_granularity="row",
                                       static_scale=0.25)
    sf8 = tqk.Float8StaticActivationFloat8WeightConfig(scale=torch.tensor(0.25))
    assert sf8.layout() == ScaledLayout(**e4m3, act_granularity="static", weight_granularity="tensor",
                                        static_scale=0.25)
    assert tqk.Float8StaticActivationFloat8WeightConfig(scale=0.25, granularity=tqk.PerRow()).layout() == \
        ScaledLayout(**e4m3, act_granularity="static", weight_granularity="row", static_scale=0.25)

    w4f8 = tqk.Float8DynamicActivationInt4WeightConfig()
    assert w4f8.group_size == 128
    assert w4f8.layout() == ScaledLayout(group_size=128, act="e4m3", weight="int4", act_granularity="row",
                                         weight_granularity="group")
    w4i8 = tqk.Int8DynamicActivationIntxWeightConfig()
    assert (w4i8.weight_dtype, w4i8.weight_granularity) == (torch.int4, tqk.PerGroup(128))
    assert (w4i8.weight_mapping_type, w4i8.act_mapping_type) == (tqk.MappingType.ASYMMETRIC, tqk.MappingType.SYMMETRIC)
    assert w4i8.layout() == ScaledLayout(group_size=128, act="int8", weight="int4", act_granularity="row",
                                         weight_granularity="group", symmetric=False)
    assert tqk.Int8DynamicActivationIntxWeightConfig(weight_mapping_type=tqk.MappingType.SYMMETRIC).layout().symmetric
    assert tqk.Int8DynamicActivationIntxWeightConfig(weight_granularity=tqk.PerGroup(64)).layout().group_size == 64


# ------------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------------
SUPPORTED_FP8 = re.escape("supported: " + ", ".join(dynamic.FP8_GRANULARITIES))
W4A8_CHOICES = re.escape(f"choose one of {dynamic.W4A8_GROUP_SIZES}")
BAD_CONFIGS = [
    # float8 granularities other than the five supported: the message lists them
    ("fp8-block-64", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(granularity=[PB((1, 64)), PB((64, 64))]),
     ValueError, r"granularity \[PerBlock\(block=\(1, 64\)\).*is not supported; " + SUPPORTED_FP8),
    ("fp8-block-1x256", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(
        granularity=[PB((1, 256)), PB((128, 128))]), ValueError, SUPPORTED_FP8),
    ("fp8-block-one", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(granularity=PB((128, 128))),
     ValueError, SUPPORTED_FP8),
    ("fp8-block-swapped", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(granularity=BLOCK_PAIR[::-1]),
     ValueError, SUPPORTED_FP8),
    ("fp8-row-tensor", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(
        granularity=[tqk.PerRow(), tqk.PerTensor()]), ValueError, SUPPORTED_FP8),
    ("fp8-pergroup", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(granularity=tqk.PerGroup(128)),
     ValueError, SUPPORTED_FP8),
    ("fp8-static-block", lambda: tqk.Float8StaticActivationFloat8WeightConfig(scale=0.1, granularity=BLOCK_PAIR),
     ValueError, r"a static scale takes PerTensor\(\) or PerRow\(\) weights"),
    # e5m2: the GEMM is e4m3 x e4m3
    ("fp8-act-e5m2", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(activation_dtype=torch.float8_e5m2),
     TypeError, r"activation_dtype must be torch.float8_e4m3fn .*got torch.float8_e5m2"),
    ("fp8-weight-e5m2", lambda: tqk.Float8DynamicActivationFloat8WeightConfig(weight_dtype=torch.float8_e5m2),
     TypeError, r"weight_dtype must be torch.float8_e4m3fn .*got torch.float8_e5m2"),
    ("fp8-static-e5m2", lambda: tqk.Float8StaticActivationFloat8WeightConfig(
        scale=0.1, activation_dtype=torch.float8_e5m2), TypeError, "activation_dtype must be torch.float8_e4m3fn"),
    # asymmetric activations
    ("int8-asym", lambda: tqk.Int8DynamicActivationInt8WeightConfig(act_mapping_type=tqk.MappingType.ASYMMETRIC),
     ValueError, "Int8DynamicActivationInt8WeightConfig: only MappingType.SYMMETRIC activations are supported, "
                 "got MappingType.ASYMMETRIC"),
    ("int8-static-asym", lambda: tqk.Int8StaticActivationInt8WeightConfig(
        act_quant_scale=0.1, act_mapping_type=tqk.MappingType.ASYMMETRIC), ValueError,
     "only MappingType.SYMMETRIC activations"),
    ("w4a8-asym-act", lambda: tqk.Int8DynamicActivationIntxWeightConfig(act_mapping_type=tqk.MappingType.ASYMMETRIC),
     ValueError, "only MappingType.SYMMETRIC activations"),
    ("int8-pergroup", lambda: tqk.Int8DynamicActivationInt8WeightConfig(granularity=tqk.PerGroup(128)),
     ValueError, r"granularity PerGroup\(group_size=128\) is not supported; use PerRow\(\) or PerTensor\(\)"),
    # W4A8 group sizes
    ("w4a8-fp8-g16", lambda: tqk.Float8DynamicActivationInt4WeightConfig(group_size=16), ValueError,
     "group_size=16 is not supported; " + W4A8_CHOICES),
    ("w4a8-fp8-g48", lambda: tqk.Float8DynamicActivationInt4WeightConfig(group_size=48), ValueError,
     "group_size=48 is not supported; " + W4A8_CHOICES),
    ("w4a8-fp8-g512", lambda: tqk.Float8DynamicActivationInt4WeightConfig(group_size=512), ValueError,
     "group_size=512 is not supported"),
    ("w4a8-int8-g0", lambda: tqk.Int8DynamicActivationIntxWeightConfig(weight_granularity=tqk.PerGroup(0)),
     ValueError, "group_size=0 is not supported; " + W4A8_CHOICES),
    ("w4a8-int8-g96", lambda: tqk.Int8DynamicActivationIntxWeightConfig(weight_granularity=tqk.PerGroup(96)),
     ValueError, "group_size=96 is not supported"),
    ("w4a8-int8-perrow", lambda: tqk.Int8DynamicActivationIntxWeightConfig(weight_granularity=tqk.PerRow()),
     ValueError, r"weight_granularity must be PerGroup\(n\), got PerRow\(\)"),
    ("w4a8-int8-int8", lambda: tqk.Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8),
     TypeError, "weight_dtype must be torch.int4, got torch.int8"),
    # block-scaled floats: the block size is the format's, the dtypes MX elements
    ("mx-block-16", lambda: tqk.MXDynamicActivationMXWeightConfig(block_size=16), ValueError,
     "MXDynamicActivationMXWeightConfig: block_size=16; OCP MX v1.0 blocks are 32 elements"),
    ("mx-block-64", lambda: tqk.MXDynamicActivationMXWeightConfig(block_size=64), ValueError, "block_size=64"),
    ("mx-act-int8", lambda: tqk.MXDynamicActivationMXWeightConfig(activation_dtype=torch.int8), TypeError,
     r"activation_dtype must be one of \[.*got torch.int8"),
    ("mx-weight-bf16", lambda: tqk.MXDynamicActivationMXWeightConfig(weight_dtype=torch.bfloat16), TypeError,
     "weight_dtype must be one of"),
    ("mx-scaling", lambda: tqk.MXDynamicActivationMXWeightConfig(scaling_mode="even"), ValueError,
     r"scaling_mode must be one of \['floor', 'rceil'\], got 'even'"),
    ("mx-kernel", lambda: tqk.MXDynamicActivationMXWeightConfig(kernel_preference="torch"), ValueError,
     "kernel_preference must be 'auto'"),
    ("nvfp4-step", lambda: tqk.NVFP4DynamicActivationNVFP4WeightConfig(step="prepare"), NotImplementedError,
     "step='prepare'"),
    ("nvfp4-dynamic-str", lambda: tqk.NVFP4DynamicActivationNVFP4WeightConfig(use_dynamic_per_tensor_scale="yes"),
     TypeError, "use_dynamic_per_tensor_scale must be a bool"),
]
BAD_SCALES = [pytest.param(torch.tensor(0.0), id="zero"), pytest.param(torch.tensor(-0.1), id="negative"),
              pytest.param(torch.tensor(float("inf")), id="inf"), pytest.param(torch.tensor(float("nan")), id="nan"),
              pytest.param(torch.tensor([0.1, 0.2]), id="two"), pytest.param(torch.empty(0), id="empty"),
              pytest.param(-1.0, id="negative-float")]
STATIC = [pytest.param(lambda s: tqk.Int8StaticActivationInt8WeightConfig(act_quant_scale=s), id="int8"),
          pytest.param(lambda s: tqk.Float8StaticActivationFloat8WeightConfig(scale=s), id="fp8")]


@pytest.mark.parametrize("make,error,pattern", [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_unsupported_config_fails_at_construction(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


@pytest.mark.parametrize("make", STATIC)
@pytest.mark.parametrize("scale", BAD_SCALES)
def test_bad_static_scale(make, scale):
    with pytest.raises(ValueError, match="the static activation scale must be one positive finite number, got"):
        make(scale)


@pytest.mark.parametrize("make", STATIC)
def test_good_static_scales(make):
    """One positive number, as a tensor of any shape or a Python float, is the scale."""
    for scale in (torch.tensor(0.5), torch.tensor([0.5]), torch.tensor([[0.5]]), 0.5):
        assert make(scale).layout().static_scale == 0.5


@pytest.mark.parametrize("make", STATIC)
def test_missing_static_scale(make):
    with pytest.raises(ValueError, match="static activation scale"):
        make(None)


@pytest.mark.parametrize("name,reason", [
    ("fp8-block", "in_features=200 is not a multiple of 128, which block scales of this config need"),
    ("w4a8-int8", "in_features=200 is not a multiple of 128, which group scales of this config need"),
    ("w4a8-fp8", "in_features=200 is not a multiple of 128, which group scales of this config need"),
    ("mxfp8-rceil", "in_features=200 is not a multiple of the MX block size 32"),
    ("nvfp4-dynamic", "in_features=200 is not a multiple of the NVFP4 block size 16"),
])
def test_k_not_a_multiple_of_the_block_is_skipped_with_reason(name, reason):
    """Linear(200, 64) cannot take 1x128 / 128x128 blocks or groups of 128: left in float (still an
    nn.Linear, still running), named in report.skipped with the reason and in the warning; the
    next layer (K = 256) is quantized."""
    model = nn.Sequential(nn.Linear(200, 256), nn.ReLU(), nn.Linear(256, 64)).to(torch.bfloat16)
    with pytest.warns(UserWarning, match=re.escape(f"left 1 layer(s) in float:\nquantized 1 layers, left 1 in float\n"
                                                   f"  not quantized 0: {reason}")):
        report = tqk.quantize_(model, CONFIGS[name])
    assert report.skipped == {"0": reason} and list(report.quantized) == ["2"]
    assert type(model[0]) is nn.Linear and type(model[0].weight) is nn.Parameter
    assert type(model[2]) is tqk.QuantizedLinear
    with torch.no_grad():
        assert bool(torch.isfinite(model(torch.randn(3, 200, dtype=torch.bfloat16))).all())


class _WeightOnCuda:
    """A CPU weight that says it is on cuda:0: the device check reads only `.device`; everything
    else (shape, dtype, float()) is the CPU tensor's, so a handler that passes the check quantizes
    it on the CPU."""

    device = torch.device("cuda", 0)

    def __init__(self, weight):
        self._weight = weight

    def __getattr__(self, name):
        return getattr(self._weight, name)


@pytest.fixture
def fake_gpu(monkeypatch):
    """Simulate a CUDA GPU of a given capability on the CPU; records the devices asked about."""
    asked = []

    def install(capability, name):
        def get_capability(device=None):
            asked.append(device)
            return capability
        monkeypatch.setattr(torch.cuda, "get_device_capability", get_capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    install.asked = asked
    return install


@pytest.mark.parametrize("capability,gpu", [((8, 6), "NVIDIA A10"), ((8, 0), "NVIDIA A100-SXM4-80GB"),
                                            ((7, 5), "Tesla T4")], ids=["sm86", "sm80", "sm75"])
def test_fp8_refused_below_compute_capability_8_9(fake_gpu, capability, gpu):
    """At quantize time (the handler quantize_weight dispatches to, given a weight on cuda:0): every
    config with e4m3 activations or weights raises a ValueError naming the GPU and its capability;
    the int8 configs quantize, the capability does not matter to them."""
    fake_gpu(capability, gpu)
    want = re.escape(f"float8 activations need a GPU of compute capability 8.9 or newer; {gpu} is "
                     f"{capability[0]}.{capability[1]}")
    with pytest.raises(ValueError, match=want):
        dynamic._check_fp8_device(types.SimpleNamespace(device=torch.device("cuda", 0)))
    weight = torch.randn(64, 256, dtype=torch.bfloat16)
    for name, config in CONFIGS.items():
        handler = HANDLERS[type(config)]
        if name in FP8:
            with pytest.raises(ValueError, match=want):
                handler(_WeightOnCuda(weight), config)
        else:
            assert isinstance(handler(_WeightOnCuda(weight), config), tqk.QuantizedLinearWeight), name
    assert fake_gpu.asked and all(d == torch.device("cuda", 0) for d in fake_gpu.asked)


@pytest.mark.parametrize("capability", [(8, 9), (9, 0), (10, 0)], ids=["sm89", "sm90", "sm100"])
def test_fp8_accepted_from_compute_capability_8_9(fake_gpu, capability):
    fake_gpu(capability, "NVIDIA test GPU")
    weight = torch.randn(64, 256, dtype=torch.bfloat16)
    for name in FP8:
        config = CONFIGS[name]
        qw = HANDLERS[type(config)](_WeightOnCuda(weight), config)
        assert isinstance(qw, tqk.QuantizedLinearWeight) and qw.quant_layout == config.layout(), name
    assert len(fake_gpu.asked) == len(FP8)


def test_fp8_device_check_does_not_ask_cuda_for_a_cpu_weight(fake_gpu):
    fake_gpu((7, 0), "must not be asked")
    model = mlp()
    tqk.quantize_(model, CONFIGS["fp8-row"])
    assert fake_gpu.asked == []


# ------------------------------------------------------------------------------------------
# Non-finite activations
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_nan_in_one_row_stays_in_that_row(name):
    """As with F.linear: a NaN in row 2 makes output row 2 NaN and no other (a per-tensor scale is
    taken over the finite rows); an all-zero row gives the bias exactly at the first layer."""
    model = quantized_mlp(name)
    x = torch.randn(6, 256, dtype=torch.bfloat16)
    x[2, 5] = float("nan")
    x[4] = 0
    with torch.no_grad():
        out = model(x)
        first = model[0](x)
    others = [0, 1, 3, 4, 5]
    assert bool(out[2].isnan().all()) and bool(first[2].isnan().all()), name
    assert bool(torch.isfinite(out[others]).all()) and bool(torch.isfinite(first[others]).all()), name
    assert torch.equal(first[4], model[0].bias.detach())
    clean = x.clone()
    clean[2] = 0
    with torch.no_grad():  # the other rows are what they are without the NaN row (row scales)
        ref = model(clean)
    if CONFIGS[name].layout().act_granularity not in ("tensor", "nvfp4"):  # (NVFP4: a tensor scale too)
        assert torch.equal(out[others], ref[others]), name


INF_CASES = list(NAMES)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # the interpreter's numpy: inf * 0
@pytest.mark.parametrize("name", INF_CASES)
def test_inf_in_one_row_stays_in_that_row(name):
    """As with F.linear, an Inf in row 1 leaves the other rows finite and row 1 not: a row whose
    amax is not finite keeps it as its scale, per tensor and static scales too."""
    model = quantized_mlp(name)
    x = torch.randn(4, 256, dtype=torch.bfloat16)
    x[1, 7] = float("inf")
    with torch.no_grad():
        out = model(x)
    assert not bool(torch.isfinite(out[1]).all()), name
    assert bool(torch.isfinite(out[[0, 2, 3]]).all()), f"{name}: {torch.isfinite(out).all(1).tolist()}"


# ------------------------------------------------------------------------------------------
# state_dict
# ------------------------------------------------------------------------------------------
def _saved(state) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    """torch.save, torch.load(weights_only=True), load into a model quantized with the same config
    from other random weights: its outputs become the first model's, bit for bit. Loading into a
    float model with assign=True, then unwrap_tensor_subclass, gives the same."""
    model = quantized_mlp(name, seed=0)
    state = _saved(model.state_dict())
    assert sorted(state) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert isinstance(state["0.weight"], tqk.QuantizedLinearWeight)
    assert state["0.weight"].quant_layout == CONFIGS[name].layout()
    other = quantized_mlp(name, seed=1)
    x = torch.randn(5, 256, dtype=torch.bfloat16)
    with torch.no_grad():
        want = model(x)
        assert not torch.equal(other(x), want)  # the load below has something to do
        result = other.load_state_dict(state)
        assert not result.missing_keys and not result.unexpected_keys
        assert torch.equal(other(x), want)
        plain = mlp(seed=2)
        plain.load_state_dict(_saved(model.state_dict()), assign=True)
        tqk.unwrap_tensor_subclass(plain)
        assert type(plain[0]) is tqk.QuantizedLinear
        assert torch.equal(plain(x), want)


def test_state_dict_of_another_layout_is_refused():
    """A static scale is part of the layout: weights saved with one scale do not load into a model
    quantized with another; the error names the expected layout."""
    model = quantized_mlp("int8-static")
    state = _saved(model.state_dict())
    other = mlp()
    tqk.quantize_(other, tqk.Int8StaticActivationInt8WeightConfig(act_quant_scale=torch.tensor(0.5)))
    with pytest.raises(RuntimeError, match=r"0.weight: expected a QuantizedLinearWeight of layout ScaledLayout\(.*"
                                           r"static_scale=0.5"):
        other.load_state_dict(state)


# ------------------------------------------------------------------------------------------
# torch.compile
# ------------------------------------------------------------------------------------------
def graphs() -> int:
    return counters["stats"]["unique_graphs"]


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


# On the CPU the op is a custom_op opaque to inductor (the interpreter runs it), so the compiled
# model runs the very same activation quantization and kernel as eager: equal bit for bit. (On a
# GPU inductor fuses the quantization: tests/gpu/test_scaled_gpu.py compares within a tolerance.)
@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("name", NAMES)
def test_compile_fullgraph(name):
    model = quantized_mlp(name)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        for m in (4, 4):  # the first call compiles, the second reuses the graph
            x = torch.randn(m, 256, dtype=torch.bfloat16)
            assert torch.equal(compiled(x), model(x)), f"{name} M={m}"
    assert graphs() == 1 and dict(counters["graph_break"]) == {}


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("name", NAMES)
def test_compile_fullgraph_dynamic_two_m(name):
    model = quantized_mlp(name)
    compiled = torch.compile(model, fullgraph=True, dynamic=True)
    with torch.no_grad():
        for m in (3, 17):
            x = torch.randn(m, 256, dtype=torch.bfloat16)
            assert torch.equal(compiled(x), model(x)), f"{name} M={m}"
            assert graphs() == 1, f"{name}: recompiled at M={m}"
    assert dict(counters["graph_break"]) == {}


@pytest.mark.usefixtures("fresh_dynamo")
@pytest.mark.parametrize("name", NAMES)
def test_compile_reduce_overhead_runs_on_cpu(name):
    """No CUDA graphs on the CPU (inductor skips them): the mode must still compile from the first
    call, run repeated and new shapes, and match eager."""
    model = quantized_mlp(name)
    compiled = torch.compile(model, mode="reduce-overhead")
    with torch.no_grad():
        for m in (2, 2, 9):
            x = torch.randn(m, 256, dtype=torch.bfloat16)
            assert torch.equal(compiled(x).clone(), model(x)), f"{name} M={m}"
    assert graphs() >= 1 and dict(counters["graph_break"]) == {}
