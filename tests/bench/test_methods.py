"""The method registry: names, clean skips for missing packages, and the CPU-runnable methods."""
import pytest
import torch
import torch.nn.functional as F

from tqk.bench import methods as M
from tqk.bench.report import sqnr_db

CPU = torch.device("cpu")


def _wx(N=64, K=128, m=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(N, K, generator=g) * K**-0.5).bfloat16()
    x = torch.randn(m, K, generator=g).bfloat16()
    return w, x


def test_registry_names():
    names = set(M.REGISTRY)
    assert {"bf16", "tqk-int4", "tqk-int4-hqq", "tqk-int8", "tqk-fp8", "torch-tinygemm-int4",
            "torch-scaled_mm-fp8", "torch-int_mm-int8", "gemlite-A16W4", "gemlite-A16W8_INT8",
            "gemlite-A16W8_FP8", "gemlite-A8W8_INT8", "gemlite-A8W8_FP8", "torchao-int8wo",
            "torchao-int4wo", "torchao-fp8dq", "tqk-mxfp4", "tqk-mxfp6", "tqk-mxfp8", "tqk-nvfp4",
            "gemlite-A16W4_MXFP", "gemlite-A16W8_MXFP", "gemlite-A16W4_NVFP", "gemlite-A8W8_MXFP_dynamic",
            "torchao-nvfp4wo", "torchao-mxfp8-emulated", "torchao-mxfp4-emulated", "tqk-mxfp8dq", "tqk-mxfp4dq",
            "tqk-nvfp4dq"} <= names
    assert M.REGISTRY["bf16"].family == "baseline"
    assert all(m.family == "tqk" for n, m in M.REGISTRY.items() if n.startswith("tqk"))
    assert M.REGISTRY["torch-scaled_mm-fp8"].dynamic_act and M.REGISTRY["gemlite-A8W8_FP8"].dynamic_act
    assert all(M.REGISTRY[n].dynamic_act for n in ("tqk-mxfp8dq", "tqk-mxfp4dq", "tqk-nvfp4dq"))


def test_missing_package_skips_cleanly():
    logged = []
    fake = {
        "bf16": M.REGISTRY["bf16"],
        "ghost": M.Method("ghost", "peer", lambda w, b, o: None,
                          check=lambda d: M._missing("surely_not_a_real_module_xyz")),
        "broken": M.Method("broken", "peer", lambda w, b, o: None, check=lambda d: 1 / 0),
    }
    chosen, skipped = M.select_methods(None, CPU, registry=fake, log=logged.append)
    assert [m.name for m in chosen] == ["bf16"]
    reasons = dict(skipped)
    assert "not importable" in reasons["ghost"] and "ZeroDivisionError" in reasons["broken"]
    assert len(logged) == 2
    with pytest.raises(ValueError, match="unknown methods"):
        M.select_methods(["nope"], CPU, registry=fake)


def test_gpu_only_peers_skip_on_cpu():
    chosen, skipped = M.select_methods(None, CPU, log=lambda s: None, include_all=True)
    reasons = dict(skipped)
    for name in ("gemlite-A16W4", "gemlite-A8W8_FP8", "torchao-int4wo", "torchao-fp8dq", "gemlite-A16W4_MXFP",
                 "gemlite-A8W8_MXFP_dynamic", "torchao-nvfp4wo", "torchao-mxfp8-emulated"):
        assert name in reasons and reasons[name]
    assert "bf16" in [m.name for m in chosen]


def test_default_methods_leave_the_slow_compilers_to_full():
    """The default sweep must fit 10 minutes: the peers that compile or autotune for minutes per
    shape are only in --full."""
    defaults = {n for n, m in M.REGISTRY.items() if m.default}
    assert {"bf16", "tqk-int4", "tqk-int8", "tqk-fp8", "torch-tinygemm-int4", "gemlite-A16W4"} <= defaults
    assert not {"torch-int_mm-int8", "gemlite-A8W8_FP8", "gemlite-A8W8_INT8"} & defaults


def test_tensor_bytes():
    t = torch.zeros(3, 5, dtype=torch.bfloat16)
    assert M.tensor_bytes(t) == 30 and M.tensor_bytes(None) == 0

    class Packed:
        packed_nbytes = 123
    assert M.tensor_bytes(Packed()) == 123
    lin = torch.nn.Linear(8, 4, bias=True)
    assert M.module_bytes(lin) == (32 + 4) * 4
    assert M.module_bytes(lin, skip=lambda n: n == "bias") == 32 * 4


@pytest.mark.parametrize("name,min_sqnr", [("bf16", 200.0), ("torch-tinygemm-int4", 15.0),
                                           ("torch-scaled_mm-fp8", 20.0), ("torch-int_mm-int8", 30.0)])
