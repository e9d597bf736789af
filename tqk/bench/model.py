"""Whole-model benchmark: a Llama-3-8B-architecture decoder with random weights.

No download: the weights are drawn from a seeded generator, so every config quantizes the same
model. The decoder has fused qkv and gate_up projections (the shapes of the kernel sweep), RoPE,
GQA, RMSNorm, SwiGLU and a static KV cache; decoding is greedy and runs one token per step
through torch.compile(mode="reduce-overhead") (CUDA graphs).

Per config it reports decode tokens/s for each batch size, prefill time, peak memory, weight
bytes, and teacher-forced next-token agreement and logit SQNR against bf16 on a fixed random
prompt. Prefill always starts from an empty cache (position 0).

The run is bounded in time: by default each config runs in its own process (run_child), killed
with its process group at min(per-config cap, time left of the total budget); the partial results
it reported after each step are kept. The bf16 reference logits pass between those processes
through a file. Results are rewritten after every config.
"""
from __future__ import annotations

import argparse
import csv
import functools
import gc
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .methods import Options, module_bytes, tqk_configs


# ----------------------------------------------------------------------------- the decoder
@dataclass
class ModelArgs:
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8
    ffn_dim: int = 14336
    vocab: int = 128256
    rope_theta: float = 500000.0
    norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @classmethod
    def llama3_8b(cls, **overrides) -> "ModelArgs":
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> "ModelArgs":
        base = dict(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=256, vocab=512)
        base.update(overrides)
        return cls(**base)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class KVCache(nn.Module):
    def __init__(self, batch: int, n_kv_heads: int, max_seq: int, head_dim: int, dtype, device):
        super().__init__()
        shape = (batch, n_kv_heads, max_seq, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos, k, v):
        self.k.index_copy_(2, input_pos, k)
        self.v.index_copy_(2, input_pos, v)
        return self.k, self.v


