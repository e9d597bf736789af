"""The method registry: every way of computing y = x @ W.T (+ b) that the benchmark compares.

A Method has a `check(device)` that returns a reason to skip (package missing, no GPU) or None,
and a `factory(weight, bias, opts)` that, given the bf16 weight [N, K] on the target device,
returns a `Prepared` (the callable x -> y and the bytes the kernel must read for the weight)
or raises `Unsupported` for a shape it cannot run. Dynamic-activation methods quantize x inside
the callable, so the activation quantization is part of what gets timed.

Every peer is optional: its package is imported inside its factory/check only.
"""
from __future__ import annotations

import importlib
import os
import re
import types
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


class Unsupported(Exception):
    """The method cannot run this case (shape, dtype, device); the message says why."""


@dataclass
class Options:
    compile: bool = True  # torch.compile the peers whose usual recipe is compiled (GPU only)
    int4_group_size: int = 128


@dataclass
class Prepared:
    fn: Callable[[torch.Tensor], torch.Tensor]
    weight_bytes: int
    note: str = ""
    compiled: Optional["_Compiled"] = None
    copy: Optional[Callable[[], "Prepared"]] = None  # another copy without quantizing again

    def status(self) -> str:
        notes = [self.note] if self.note else []
        if self.compiled is not None and self.compiled.error:
            notes.append(f"eager (compile failed: {self.compiled.error[:80]})")
        return "; ".join(notes)


@dataclass
class Method:
    name: str
    family: str  # "baseline", "tqk" or "peer"
    factory: Callable[[torch.Tensor, Optional[torch.Tensor], Options], Prepared]
    check: Callable[[torch.device], Optional[str]] = field(default=lambda device: None)
    description: str = ""
    dynamic_act: bool = False
    default: bool = True  # part of the default kernel sweep


# ----------------------------------------------------------------------------- helpers
def tensor_bytes(t) -> int:
    """Bytes of a tensor; packed bytes of a quantized tensor subclass (tqk, torchao, ...)."""
    if t is None:
        return 0
    nb = getattr(t, "packed_nbytes", None)
    if nb is not None:
        return int(nb)
    flatten = getattr(type(t), "__tensor_flatten__", None)
    if flatten is not None:
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()


def module_bytes(module: torch.nn.Module, skip: Callable[[str], bool] = lambda name: False) -> int:
    """Bytes of a module's parameters and buffers (each tensor counted once)."""
    seen, total = set(), 0
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if id(t) in seen or skip(name):
            continue
        seen.add(id(t))
        total += tensor_bytes(t)
    return total


def _missing(module: str) -> Optional[str]:
    try:
        importlib.import_module(module)
    except Exception as e:  # ImportError, or a package that fails to import on this machine
        return f"{module} not importable ({type(e).__name__}: {str(e)[:80]})"
    return None


def _need_cuda(device) -> Optional[str]:
    return None if torch.device(device).type == "cuda" else "needs a CUDA GPU"


def _need_sm(device, major: int, minor: int = 0) -> Optional[str]:
    if torch.device(device).type != "cuda":
        return "needs a CUDA GPU"
    cap = torch.cuda.get_device_capability(device)
    return None if cap >= (major, minor) else f"needs compute capability >= {major}.{minor}, got {cap}"


def _set_dynamo_limits():
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, max(getattr(cfg, name), 64))


class _Compiled:
    """torch.compile(fn, dynamic=False): static shapes, as in a compiled model, one graph per M. Made
    once per (method, N, K) and shared by that shape's weight copies (tensors are arguments, so one
    graph serves every copy). The first failure falls back to eager for good.

    Each instance compiles its own copy of fn (own code object): dynamo keys its cache, and counts
    recompiles against recompile_limit, per code object, so methods and shapes sharing one function
    would share one cache and, past the limit, run eagerly (the sweep printed exactly that)."""

    def __init__(self, fn, enabled: bool, tag: str = ""):
        self.fn = fn
        self.error = ""
        self.compiled = None
        if enabled:
            _set_dynamo_limits()
            self.compiled = torch.compile(_own_code(fn, tag), dynamic=False)

    def __call__(self, *args):
        if self.compiled is not None:
            try:
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - any compile failure means: run eagerly
                self.error = f"{type(e).__name__}: {e}"
                self.compiled = None
        return self.fn(*args)


