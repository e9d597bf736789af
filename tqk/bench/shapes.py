"""Linear-layer shapes of Llama-3-8B and Llama-3-70B, and the M (token count) sweep.

A shape is (N, K): the weight is [N, K] (out_features x in_features), x is [M, K], out is [M, N].
qkv and gate_up are the fused projections a serving stack runs as one matmul.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LlamaDims:
    dim: int
    ffn_dim: int
    n_heads: int
    n_kv_heads: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


LLAMA3 = {
    "8b": LlamaDims(dim=4096, ffn_dim=14336, n_heads=32, n_kv_heads=8, vocab=128256),
    "70b": LlamaDims(dim=8192, ffn_dim=28672, n_heads=64, n_kv_heads=8, vocab=128256),
}

LAYER_NAMES = ("qkv", "o", "gate_up", "down", "lm_head")


@dataclass(frozen=True)
class Shape:
    model: str
    layer: str
    N: int
    K: int

    @property
    def name(self) -> str:
        return f"llama3-{self.model}-{self.layer}" if self.model else self.layer

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return f"{self.name} (N={self.N}, K={self.K})"


def llama_shapes(model: str) -> list[Shape]:
    d = LLAMA3[model]
    kv = d.n_kv_heads * d.head_dim
    nk = {
        "qkv": (d.dim + 2 * kv, d.dim),
        "o": (d.dim, d.dim),
        "gate_up": (2 * d.ffn_dim, d.dim),
        "down": (d.dim, d.ffn_dim),
        "lm_head": (d.vocab, d.dim),
    }
    return [Shape(model, name, *nk[name]) for name in LAYER_NAMES]


ALL_M = tuple(2**i for i in range(13))  # 1, 2, 4, ..., 4096
DEFAULT_M = (1, 16, 256, 4096)
DEFAULT_MODELS = ("8b",)


def select_shapes(models=DEFAULT_MODELS, layers=LAYER_NAMES) -> list[Shape]:
    out = []
    for m in models:
        if m not in LLAMA3:
            raise ValueError(f"unknown model {m!r}; choose from {sorted(LLAMA3)}")
        for s in llama_shapes(m):
            if s.layer in layers:
                out.append(s)
    bad = set(layers) - set(LAYER_NAMES)
    if bad:
        raise ValueError(f"unknown layers {sorted(bad)}; choose from {LAYER_NAMES}")
    return out


def parse_shape(text: str) -> Shape:
    """'NxK' or 'name=NxK' -> a custom Shape (used for tiny CPU runs)."""
    name = ""
    if "=" in text:
        name, text = text.split("=", 1)
    n, k = text.lower().split("x")
    n, k = int(n), int(k)
    return Shape("", name or f"{n}x{k}", n, k)
