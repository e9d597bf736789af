"""A Llama-3-architecture decoder with seeded random weights and a static KV cache (gpt-fast's shape).

Fused qkv and gate_up projections (the kernel sweep's shapes), RoPE, GQA, RMSNorm, SwiGLU. The
model takes `(tokens [B, S], input_pos [S])` and returns logits; `setup_caches(batch, max_seq)`
allocates the cache first. No download: every config quantizes the same seeded weights.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .methods import module_bytes


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
        return cls(**{**dict(dim=128, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=256, vocab=512), **overrides})


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
            # decode: the query heads of a group share one read of their cache head, masked to the valid
            # prefix. The cache stays bf16 (the matmuls accumulate in fp32): an fp32 copy of it per step
            # would move more bytes than the attention reads, in every config alike.
            G = H // Hkv
            qg = q.reshape(B, Hkv, G * S, hd)
            scores = (qg @ kc.transpose(-1, -2)).float() * (hd ** -0.5)
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
            layer.attn.kv_cache = None  # free the old cache before allocating the new one
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
    """Bytes of the weights one decode step reads: every parameter and buffer (packed, for quantized
    layers, whether they hold tensor subclasses or plain buffers), less the caches and the embedding
    table (a step reads one row of it) and tqk's split-K counters (one shared 512 KiB buffer per
    device, of which a step touches a few slots)."""
    skip = ("tok_embeddings", "split_counters") + tuple(CACHE_BUFFERS)
    return module_bytes(model, skip=lambda name: any(s in name for s in skip))


def kv_cache_bytes(model: nn.Module) -> int:
    """Bytes of the static KV cache, which the decode attention reads whole every step (masked)."""
    return sum(b.numel() * b.element_size() for name, b in model.named_buffers() if "kv_cache" in name)