def _own_code(fn, tag: str):
    """fn with a code object of its own (named after tag), so dynamo caches its graphs apart."""
    if not tag:
        return fn
    code = fn.__code__.replace(co_name=f"{fn.__name__}__{re.sub(r'[^0-9A-Za-z_]', '_', tag)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


_COMPILED: dict[tuple, _Compiled] = {}


def _compiled(key: str, shape: tuple, fn, enabled: bool) -> _Compiled:
    """The compiled fn for one method at one weight shape (N, K): static shapes, so a graph per M."""
    k = (key, tuple(shape), enabled)
    if k not in _COMPILED:
        _COMPILED[k] = _Compiled(fn, enabled, tag=f"{key}_{'x'.join(map(str, shape))}")
    return _COMPILED[k]


def quant_int8_rowwise(t: torch.Tensor):
    """Symmetric per-row int8: (q int8, scale fp32 [rows, 1]) with t ~ q * scale."""
    tf = t.float()
    scale = tf.abs().amax(-1, keepdim=True).clamp(min=1e-12) / 127.0
    q = torch.round(tf / scale).clamp(-128, 127).to(torch.int8)
    return q, scale


def quant_fp8_rowwise(t: torch.Tensor):
    """Per-row float8 e4m3: (q e4m3, scale fp32 [rows, 1]) with t ~ q * scale."""
    tf = t.float()
    scale = tf.abs().amax(-1, keepdim=True).clamp(min=1e-12) / FP8_MAX
    q = (tf / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return q, scale


def quant_int4_asym(w: torch.Tensor, group_size: int):
    """Asymmetric min-max 4-bit groups along K: (q int32 [N, K] in 0..15, scale, wmin) both
    fp32 [N, K // group_size], with w ~ q * scale + wmin."""
    N, K = w.shape
    if K % group_size:
        raise Unsupported(f"K={K} not divisible by group_size={group_size}")
    wg = w.float().reshape(N, K // group_size, group_size)
    wmin = wg.amin(-1, keepdim=True)
    wmax = wg.amax(-1, keepdim=True)
    scale = ((wmax - wmin) / 15.0).clamp(min=1e-8)
    q = torch.round((wg - wmin) / scale).clamp(0, 15).to(torch.int32).reshape(N, K)
    return q, scale.squeeze(-1), wmin.squeeze(-1)


def _linear_core(x, w, b):
    return F.linear(x, w, b)


def _with_bias(out, bias):
    return out if bias is None else out + bias


# ----------------------------------------------------------------------------- bf16
def _bf16(w, b, opts):
    return Prepared(lambda x: F.linear(x, w, b), tensor_bytes(w))


# ----------------------------------------------------------------------------- tqk
def tqk_configs() -> dict:
    """name -> tqk config object for every tqk weight-only config; {} if tqk's API is missing."""
    try:
        import tqk
        return {
            "tqk-int4": tqk.Int4WeightOnlyConfig(group_size=128),
            "tqk-int4-hqq": tqk.Int4WeightOnlyConfig(group_size=128, use_hqq=True),
            "tqk-int8": tqk.Int8WeightOnlyConfig(),
            "tqk-fp8": tqk.Float8WeightOnlyConfig(),
            "tqk-uint3": tqk.UIntxWeightOnlyConfig(bit_width=3, group_size=128),
            "tqk-uint2": tqk.UIntxWeightOnlyConfig(bit_width=2, group_size=64),
            "tqk-fp6": tqk.FPXWeightOnlyConfig(ebits=3, mbits=2),
            "tqk-fp5": tqk.FPXWeightOnlyConfig(ebits=2, mbits=2),
            "tqk-codebook4": tqk.CodebookWeightOnlyConfig(dtype=torch.uint4),
            "tqk-codebook8": tqk.CodebookWeightOnlyConfig(dtype=torch.uint8),
            # block-scaled floats (OCP MX, NVFP4), weight-only
            "tqk-mxfp4": tqk.MXWeightOnlyConfig(weight_dtype=getattr(torch, "float4_e2m1fn_x2", "fp4_e2m1")),
            "tqk-mxfp6": tqk.MXWeightOnlyConfig(weight_dtype="fp6_e3m2"),
            "tqk-mxfp8": tqk.MXWeightOnlyConfig(weight_dtype=torch.float8_e4m3fn),
            "tqk-nvfp4": tqk.NVFP4WeightOnlyConfig(),
            # activation-quantized (8-bit tensor cores; the activation's quantization is timed)
            "tqk-int8dq": tqk.Int8DynamicActivationInt8WeightConfig(),
            "tqk-fp8dq-row": tqk.Float8DynamicActivationFloat8WeightConfig(granularity=tqk.PerRow()),
            "tqk-fp8dq-tensor": tqk.Float8DynamicActivationFloat8WeightConfig(),
            "tqk-fp8dq-block": tqk.Float8DynamicActivationFloat8WeightConfig(
                granularity=[tqk.PerBlock((1, 128)), tqk.PerBlock((128, 128))]),
            "tqk-w4a8-int8": tqk.Int8DynamicActivationIntxWeightConfig(),
            "tqk-w4a8-fp8": tqk.Float8DynamicActivationInt4WeightConfig(),
        }
    except Exception:  # noqa: BLE001
        return {}


def _tqk_check(device) -> Optional[str]:
    try:
        import tqk
    except Exception as e:  # noqa: BLE001
        return f"tqk not importable ({type(e).__name__}: {str(e)[:80]})"
    for attr in ("quantize_weight", "Int4WeightOnlyConfig", "Int8WeightOnlyConfig", "Float8WeightOnlyConfig"):
        if not hasattr(tqk, attr):
            return f"tqk.{attr} not available yet"
    if torch.device(device).type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        return "tqk's Triton kernels need a CUDA GPU or TRITON_INTERPRET=1"
    return None


# activation-quantized methods with the activation's path forced (ScaledLayout.act_quant): the GEMM's
# prologue, or codes written first; the plain names take tqk's choice by M (quantize_in_prologue)
ACT_QUANT_VARIANTS = {"-prologue": "prologue", "-codes": "codes"}
ACT_QUANT_BASES = ("tqk-int8dq", "tqk-fp8dq-row", "tqk-fp8dq-tensor", "tqk-fp8dq-block", "tqk-w4a8-int8",
                   "tqk-w4a8-fp8")


def _tqk_factory(name: str, act_quant: str = ""):
    def factory(w, b, opts):
        import dataclasses

        import tqk
        cfg = tqk_configs()[name]
        try:
            qw = tqk.quantize_weight(w, cfg)
        except (ValueError, NotImplementedError, AssertionError) as e:
            raise Unsupported(f"{type(e).__name__}: {e}") from e
        if act_quant:
            layout = dataclasses.replace(qw.quant_layout, act_quant=act_quant)
            qw = tqk.QuantizedLinearWeight(qw.packed, qw.scales, qw.zeros, layout, tuple(qw.shape), qw.dtype)
        return _tqk_prepared(qw, b, opts)
    return factory


def _tqk_prepared(qw, b, opts=None) -> Prepared:
    if qw.quant_layout.family == "weight_only":
        return Prepared(lambda x: F.linear(x, qw, b), tensor_bytes(qw), copy=lambda: _tqk_prepared(qw.clone(), b))
    # activation-quantized: compiled like the _scaled_mm peer, so the activation's quantization is one
    # fused kernel as in a compiled model (eagerly it is several torch ops); called as QuantizedLinear
    # calls it, on the plain buffers and the device's split-K counters
    layout, (n, k) = qw.quant_layout, tuple(qw.shape)
    counters = layout.split_counters(n, k, qw.device)
    comp = _compiled(f"tqk-{layout}", (n, k), _scaled_layer_call(layout, n, k, qw.dtype), opts.compile and qw.is_cuda)
    return Prepared(lambda x: comp(x, qw.packed, qw.scales, qw.zeros, b, counters), tensor_bytes(qw),
                    note="act quant timed", compiled=comp, copy=lambda: _tqk_prepared(qw.clone(), b, opts))


def _scaled_layer_call(layout, n: int, k: int, dtype):
    def scaled_layer(x, packed, scales, zeros, bias, counters):
        return layout.linear(x, packed, scales, zeros, bias, counters, dtype=dtype, out_features=n, in_features=k)
    return scaled_layer


# ----------------------------------------------------------------------------- torch tinygemm
def _tinygemm(w, b, opts):
    g = opts.int4_group_size
    N, K = w.shape
    if w.dtype != torch.bfloat16:
        raise Unsupported("tinygemm needs bf16")
    if N % 8 or K % g or g not in (32, 64, 128, 256):
        raise Unsupported(f"tinygemm needs N % 8 == 0, K % group == 0, group in 32..256 (N={N}, K={K}, g={g})")
    inner = next((t for t in (8, 4, 2) if K % (t * 16) == 0), None)
    if inner is None:
        raise Unsupported(f"tinygemm needs K % 32 == 0 (K={K})")
    q, scale, wmin = quant_int4_asym(w, g)
    zero = wmin + 8.0 * scale  # tinygemm dequant: (q - 8) * scale + zero
    sz = torch.stack([scale, zero], -1).transpose(0, 1).contiguous().to(torch.bfloat16)  # [K/g, N, 2]
    if w.is_cuda:
        u8 = (q[:, ::2] << 4 | q[:, 1::2]).to(torch.uint8).contiguous()
        packed = torch.ops.aten._convert_weight_to_int4pack(u8, inner)
        mm = torch.ops.aten._weight_int4pack_mm
    else:
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.contiguous(), inner)
        mm = torch.ops.aten._weight_int4pack_mm_for_cpu

    def fn(x):
        return _with_bias(mm(x, packed, g, sz), b)

    return Prepared(fn, tensor_bytes(packed) + tensor_bytes(sz), note=f"g={g}")


# ----------------------------------------------------------------------------- torch._scaled_mm / _int_mm
def _scaled_mm_core(x, wq_t, w_scale, bias):
    xq, x_scale = quant_fp8_rowwise(x)
    return torch._scaled_mm(xq, wq_t, scale_a=x_scale, scale_b=w_scale, bias=bias, out_dtype=x.dtype)


def _rowwise_peer(w, b, opts, *, name: str, multiple: int, quant, core, note: str) -> Prepared:
    """A torch op taking rowwise-quantized x and W: W quantized once and passed as [K, N]
    column-major with its scales as [1, N]; x is quantized inside the timed (compiled) call."""
    N, K = w.shape
    if N % multiple or K % multiple:
        raise Unsupported(f"{name} needs N and K divisible by {multiple}")
    wq, ws = quant(w)
    ws_row = ws.reshape(1, N).contiguous()
    wq_t = wq.t()
    comp = _compiled(name.lstrip("_"), (N, K), core, opts.compile and w.is_cuda)
    return Prepared(lambda x: comp(x, wq_t, ws_row, b), tensor_bytes(wq) + tensor_bytes(ws_row), note=note,
                    compiled=comp)


def _scaled_mm(w, b, opts):
    return _rowwise_peer(w, b, opts, name="_scaled_mm", multiple=16, quant=quant_fp8_rowwise, core=_scaled_mm_core,
                         note="fp8 rowwise, act quant timed")


def _int_mm_core(x, wq_t, w_scale, bias):
    m = x.shape[0]
    xq, x_scale = quant_int8_rowwise(x)
    if m <= 16:  # _int_mm needs M > 16: pad, as torchao does
        xq = F.pad(xq, (0, 0, 0, 32 - m))
    y = torch._int_mm(xq, wq_t)[:m]
    out = (y.float() * x_scale * w_scale).to(x.dtype)
    return _with_bias(out, bias)


def _int_mm(w, b, opts):
    return _rowwise_peer(w, b, opts, name="_int_mm", multiple=8, quant=quant_int8_rowwise, core=_int_mm_core,
                         note="int8 rowwise, act quant timed")


# ----------------------------------------------------------------------------- gemlite
def _gemlite_check(device) -> Optional[str]:
    return _need_cuda(device) or _missing("gemlite")


def _gemlite_layer_bytes(layer) -> int:
    total = 0
    for name in ("W_q", "scales", "zeros"):
        t = getattr(layer, name, None)
        if isinstance(t, torch.Tensor):
            total += tensor_bytes(t)
    return total


def _gemlite_factory(kind: str):
    def factory(w, b, opts):
        from gemlite import helper as gh

        dev = str(w.device)
        try:
            if kind == "A16W4":
                g = opts.int4_group_size
                q, scale, wmin = quant_int4_asym(w, g)
                zero = -wmin / scale  # HQQ convention: w ~ (q - zero) * scale
                layer = gh.A16W4_HQQ_INT(device=dev, dtype=torch.bfloat16).from_weights(
                    q.to(torch.uint8), scale.to(torch.bfloat16), zero.to(torch.bfloat16), bias=b)
            elif kind == "A16W8_INT8":
                layer = gh.A16W8_INT8(device=dev, dtype=torch.bfloat16).from_weights(w, bias=b)
            elif kind == "A16W8_FP8":
                layer = gh.A16W8_FP8(device=dev, dtype=torch.bfloat16).from_weights(w, bias=b)
            elif kind == "A8W8_INT8":
                layer = gh.A8W8_INT8_dynamic(device=dev, dtype=torch.bfloat16).from_weights(w, bias=b)
            elif kind == "A8W8_FP8":
                layer = gh.A8W8_FP8_dynamic(device=dev, dtype=torch.bfloat16).from_weights(w, bias=b)
            elif kind in GEMLITE_BLOCK_SCALED:  # gemlite quantizes these itself, from a float layer
                cls = getattr(gh, kind, None)
                if cls is None:
                    raise NotImplementedError(f"this gemlite has no helper.{kind}")
                layer = cls(device=dev, dtype=torch.bfloat16).from_linear(_float_linear(w, b))
            else:  # pragma: no cover
                raise ValueError(kind)
        except (NotImplementedError, AssertionError, ValueError, RuntimeError, TypeError) as e:
            raise Unsupported(f"gemlite {kind}: {e}") from e
        return Prepared(layer, _gemlite_layer_bytes(layer), note=kind)
    return factory


# gemlite's MX / NVFP4 classes (OCP MX, NVFP4): Blackwell is their target; they run where gemlite's
# kernels compile for the GPU, and are skipped (Unsupported) where they do not
GEMLITE_BLOCK_SCALED = ("A16W4_MXFP", "A16W8_MXFP", "A16W4_NVFP", "A8W8_MXFP_dynamic")


def _float_linear(w, b) -> torch.nn.Linear:
    n, k = w.shape
    lin = torch.nn.Linear(k, n, bias=b is not None, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        lin.weight.copy_(w)
        if b is not None:
            lin.bias.copy_(b)
    return lin


# ----------------------------------------------------------------------------- torchao
def _torchao_config(kind: str, opts: Options):
    if kind in TORCHAO_BLOCK_SCALED:
        return _torchao_block_scaled_config(kind)
    from torchao import quantization as tq
    if kind == "int8wo":  # version 2 (Int8Tensor): torchao 0.17 calls its default, version 1, deprecated, and
        #                   that one's compile of the 4-layer decoder ran past 175 s in the model benchmark
        return tq.Int8WeightOnlyConfig(version=2)
    if kind == "int4wo":
        return tq.Int4WeightOnlyConfig(group_size=opts.int4_group_size, int4_packing_format="tile_packed_to_4d")
    if kind == "fp8dq":
        return tq.Float8DynamicActivationFloat8WeightConfig(granularity=tq.PerRow())
    if kind == "codebook4":  # a prototype: its tensor dequantizes, then F.linear
        # (torchao 0.17 does not export it from the package: the name there is coremltools' config)
        from torchao.prototype.quantization.codebook.codebook_quantized_tensor import CodebookWeightOnlyConfig
        return CodebookWeightOnlyConfig(dtype=torch.uint4, block_size=(1, 1))
    raise ValueError(kind)  # pragma: no cover


# torchao's MX / NVFP4 configs (torchao.prototype.mx_formats). Below SM100 they run emulated: the weight
# dequantized, then a bf16 matmul (MX dynamic: KernelPreference.EMULATED, activations quantized too)
TORCHAO_BLOCK_SCALED = {
    "nvfp4wo": "NVFP4WeightOnlyConfig (emulated below SM100)",
    "mxfp8-emulated": "MXDynamicActivationMXWeightConfig fp8 e4m3, emulated",
    "mxfp4-emulated": "MXDynamicActivationMXWeightConfig fp4 e2m1, emulated",
}


def _torchao_block_scaled_config(kind: str):
    from torchao.prototype import mx_formats as mxf
    if kind == "nvfp4wo":
        return mxf.NVFP4WeightOnlyConfig()
    from torchao.quantization.quantize_.common.kernel_preference import KernelPreference
    dtype = torch.float8_e4m3fn if kind == "mxfp8-emulated" else torch.float4_e2m1fn_x2
    return mxf.MXDynamicActivationMXWeightConfig(activation_dtype=dtype, weight_dtype=dtype,
                                                 kernel_preference=KernelPreference.EMULATED)


def _torchao_check(kind: str):
    def check(device):
        reason = _need_cuda(device) or _missing("torchao")
        if reason is None and kind == "fp8dq":
            reason = _need_sm(device, 8, 9)
        if reason is None and kind == "codebook4":
            reason = _missing("torchao.prototype.quantization.codebook")
        return reason
    return check


def _torchao_factory(kind: str):
    def factory(w, b, opts):
        from torchao.quantization import quantize_

        N, K = w.shape
        lin = _float_linear(w, b)
        try:
            quantize_(lin, _torchao_config(kind, opts))
        except (NotImplementedError, AssertionError, ValueError, RuntimeError, ImportError, AttributeError,
                TypeError) as e:
            raise Unsupported(f"torchao {kind}: {type(e).__name__}: {e}") from e
        qw, qb = lin.weight, lin.bias
        if type(qw) in (torch.Tensor, torch.nn.Parameter) and type(qw.data) is torch.Tensor:
            # torchao's codebook transform leaves a weight of more than 2**27 elements in float
            raise Unsupported(f"torchao {kind}: the weight was left unquantized")
        comp = _compiled(f"torchao-{kind}", (N, K), _linear_core, opts.compile and w.is_cuda)
        return Prepared(lambda x: comp(x, qw, qb), tensor_bytes(qw),
                        note="torch.compile" if opts.compile else "eager", compiled=comp)
    return factory


# ----------------------------------------------------------------------------- registry
def _build_registry() -> dict[str, Method]:
    ms = [Method("bf16", "baseline", _bf16, description="F.linear, bf16 weights (cuBLAS)")]
    tqk_desc = {
        "tqk-int4": "tqk int4 weight-only, group 128",
        "tqk-int4-hqq": "tqk int4 weight-only, group 128, HQQ qparams",
        "tqk-int8": "tqk int8 weight-only, per row",
        "tqk-fp8": "tqk fp8 e4m3 weight-only, per row",
        "tqk-uint3": "tqk uint3 weight-only, group 128 (3 bits a code)",
        "tqk-uint2": "tqk uint2 weight-only, group 64",
        "tqk-fp6": "tqk fp6 e3m2 weight-only, per row (6 bits a code)",
        "tqk-fp5": "tqk fp5 e2m2 weight-only, per row (5 bits a code)",
        "tqk-codebook4": "tqk codebook, 16 k-means entries per tensor, a scale per row (4 bits a code)",
        "tqk-codebook8": "tqk codebook, 256 k-means entries per tensor, a scale per row (8 bits a code)",
        "tqk-mxfp4": "tqk MXFP4 weight-only: e2m1, an E8M0 scale per 32 (4.25 bits)",
        "tqk-mxfp6": "tqk MXFP6 weight-only: e3m2, an E8M0 scale per 32 (6.25 bits)",
        "tqk-mxfp8": "tqk MXFP8 weight-only: e4m3, an E8M0 scale per 32 (8.25 bits)",
        "tqk-nvfp4": "tqk NVFP4 weight-only: e2m1, an e4m3 scale per 16 and a float32 per tensor (4.5 bits)",
        "tqk-int8dq": "tqk int8 x int8, per-row activations and weights",
        "tqk-fp8dq-row": "tqk fp8 x fp8, per-row activations and weights",
        "tqk-fp8dq-tensor": "tqk fp8 x fp8, per-tensor activations and weights",
        "tqk-fp8dq-block": "tqk fp8 x fp8, 1x128 activation and 128x128 weight blocks",
        "tqk-w4a8-int8": "tqk int4 g128 weights x int8 per-row activations",
        "tqk-w4a8-fp8": "tqk int4 g128 weights x fp8 per-row activations",
    }
    dynamic = {n for n in tqk_desc if "dq" in n or "w4a8" in n}
    for name, desc in tqk_desc.items():  # HQQ runs the same kernel as tqk-int4: --full only
        ms.append(Method(name, "tqk", _tqk_factory(name), _tqk_check, desc, dynamic_act=name in dynamic,
                         default=name not in ("tqk-int4-hqq", "tqk-uint2", "tqk-fp5", "tqk-mxfp6")))
    for name in ACT_QUANT_BASES:  # what the plain name picks by M, forced: for measuring the choice
        for suffix, act_quant in ACT_QUANT_VARIANTS.items():
            how = "quantized in the GEMM prologue" if act_quant == "prologue" else "codes written, then the GEMM"
            ms.append(Method(name + suffix, "tqk", _tqk_factory(name, act_quant), _tqk_check,
                             f"{tqk_desc[name]}; activation {how}", dynamic_act=True, default=False))
    ms += [
        Method("torch-tinygemm-int4", "peer", _tinygemm, description="aten._weight_int4pack_mm, group 128"),
        Method("torch-scaled_mm-fp8", "peer", _scaled_mm,
               check=lambda d: _need_sm(d, 8, 9) if torch.device(d).type == "cuda" else None,
               description="fp8 rowwise act+weight, torch._scaled_mm", dynamic_act=True),
        # inductor compiles its activation quantization for up to 2.5 min per shape: --full only
        Method("torch-int_mm-int8", "peer", _int_mm, description="int8 rowwise act+weight, torch._int_mm",
               dynamic_act=True, default=False),
    ]
    for kind, dyn in (("A16W4", False), ("A16W8_INT8", False), ("A16W8_FP8", False),
                      ("A8W8_INT8", True), ("A8W8_FP8", True)):
        check = _gemlite_check
        if kind.endswith("FP8"):
            check = (lambda d: _gemlite_check(d) or _need_sm(d, 8, 9))
        # gemlite autotunes for 30-60 s per variant and shape: A16W4 by default, all with --full
        ms.append(Method(f"gemlite-{kind}", "peer", _gemlite_factory(kind), check,
                         f"gemlite {kind}", dynamic_act=dyn, default=kind == "A16W4"))
    for kind in GEMLITE_BLOCK_SCALED:  # --full only, as gemlite's other autotuned variants
        ms.append(Method(f"gemlite-{kind}", "peer", _gemlite_factory(kind), lambda d: _gemlite_check(d) or
                         _need_sm(d, 8, 9), f"gemlite {kind}", dynamic_act=kind.endswith("dynamic"), default=False))
    for kind, desc, dyn in (("int8wo", "Int8WeightOnlyConfig", False),
                            ("int4wo", "Int4WeightOnlyConfig tile_packed_to_4d, group 128", False),
                            ("fp8dq", "Float8DynamicActivationFloat8WeightConfig PerRow", True),
                            ("codebook4", "prototype CodebookWeightOnlyConfig uint4 (dequantize, F.linear)", False)):
        ms.append(Method(f"torchao-{kind}", "peer", _torchao_factory(kind), _torchao_check(kind),
                         f"torchao {desc} + torch.compile", dynamic_act=dyn))
    for kind, desc in TORCHAO_BLOCK_SCALED.items():
        ms.append(Method(f"torchao-{kind}", "peer", _torchao_factory(kind), _torchao_check(kind),
                         f"torchao {desc} + torch.compile", dynamic_act=kind != "nvfp4wo"))
    return {m.name: m for m in ms}


REGISTRY: dict[str, Method] = _build_registry()


def select_methods(names=None, device="cpu", registry: dict[str, Method] | None = None,
                   include_all: bool = False, log: Callable[[str], None] = print):
    """The usable methods among `names` (default: the registry's defaults), in registry order.

    Returns (methods, skipped) where skipped is [(name, reason)]; each skip is logged."""
    reg = REGISTRY if registry is None else registry
    if names is None:
        names = [n for n, m in reg.items() if include_all or m.default]
    unknown = [n for n in names if n not in reg]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; known: {list(reg)}")
    chosen, skipped = [], []
    for name in reg:
        if name not in names:
            continue
        m = reg[name]
        try:
            reason = m.check(torch.device(device))
        except Exception as e:  # noqa: BLE001 - a broken check is a skip, not a crash
            reason = f"check failed: {type(e).__name__}: {e}"
        if reason:
            skipped.append((name, reason))
            log(f"skip {name}: {reason}")
        else:
            chosen.append(m)
    return chosen, skipped