def _rope(x, cos, sin):
    # x [B, H, S, D]; rotate the two halves (the Llama-3 HF layout)
    x1, x2 = x.chunk(2, dim=-1)
    rot = torch.cat((-x2, x1), dim=-1)
    return (x.float() * cos + rot.float() * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.a = a
        self.wqkv = nn.Linear(a.dim, (a.n_heads + 2 * a.n_kv_heads) * a.head_dim, bias=False)
        self.wo = nn.Linear(a.n_heads * a.head_dim, a.dim, bias=False)
        self.kv_cache: Optional[KVCache] = None

    def forward(self, x, cos, sin, mask, input_pos):
        a = self.a
        B, S, _ = x.shape
        hd, H, Hkv = a.head_dim, a.n_heads, a.n_kv_heads
        q, k, v = self.wqkv(x).split([H * hd, Hkv * hd, Hkv * hd], dim=-1)
        q = q.view(B, S, H, hd).transpose(1, 2)
        k = k.view(B, S, Hkv, hd).transpose(1, 2)
        v = v.view(B, S, Hkv, hd).transpose(1, 2)
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        if self.kv_cache is not None:
            kc, vc = self.kv_cache.update(input_pos, k, v)
        if S > 1 or self.kv_cache is None:
            # prefill from position 0: causal attention over the new keys only
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        else:
            # decode: grouped attention over the whole static cache, masked to the valid prefix
            G = H // Hkv
            qg = q.reshape(B, Hkv, G * S, hd)
            scores = (qg.float() @ kc.float().transpose(-1, -2)) * (hd ** -0.5)
            scores = scores.masked_fill(~mask, float("-inf"))
            y = (scores.softmax(-1).to(vc.dtype) @ vc).reshape(B, H, S, hd)
        y = y.transpose(1, 2).reshape(B, S, H * hd)
        return self.wo(y)


class FeedForward(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.w_gate_up = nn.Linear(a.dim, 2 * a.ffn_dim, bias=False)
        self.w_down = nn.Linear(a.ffn_dim, a.dim, bias=False)

    def forward(self, x):
        gate, up = self.w_gate_up(x).chunk(2, dim=-1)
        return self.w_down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.attn_norm = RMSNorm(a.dim, a.norm_eps)
        self.attn = Attention(a)
        self.ffn_norm = RMSNorm(a.dim, a.norm_eps)
        self.ffn = FeedForward(a)

    def forward(self, x, cos, sin, mask, input_pos):
        h = x + self.attn(self.attn_norm(x), cos, sin, mask, input_pos)
        return h + self.ffn(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, a: ModelArgs):
        super().__init__()
        self.a = a
        self.tok_embeddings = nn.Embedding(a.vocab, a.dim)
        self.layers = nn.ModuleList(Block(a) for _ in range(a.n_layers))
        self.norm = RMSNorm(a.dim, a.norm_eps)
        self.output = nn.Linear(a.dim, a.vocab, bias=False)
        self.max_seq = 0

    def setup_caches(self, batch: int, max_seq: int):
        a = self.a
        dev, dt = self.tok_embeddings.weight.device, self.tok_embeddings.weight.dtype
        for layer in self.layers:
            layer.attn.kv_cache = None
        for layer in self.layers:
            layer.attn.kv_cache = KVCache(batch, a.n_kv_heads, max_seq, a.head_dim, dt, dev)
        inv = 1.0 / (a.rope_theta ** (torch.arange(0, a.head_dim, 2, device=dev, dtype=torch.float32) / a.head_dim))
        ang = torch.outer(torch.arange(max_seq, device=dev, dtype=torch.float32), inv)
        ang = torch.cat([ang, ang], dim=-1)
        self.register_buffer("rope_cos", ang.cos(), persistent=False)
        self.register_buffer("rope_sin", ang.sin(), persistent=False)
        self.register_buffer("causal_mask", torch.tril(torch.ones(max_seq, max_seq, dtype=torch.bool, device=dev)),
                             persistent=False)
        self.max_seq = max_seq

    def forward(self, idx, input_pos):
        """idx [B, S] token ids at positions input_pos [S] -> logits [B, S, vocab]."""
        if self.max_seq == 0:
            raise RuntimeError("call setup_caches(batch, max_seq) first")
        cos = self.rope_cos[input_pos][None, None]
        sin = self.rope_sin[input_pos][None, None]
        mask = self.causal_mask[input_pos][None, None]
        x = self.tok_embeddings(idx)
        for layer in self.layers:
            x = layer(x, cos, sin, mask, input_pos)
        return self.output(self.norm(x))


CACHE_BUFFERS = ("kv_cache", "rope_cos", "rope_sin", "causal_mask")


def build_model(a: ModelArgs, device="cpu", dtype=torch.bfloat16, seed: int = 0) -> Transformer:
    """The decoder with seeded random weights (same seed, same device -> same weights)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build directly in bf16: no fp32 copy of an 8B-sized model
    try:
        with torch.device(device):
            model = Transformer(a)
    finally:
        torch.set_default_dtype(old)
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            elif "tok_embeddings" in name:
                p.normal_(0.0, 1.0, generator=g)
            else:
                p.normal_(0.0, p.shape[-1] ** -0.5, generator=g)
    return model.eval()


def weight_bytes(model: nn.Module) -> int:
    return module_bytes(model, skip=lambda name: any(s in name for s in CACHE_BUFFERS))


# ----------------------------------------------------------------------------- decoding
def prefill(model, tokens):
    """tokens [B, S] at positions 0..S-1 -> (next token [B, 1], logits [B, S, V])."""
    pos = torch.arange(tokens.shape[1], device=tokens.device)
    logits = model(tokens, pos)
    return logits[:, -1].argmax(-1, keepdim=True), logits


def logits_step(model, cur, pos: int):
    """Logits [B, V] for one token per sequence at position pos (reads and extends the cache)."""
    return model(cur, torch.tensor([pos], device=cur.device))[:, -1]


def decode_one(model, cur, input_pos):
    logits = model(cur, input_pos)
    return logits[:, -1].argmax(-1, keepdim=True)


def generate(model, prompt, n_new: int, step: Optional[Callable] = None):
    """Greedy decoding of n_new tokens after prompt [B, S]; returns [B, n_new]."""
    step = step or decode_one
    B, S = prompt.shape
    tok, _ = prefill(model, prompt)
    out = [tok]
    for i in range(n_new - 1):
        pos = torch.tensor([S + i], device=prompt.device)
        tok = step(model, tok, pos).clone()
        out.append(tok)
    return torch.cat(out, dim=1)


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_decode(model, batch: int, prompt_len: int, n_warm: int, n_gen: int, step, device, seed: int):
    """tokens/s of greedy decoding at this batch size (after n_warm steps of warm-up/compile)."""
    model.setup_caches(batch, prompt_len + n_warm + n_gen)
    g = torch.Generator(device="cpu").manual_seed(seed + 7)
    prompt = torch.randint(0, model.a.vocab, (batch, prompt_len), generator=g).to(device)
    tok, _ = prefill(model, prompt)
    pos = prompt_len
    for _ in range(n_warm):
        tok = step(model, tok, torch.tensor([pos], device=device)).clone()
        pos += 1
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n_gen):
        tok = step(model, tok, torch.tensor([pos], device=device)).clone()
        pos += 1
    _sync(device)
    dt = time.perf_counter() - t0
    return batch * n_gen / dt


def time_prefill(model, seq_len: int, device, seed: int, reps: int = 3) -> float:
    model.setup_caches(1, seq_len)
    g = torch.Generator(device="cpu").manual_seed(seed + 11)
    tokens = torch.randint(0, model.a.vocab, (1, seq_len), generator=g).to(device)
    prefill(model, tokens)  # warm-up
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        prefill(model, tokens)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def accuracy_logits(model, prompt) -> torch.Tensor:
    model.setup_caches(prompt.shape[0], prompt.shape[1])
    _, logits = prefill(model, prompt)
    return logits.float()


def agreement_and_sqnr(ref_logits: torch.Tensor, logits: torch.Tensor) -> tuple[float, float]:
    """Teacher-forced top-1 agreement (fraction of positions) and logit SQNR in dB."""
    from .report import sqnr_db
    agree = (ref_logits.argmax(-1) == logits.argmax(-1)).float().mean().item()
    return agree, sqnr_db(ref_logits, logits)


# ----------------------------------------------------------------------------- configs
def _linear_filter(skip_lm_head: bool):
    def keep(module, fqn):
        return isinstance(module, nn.Linear) and not (skip_lm_head and fqn == "output")
    return keep


class _FnLinear(nn.Module):
    """A prepared (method, weight) pair standing where an nn.Linear was."""

    def __init__(self, prep, in_features: int, out_features: int):
        super().__init__()
        self.fn = prep.fn  # a Module (gemlite) registers as a child, so its buffers count in weight_bytes
        self.in_features, self.out_features = in_features, out_features

    def forward(self, x):
        y = self.fn(x.reshape(-1, self.in_features))
        return y.reshape(*x.shape[:-1], self.out_features)


def _swap_linears(model, factory, keep, opts):
    for fqn, mod in list(model.named_modules()):
        if not keep(mod, fqn):
            continue
        prep = factory(mod.weight.data, mod.bias, opts)
        parent_name, _, child = fqn.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _FnLinear(prep, mod.in_features, mod.out_features))


def config_names() -> list[str]:
    return ["bf16", *tqk_configs().keys(), "torchao-int4", "gemlite-int4"]


DEFAULT_CONFIGS = ("bf16", "tqk-int4", "tqk-int8", "tqk-fp8", "torchao-int4", "gemlite-int4")


def apply_config(model, name: str, device, skip_lm_head: bool = False) -> str:
    """Quantize model in place with config `name`; returns a note. Raises on failure."""
    keep = _linear_filter(skip_lm_head)
    if name == "bf16":
        return ""
    if name.startswith("tqk-"):
        import tqk
        cfgs = tqk_configs()
        if name not in cfgs:
            raise RuntimeError(f"tqk config {name} unavailable (tqk API missing?)")
        tqk.quantize_(model, cfgs[name], filter_fn=keep)
        return ""
    if name == "torchao-int4":
        if torch.device(device).type != "cuda":
            raise RuntimeError("torchao int4 (tinygemm) needs a CUDA GPU")
        from torchao.quantization import Int4WeightOnlyConfig, quantize_
        quantize_(model, Int4WeightOnlyConfig(group_size=128, int4_packing_format="tile_packed_to_4d"),
                  filter_fn=keep)
        return "tile_packed_to_4d g128"
    if name == "gemlite-int4":
        if torch.device(device).type != "cuda":
            raise RuntimeError("gemlite needs a CUDA GPU")
        import gemlite  # noqa: F401
        from .methods import REGISTRY
        _swap_linears(model, REGISTRY["gemlite-A16W4"].factory, keep, Options(compile=False))
        return "A16W4 g128"
    raise ValueError(f"unknown config {name!r}; known: {config_names()}")


# ----------------------------------------------------------------------------- the benchmark
@dataclass
class ConfigResult:
    config: str
    tokens_per_s: dict = field(default_factory=dict)  # batch -> tokens/s
    prefill_ms: float = float("nan")
    peak_mem_gib: float = float("nan")
    weight_mib: float = float("nan")
    agreement: float = float("nan")
    logit_sqnr_db: float = float("nan")
    compiled: str = ""
    note: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["tokens_per_s"] = [[b, v] for b, v in self.tokens_per_s.items()]  # JSON keys would turn into strings
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ConfigResult":
        d = dict(d)
        d["tokens_per_s"] = {int(b): float(v) for b, v in d.get("tokens_per_s", [])}
        return cls(**d)


def _join_note(*parts) -> str:
    return "; ".join(p for p in parts if p)


def _error_note(e: BaseException) -> str:
    return f"error: {type(e).__name__}: {str(e).splitlines()[0][:150] if str(e) else ''}"


# A test-only hook: in a child process (never in-process), TQK_BENCH_MODEL_TEST_HANG=<config>:decode makes
# that config's child sleep before its first decode batch, as a compile that never returns would.
_HANG_ENV = "TQK_BENCH_MODEL_TEST_HANG"
_IN_CHILD = False


def _test_hang(name: str, stage: str, log):
    if _IN_CHILD and os.environ.get(_HANG_ENV) == f"{name}:{stage}":
        log(f"    ({_HANG_ENV}: {name} hangs at {stage})")
        time.sleep(3600)


def run_config(name: str, a: ModelArgs, *, device, seed: int, batch_sizes, prompt_len: int, n_warm: int,
               n_gen: int, prefill_len: int, acc_prompt, ref_logits, compile_mode: str,
               skip_lm_head: bool = False, log=print, res: Optional[ConfigResult] = None,
               report: Optional[Callable] = None, on_logits: Optional[Callable] = None,
               deadline: Optional[float] = None):
    """Quantize, check accuracy, time prefill and decode for one config; returns (result, accuracy logits).

    res is filled in place (pass one to keep the partial results when this raises); report(res) runs after
    each measured step (accuracy, prefill, each batch size); on_logits(logits) as soon as the accuracy logits
    exist. deadline (a time.time() value): a batch size is skipped, with the rest, when the time left is
    gone or shorter than the previous batch size took.
    """
    res = res if res is not None else ConfigResult(name)
    on_cuda = torch.device(device).type == "cuda"

    def _report():
        if on_cuda:
            res.peak_mem_gib = torch.cuda.max_memory_allocated(device) / 2**30
        if report is not None:
            report(res)

    model = build_model(a, device, seed=seed)
    res.note = apply_config(model, name, device, skip_lm_head)
    gc.collect()
    if on_cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    res.weight_mib = weight_bytes(model) / 2**20
    step = decode_one
    res.compiled = "eager"
    if compile_mode != "none":  # lazy: compiles at the first decode step
        step = torch.compile(decode_one, mode=compile_mode, fullgraph=True, dynamic=False)
        res.compiled = compile_mode
    with torch.no_grad():  # not inference_mode: the gpt-fast pattern that compile + CUDA graphs expect
        logits = accuracy_logits(model, acc_prompt)
        if on_logits is not None:
            on_logits(logits)
        if name == "bf16":
            res.agreement, res.logit_sqnr_db = 1.0, float("inf")
        elif ref_logits is not None:
            res.agreement, res.logit_sqnr_db = agreement_and_sqnr(ref_logits, logits)
        _report()
        if prefill_len:
            res.prefill_ms = time_prefill(model, prefill_len, device, seed) * 1e3
            _report()
        skipped, last_s = [], None
        for bs in batch_sizes:
            left = None if deadline is None else deadline - time.time()
            if skipped or (left is not None and (left <= 0 or (last_s is not None and left < last_s))):
                if not skipped:
                    log(f"    batch {bs:3d}: skipped with the rest, {max(left, 0):.0f}s left"
                        + (f" < {last_s:.0f}s the last batch size took" if last_s is not None else ""))
                skipped.append(bs)
                continue
            _test_hang(name, "decode", log)
            t0 = time.perf_counter()
            try:
                res.tokens_per_s[bs] = time_decode(model, bs, prompt_len, n_warm, n_gen, step, device, seed)
            except Exception as e:  # noqa: BLE001 - a compile failure falls back to eager
                if step is decode_one:
                    raise
                log(f"    compile failed at batch {bs} ({type(e).__name__}: {str(e)[:200]}); eager instead")
                res.compiled = f"eager (compile failed: {type(e).__name__})"
                step = decode_one
                torch._dynamo.reset()
                res.tokens_per_s[bs] = time_decode(model, bs, prompt_len, n_warm, n_gen, step, device, seed)
            last_s = time.perf_counter() - t0
            log(f"    batch {bs:3d}: {res.tokens_per_s[bs]:9.1f} tok/s ({last_s:.0f}s incl. compile)")
            _report()
        if skipped:
            res.note = _join_note(res.note, f"skipped batch {','.join(map(str, skipped))}: time budget")
    if on_cuda:
        torch.cuda.synchronize()
    _report()
    del model
    torch._dynamo.reset()
    gc.collect()
    if on_cuda:
        torch.cuda.empty_cache()
    return res, logits


@dataclass
class RunParams:
    """Everything one config's measurement needs (JSON-able: it travels to a child process)."""
    a: ModelArgs
    device: str
    seed: int = 0
    batch_sizes: tuple = (1, 16)
    prompt_len: int = 64
    n_warm: int = 8
    n_gen: int = 64
    prefill_len: int = 2048
    acc_len: int = 128
    compile_mode: str = "reduce-overhead"
    skip_lm_head: bool = False

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> "RunParams":
        d = dict(d)
        d["a"] = ModelArgs(**d["a"])
        d["batch_sizes"] = tuple(d["batch_sizes"])
        return cls(**d)


def _acc_prompt(p: RunParams):
    g = torch.Generator(device="cpu").manual_seed(p.seed + 3)
    return torch.randint(0, p.a.vocab, (1, p.acc_len), generator=g).to(p.device)


def measure_config(name: str, p: RunParams, *, get_ref: Callable, put_ref: Callable, deadline=None,
                   log=print, report: Optional[Callable] = None) -> ConfigResult:
    """One config, failures included (as an error note beside the partial results). The bf16 reference
    logits come from get_ref(); when it has none (no bf16 config, or bf16 failed before its accuracy
    check), they are computed here from a bf16 copy and handed to put_ref, as bf16's own logits are."""
    res = ConfigResult(name)
    try:
        acc_prompt = _acc_prompt(p)
        ref = None
        if name != "bf16":
            ref = get_ref()
            if ref is None:
                log("    reference logits: from a bf16 copy built here (no bf16 result to reuse)")
                with torch.inference_mode():
                    ref = accuracy_logits(build_model(p.a, p.device, seed=p.seed), acc_prompt)
                put_ref(ref)
        run_config(name, p.a, device=p.device, seed=p.seed, batch_sizes=p.batch_sizes, prompt_len=p.prompt_len,
                   n_warm=p.n_warm, n_gen=p.n_gen, prefill_len=p.prefill_len, acc_prompt=acc_prompt,
                   ref_logits=ref, compile_mode=p.compile_mode, skip_lm_head=p.skip_lm_head, log=log, res=res,
                   report=report, on_logits=put_ref if name == "bf16" else None, deadline=deadline)
    except Exception as e:  # noqa: BLE001 - one config failing must not end the run
        res.note = _join_note(res.note, _error_note(e))
        log(f"    {_error_note(e)}")
        torch._dynamo.reset()
        gc.collect()
        if torch.device(p.device).type == "cuda":
            torch.cuda.empty_cache()
    return res


PEER_PREFIXES = ("torchao-", "gemlite-")


def order_configs(configs) -> list[str]:
    """bf16 (the reference) first, then tqk's configs, then anything else, then the peers (the slowest to
    compile, so the ones a time budget cuts); the given order within each group; duplicates dropped."""
    def rank(n):
        return 0 if n == "bf16" else 1 if n.startswith("tqk-") else 3 if n.startswith(PEER_PREFIXES) else 2
    return sorted(dict.fromkeys(configs), key=rank)


# ----------------------------------------------------------------------------- child processes
def _fname(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _write_json(path: str, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(obj, fh)
    os.replace(tmp, path)  # readers never see half a file, even when the writer is killed


def _read_json(path: str):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the child leads its own group: compile workers die with it
    except (ProcessLookupError, PermissionError):
        pass


def _forward(stream, log):
    try:
        for line in iter(stream.readline, ""):
            log(line.rstrip("\n"))
    except (OSError, ValueError):
        pass


def run_child(name: str, p: RunParams, work_dir: str, timeout: Optional[float], log=print) -> ConfigResult:
    """Measure config `name` in a fresh process (`python -m tqk.bench model --_child NAME --_child-dir DIR`),
    killed with its process group after `timeout` seconds. Returns what the child last reported: its
    final result, or its partial one with the note "timed out after N s" or "error: child exited ...".
    The bf16 reference logits pass between children through DIR/ref_logits.pt."""
    spec_path = os.path.join(work_dir, _fname(name) + ".spec.json")
    res_path = os.path.join(work_dir, _fname(name) + ".result.json")
    if os.path.exists(res_path):
        os.remove(res_path)
    _write_json(spec_path, {"config": name, "params": p.to_json(),
                            "deadline": None if timeout is None else time.time() + timeout})
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(x for x in (root, env.get("PYTHONPATH")) if x)  # this tqk, not another
    cmd = [sys.executable, "-u", "-m", "tqk.bench", "model", "--_child", name, "--_child-dir", work_dir]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", bufsize=1, env=env, start_new_session=True)
    reader = threading.Thread(target=_forward, args=(proc.stdout, log), daemon=True)
    reader.start()
    timed_out = False
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        rc = proc.wait()
    finally:  # also on KeyboardInterrupt; and any stray grandchild goes with the group
        _kill_group(proc)
        if proc.poll() is None:
            proc.wait()
        reader.join(timeout=5)
        if not reader.is_alive():  # else a stray process still holds the pipe: leave it to the daemon thread
            proc.stdout.close()
    data = _read_json(res_path)
    res = ConfigResult.from_json(data["result"]) if data else ConfigResult(name)
    if timed_out:
        res.note = _join_note(res.note, f"timed out after {timeout:.0f} s")
        log(f"    timed out after {timeout:.0f}s: killed")
    elif not data or data.get("status") != "done":
        res.note = _join_note(res.note, f"error: child exited with code {rc}" + ("" if data else ", no result"))
        log(f"    child exited with code {rc}")
    return res


def child_main(name: str, work_dir: str) -> int:
    """The child's side of run_child."""
    global _IN_CHILD
    _IN_CHILD = True
    spec = _read_json(os.path.join(work_dir, _fname(name) + ".spec.json"))
    if spec is None:
        print(f"no spec for {name} in {work_dir}", file=sys.stderr)
        return 2
    p = RunParams.from_json(spec["params"])
    res_path = os.path.join(work_dir, _fname(name) + ".result.json")
    ref_path = os.path.join(work_dir, "ref_logits.pt")

    def get_ref():
        return torch.load(ref_path, map_location=p.device) if os.path.exists(ref_path) else None

    def put_ref(t):
        tmp = ref_path + f".{os.getpid()}.tmp"
        torch.save(t.detach().float().cpu(), tmp)
        os.replace(tmp, ref_path)

    def report(r, status="partial"):
        _write_json(res_path, {"status": status, "result": r.to_json()})

    log = functools.partial(print, flush=True)
    res = measure_config(name, p, get_ref=get_ref, put_ref=put_ref, deadline=spec.get("deadline"), log=log,
                         report=report)
    report(res, "done")
    return 0


# ----------------------------------------------------------------------------- the run
def run(a: ModelArgs, configs, *, device, seed=0, batch_sizes=(1, 16), prompt_len=64, n_warm=8, n_gen=64,
        prefill_len=2048, acc_len=128, compile_mode="reduce-overhead", skip_lm_head=False,
        time_budget_s: Optional[float] = None, config_timeout_s: Optional[float] = None, isolate: bool = False,
        on_result: Optional[Callable] = None, work_dir: Optional[str] = None, log=print) -> list[ConfigResult]:
    """Every config in order_configs order; on_result(results so far) after each.

    Each config gets min(config_timeout_s, time left of time_budget_s); a config with under a second left
    is skipped. isolate: each config runs in its own process, killed at its timeout (the partial results
    it reported are kept); otherwise in this process, where the timeout only skips batch sizes. work_dir
    holds the children's files (default: a temporary directory, removed at the end).
    """
    configs = order_configs(configs)
    p = RunParams(a, str(device), seed, tuple(batch_sizes), prompt_len, n_warm, n_gen, prefill_len, acc_len,
                  compile_mode, skip_lm_head)
    state = {"ref": None}
    tmp = None
    if isolate and work_dir is None:
        work_dir = tmp = tempfile.mkdtemp(prefix="tqk-bench-model-")
    if isolate:
        os.makedirs(work_dir, exist_ok=True)
        stale = os.path.join(work_dir, "ref_logits.pt")
        if os.path.exists(stale):
            os.remove(stale)
    results = []
    t_start = time.perf_counter()
    try:
        for name in configs:
            elapsed = time.perf_counter() - t_start
            left = None if time_budget_s is None else time_budget_s - elapsed
            if left is not None and left < 1:
                res = ConfigResult(name, note="skipped: time budget")
                log(f"{name}: skipped (time budget)")
            else:
                limits = [x for x in (config_timeout_s, left) if x is not None]
                timeout = min(limits) if limits else None
                log(f"[{elapsed:5.0f}s] {name}" + (f" (timeout {timeout:.0f}s)" if timeout is not None else ""))
                t0 = time.perf_counter()
                if isolate:
                    res = run_child(name, p, work_dir, timeout, log=log)
                else:
                    res = measure_config(name, p, get_ref=lambda: state["ref"],
                                         put_ref=lambda t: state.__setitem__("ref", t),
                                         deadline=None if timeout is None else time.time() + timeout, log=log)
                log(f"    {name} took {time.perf_counter() - t0:.0f}s")
            results.append(res)
            if on_result is not None:
                on_result(list(results))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return results


def format_results(results, batch_sizes, prefill_len: int) -> str:
    def f(v, spec):
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else (
            "inf" if v == float("inf") else format(v, spec))
    cw = max([len("config")] + [len(r.config) for r in results])
    head = (f"{'config'.ljust(cw)} " + " ".join(f"{'tok/s b' + str(b):>11}" for b in batch_sizes)
            + f" {'prefill' + str(prefill_len) + ' ms':>16} {'peak GiB':>9} {'weights MiB':>11} "
              f"{'agree':>6} {'SQNR dB':>8}  mode / note")
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(
            f"{r.config.ljust(cw)} " + " ".join(f"{f(r.tokens_per_s.get(b), '.1f'):>11}" for b in batch_sizes)
            + f" {f(r.prefill_ms, '.1f'):>16} {f(r.peak_mem_gib, '.2f'):>9} {f(r.weight_mib, '.1f'):>11} "
              f"{f(r.agreement, '.3f'):>6} {f(r.logit_sqnr_db, '.1f'):>8}  "
            + "; ".join(s for s in (r.compiled, r.note) if s))
    return "\n".join(lines)


def write_results(results, path_csv: str, batch_sizes):
    os.makedirs(os.path.dirname(os.path.abspath(path_csv)), exist_ok=True)
    cols = ["config", *[f"tokens_per_s_b{b}" for b in batch_sizes], "prefill_ms", "peak_mem_gib", "weight_mib",
            "agreement", "logit_sqnr_db", "compiled", "note"]
    with open(path_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in results:
            w.writerow([r.config, *[r.tokens_per_s.get(b, "") for b in batch_sizes], r.prefill_ms, r.peak_mem_gib,
                        r.weight_mib, r.agreement, r.logit_sqnr_db, r.compiled, r.note])
    return path_csv


# ----------------------------------------------------------------------------- CLI
def add_args(p: argparse.ArgumentParser):
    p.add_argument("--configs", default=None, help=f"comma list; default {','.join(DEFAULT_CONFIGS)}")
    p.add_argument("--device", default=None)
    p.add_argument("--tiny", action="store_true", help="dim 128, 2 layers, vocab 512: a CPU smoke run")
    p.add_argument("--n-layers", type=int, default=None, help="default 4 (the 8B has 32)")
    p.add_argument("--dim", type=int, default=None)
    p.add_argument("--ffn-dim", type=int, default=None)
    p.add_argument("--n-heads", type=int, default=None)
    p.add_argument("--n-kv-heads", type=int, default=None)
    p.add_argument("--vocab", type=int, default=None)
    p.add_argument("--batch-sizes", default="1,16")
    p.add_argument("--prompt-len", type=int, default=64, help="prompt before the timed decode")
    p.add_argument("--gen", type=int, default=64, help="timed decode steps")
    p.add_argument("--warm", type=int, default=8, help="untimed decode steps (compile, graph capture)")
    p.add_argument("--prefill-len", type=int, default=None, help="default 2048 (tiny: 32); 0 skips")
    p.add_argument("--acc-len", type=int, default=None, help="prompt length of the accuracy check (default 128)")
    p.add_argument("--compile", default=None, choices=["reduce-overhead", "default", "max-autotune", "none"],
                   help="decode compile mode; default reduce-overhead on CUDA, none on CPU")
    p.add_argument("--skip-lm-head", action="store_true", help="leave the output projection in bf16")
    p.add_argument("--time-budget", type=float, default=540.0,
                   help="seconds for the whole run: no config runs past it, configs left without time are skipped")
    p.add_argument("--config-timeout", type=float, default=150.0,
                   help="seconds one config may take (child startup, quantization, compile and timing included); "
                        "its process is killed then and the results it had reported are kept")
    p.add_argument("--no-isolate", dest="isolate", action="store_false",
                   help="run every config in this process (no kill: the timeouts only skip batch sizes)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_out/model")
    p.add_argument("--_child", default=None, help=argparse.SUPPRESS)  # internal: run one config, see run_child
    p.add_argument("--_child-dir", default=None, help=argparse.SUPPRESS)


def main(args) -> int:
    if args._child:
        return child_main(args._child, args._child_dir)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    over = {k: getattr(args, k) for k in ("n_layers", "dim", "ffn_dim", "n_heads", "n_kv_heads", "vocab")
            if getattr(args, k) is not None}
    if args.tiny:
        a = ModelArgs.tiny(**over)
    else:
        over.setdefault("n_layers", 4)
        a = ModelArgs.llama3_8b(**over)
    configs = order_configs(args.configs.split(",") if args.configs else DEFAULT_CONFIGS)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    prefill_len = args.prefill_len if args.prefill_len is not None else (32 if args.tiny else 2048)
    acc_len = args.acc_len or (16 if args.tiny else 128)
    compile_mode = args.compile or ("reduce-overhead" if device.type == "cuda" else "none")
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"model: {asdict(a)} on {device}, compile={compile_mode}, configs {','.join(configs)}; "
          f"{args.config_timeout:.0f}s per config, {args.time_budget:.0f}s in all, "
          f"{'one process per config' if args.isolate else 'in-process'}")
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()

    def save(results, finished: bool) -> str:
        """The CSV, table and meta of the configs done so far (after each one, so a killed run leaves them)."""
        table = format_results(results, batch_sizes, prefill_len)
        write_results(results, os.path.join(args.out, "model_results.csv"), batch_sizes)
        with open(os.path.join(args.out, "model_table.txt"), "w") as fh:
            fh.write(table + "\n")
        with open(os.path.join(args.out, "model_meta.json"), "w") as fh:
            json.dump({"model": asdict(a), "device": str(device), "gpu": gpu, "compile": compile_mode,
                       "elapsed_s": round(time.perf_counter() - t0, 1), "finished": finished,
                       "configs": configs, "done": [r.config for r in results],
                       "config_timeout_s": args.config_timeout, "time_budget_s": args.time_budget,
                       "isolate": args.isolate, "prompt_len": args.prompt_len, "gen": args.gen,
                       "warm": args.warm}, fh, indent=1)
        return table

    results = run(a, configs, device=device, seed=args.seed, batch_sizes=batch_sizes, prompt_len=args.prompt_len,
                  n_warm=args.warm, n_gen=args.gen, prefill_len=prefill_len, acc_len=acc_len,
                  compile_mode=compile_mode, skip_lm_head=args.skip_lm_head, time_budget_s=args.time_budget,
                  config_timeout_s=args.config_timeout, isolate=args.isolate,
                  on_result=lambda rs: save(rs, finished=False))
    table = save(results, finished=True)
    print()
    print(table)
    print(f"\ntook {time.perf_counter() - t0:.0f}s; wrote {args.out}/model_results.csv, model_table.txt")
    return 0
