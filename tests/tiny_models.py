"""Small models for the whole-model compile tests, shared by tests/test_compile.py (CPU) and
tests/gpu/test_compile_gpu.py (GPU): a stack of quantized linears, and a decoder with a static KV
cache updated in place by index_copy_ (the gpt-fast / transformers StaticCache pattern).

Helpers only (no tests here). Both test folders import this module by name: pytest puts tests/
on sys.path for each of them (rootdir-relative "prepend" import mode).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch._dynamo.utils import counters

import tqk


def quantized_mlp(dims, config, dtype=torch.bfloat16, device="cpu", seed=0) -> nn.Sequential:
    """Linear(dims[0], dims[1]), ReLU, Linear(dims[1], dims[2]), ... with every linear quantized.
    ReLU only between the layers (exact in any backend): compiled and eager outputs of the same
    kernels are bit-identical. Biases on every other layer (the op's two epilogues)."""
    torch.manual_seed(seed)
    layers = []
    for i, (k, n) in enumerate(zip(dims, dims[1:])):
        layers.append(nn.Linear(k, n, bias=i % 2 == 0))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    model = nn.Sequential(*layers).to(dtype).to(device)
    report = tqk.quantize_(model, config)
    assert len(report.quantized) == len(dims) - 1 and not report.skipped, report
    return model


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int, max_seq: int, batch: int):
        super().__init__()
        self.heads, self.head_dim, self.max_seq = heads, dim // heads, max_seq
        self.attn_norm = nn.RMSNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.mlp_norm = nn.RMSNorm(dim)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)
        cache = (batch, heads, max_seq, self.head_dim)
        self.register_buffer("k_cache", torch.zeros(cache), persistent=False)
        self.register_buffer("v_cache", torch.zeros(cache), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """x [B, T, D]; pos [T] (int64): the cache slots of these T tokens."""
        b, t, d = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        self.k_cache.index_copy_(2, pos, k)
        self.v_cache.index_copy_(2, pos, v)
        visible = torch.arange(self.max_seq, device=x.device)[None, :] <= pos[:, None]  # [T, max_seq]
        a = F.scaled_dot_product_attention(q, self.k_cache, self.v_cache, attn_mask=visible)
        x = x + self.out(a.transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.silu(self.up(self.mlp_norm(x))))


class TinyDecoder(nn.Module):
    """Embedding, `layers` DecoderLayers with static KV caches of `max_seq` slots, norm, head."""

    def __init__(self, vocab=128, dim=64, heads=2, hidden=128, layers=2, max_seq=16, batch=1):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, hidden, max_seq, batch) for _ in range(layers))
        self.norm = nn.RMSNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens)
        for layer in self.layers:
            x = layer(x, pos)
        return self.head(self.norm(x)).float()

    def reset_cache(self):
        for layer in self.layers:
            layer.k_cache.zero_()
            layer.v_cache.zero_()


def quantized_decoder(config, dtype=torch.bfloat16, device="cpu", seed=0, **sizes) -> TinyDecoder:
    torch.manual_seed(seed)
    model = TinyDecoder(**sizes)
    with torch.no_grad():  # weights large enough that the logits are far from uniform
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.2)
    model = model.to(dtype).to(device).eval()
    report = tqk.quantize_(model, config)
    assert len(report.quantized) == 4 * len(model.layers) + 1 and not report.skipped, report
    return model


def decode(call, model: TinyDecoder, tokens: torch.Tensor) -> torch.Tensor:
    """Feed tokens [B, S] one at a time through `call` (the model, compiled or not), from an empty
    cache; the logits of each step [B, S, vocab] (float32, cloned: a CUDA-graph output is
    overwritten by the next replay). Teacher-forced, so two runs see the same inputs whatever
    they predict."""
    model.reset_cache()
    steps = []
    with torch.no_grad():
        for i in range(tokens.shape[1]):
            pos = torch.tensor([i], device=tokens.device)
            steps.append(call(tokens[:, i:i + 1], pos)[:, -1].clone())
    return torch.stack(steps, 1)


def graphs() -> int:
    """Graphs dynamo compiled since the last counters.clear()."""
    return counters["stats"]["unique_graphs"]


def graph_breaks() -> dict:
    return dict(counters["graph_break"])


def assert_close_run(out: torch.Tensor, ref: torch.Tensor, rel: float, msg: str = "", norm: bool = False):
    """Two runs of one model (compiled vs eager) agree: every element within `rel` of the largest
    magnitude of `ref`. For runs whose float rounding differs (another fusion of the elementwise
    ops, split-K partials added in another order): a wrong kernel, a stale CUDA-graph buffer or an
    unwritten cache is off by O(1) of that scale. norm: the difference's norm within `rel` of ref's
    instead, for 4-bit activations, where one code apart moves a whole output row by a large step."""
    assert out.shape == ref.shape, (out.shape, ref.shape, msg)
    assert bool(torch.isfinite(out).all()), f"non-finite output {msg}"
    if norm:
        err = (out.double() - ref.double()).norm().item() / ref.double().norm().item()
        assert err <= rel, f"|compiled - eager| / |eager| = {err:.4g} > {rel} {msg}"
        return
    scale = ref.double().abs().max().item()
    err = (out.double() - ref.double()).abs().max().item()
    assert err <= rel * scale, f"max |compiled - eager| = {err:.4g} > {rel} * {scale:.4g} {msg}"


def compiled_call_kernels(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The CUDA kernels one call of torch.compile(model, fullgraph=True) launches (default mode, no
    CUDA graphs), profiled on the call after the first (which compiles)."""
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        compiled(x)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            compiled(x)
            torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