def test_cpu_peers_compute_the_linear(name, min_sqnr):
    w, x = _wx()
    b = torch.randn(64).bfloat16()
    ref = F.linear(x, w, b)
    prep = M.REGISTRY[name].factory(w, b, M.Options(compile=False))
    out = prep.fn(x)
    assert out.shape == ref.shape and out.dtype == torch.bfloat16
    assert sqnr_db(ref, out) > min_sqnr
    assert 0 < prep.weight_bytes <= 64 * 128 * 2
    if name == "torch-int_mm-int8":
        assert prep.fn(x[:1]).shape == (1, 64)  # M <= 16 is padded inside


def test_quant_helpers_roundtrip():
    w, _ = _wx()
    q, s, mn = M.quant_int4_asym(w, 32)
    assert q.min() >= 0 and q.max() <= 15 and s.shape == (64, 4)
    deq = (q.view(64, 4, 32).float() * s[..., None] + mn[..., None]).view(64, 128)
    assert sqnr_db(w, deq) > 15
    with pytest.raises(M.Unsupported):
        M.quant_int4_asym(w[:, :100], 32)
    q8, s8 = M.quant_int8_rowwise(w)
    assert sqnr_db(w, q8.float() * s8) > 35
    qf, sf = M.quant_fp8_rowwise(w)
    assert sqnr_db(w, qf.float() * sf) > 25


def test_tinygemm_rejects_bad_shape():
    w = torch.randn(60, 128).bfloat16()
    with pytest.raises(M.Unsupported):
        M.REGISTRY["torch-tinygemm-int4"].factory(w, None, M.Options())


def test_compiled_wrapper_falls_back_to_eager():
    c = M._Compiled(lambda a: a + 1, enabled=False)
    assert c(torch.ones(1)).item() == 2 and c.error == ""

    class Boom:
        def __call__(self, *a):
            raise RuntimeError("no compiler")
    c.compiled = Boom()
    assert c(torch.ones(1)).item() == 2 and "no compiler" in c.error and c.compiled is None
    prep = M.Prepared(lambda x: x, 1, note="n", compiled=c)
    assert "compile failed" in prep.status()


def test_tqk_methods_through_interpreter():
    reason = M._tqk_check(CPU)
    if reason:
        pytest.skip(reason)
    w, x = _wx(64, 128, 2)
    ref = F.linear(x, w)
    for name, floor in (("tqk-int4", 15.0), ("tqk-int8", 30.0), ("tqk-fp8", 20.0), ("tqk-mxfp4", 15.0),
                        ("tqk-mxfp8", 25.0), ("tqk-nvfp4", 15.0), ("tqk-mxfp8dq", 25.0), ("tqk-mxfp4dq", 12.0),
                        ("tqk-nvfp4dq", 14.0)):
        prep = M.REGISTRY[name].factory(w, None, M.Options())
        out = prep.fn(x)
        assert out.shape == ref.shape
        assert sqnr_db(ref, out) > floor, name
        assert 0 < prep.weight_bytes < 64 * 128 * 2, name


def test_compiled_is_static_and_one_per_method_and_shape(monkeypatch):
    """The act-quant methods compile with static shapes (dynamic=False, as a compiled model runs), once
    per (method, N, K), each its own copy of the function: dynamo caches and counts recompiles per code
    object, so sharing one function across shapes hit recompile_limit and fell back to eager."""
    seen = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: seen.append((fn, kw)) or fn)
    monkeypatch.setattr(M, "_COMPILED", {})
    a = M._compiled("m", (64, 128), M._linear_core, True)
    assert M._compiled("m", (64, 128), M._linear_core, True) is a
    b = M._compiled("m", (128, 64), M._linear_core, True)
    c = M._compiled("other", (64, 128), M._linear_core, True)
    assert len({id(a), id(b), id(c)}) == 3 and len(seen) == 3
    assert all(kw == {"dynamic": False} for _, kw in seen)
    codes = [fn.__code__ for fn, _ in seen]
    assert len(set(map(id, codes))) == 3 and M._linear_core.__code__ not in codes
    w, x = _wx()
    assert torch.equal(a(x, w, None), F.linear(x, w))  # the copy computes what the function does


def test_act_quant_variants_force_the_path(monkeypatch):
    """-prologue / -codes: the same config with the activation's path forced (not in the default sweep),
    each its own compiled function (the layout, act_quant included, is in the key)."""
    reason = M._tqk_check(CPU)
    if reason:
        pytest.skip(reason)
    import tqk.ops

    launched = []
    launch = tqk.ops.launch_scaled_mm
    monkeypatch.setattr(tqk.ops, "launch_scaled_mm", lambda *a, **kw: launched.append(a[11]) or launch(*a, **kw))
    w, x = _wx(64, 128, 3)
    ref = F.linear(x, w)
    outs = {}
    for suffix, act_quant in M.ACT_QUANT_VARIANTS.items():
        method = M.REGISTRY["tqk-int8dq" + suffix]
        assert method.dynamic_act and not method.default and method.family == "tqk"
        prep = method.factory(w, None, M.Options())
        outs[act_quant] = prep.fn(x)
        assert launched.pop() == (act_quant == "prologue")
        assert sqnr_db(ref, outs[act_quant]) > 30
    assert torch.equal(outs["prologue"], outs["codes"])  # the same codes either way
