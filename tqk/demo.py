"""Quantize a small transformer-like model with each tqk config; print accuracy, size and speed.

    python -m tqk.demo            # on a GPU: a 4-layer, 2048-wide model, torch.compile'd
    python -m tqk.demo --small    # the default without a GPU: runs the kernels in Triton's interpreter

Accuracy is the SQNR of the model's output against the float model (higher is better; every
6 dB is one more correct bit), size is the bytes of the linear weights, time is one forward.
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

import tqk


class Block(nn.Module):
    """A transformer block's linear layers (attention projections and a SwiGLU MLP)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.norm1, self.norm2 = nn.RMSNorm(dim), nn.RMSNorm(dim)
        self.qkv, self.o = nn.Linear(dim, 3 * dim, bias=False), nn.Linear(dim, dim, bias=False)
        self.gate_up, self.down = nn.Linear(dim, 2 * hidden, bias=False), nn.Linear(hidden, dim, bias=False)

    def forward(self, x):
        q, k, v = self.qkv(self.norm1(x)).chunk(3, dim=-1)
        attn = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1) @ v
        x = x + self.o(attn)
        gate, up = self.gate_up(self.norm2(x)).chunk(2, dim=-1)
        return x + self.down(nn.functional.silu(gate) * up)


class TinyTransformer(nn.Module):
    def __init__(self, dim=256, hidden=768, layers=2, vocab=512):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.blocks = nn.ModuleList(Block(dim, hidden) for _ in range(layers))
        self.head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens):
        x = self.embed(tokens)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def linear_bytes(model: nn.Module) -> int:
    total = 0
    for m in model.modules():
        if isinstance(m, nn.Linear):
            w = m.weight
            total += w.packed_nbytes if isinstance(w, tqk.QuantizedLinearWeight) else w.numel() * w.element_size()
    return total


def sqnr(out: torch.Tensor, ref: torch.Tensor) -> float:
    ref, out = ref.double(), out.double()
    return float(10 * torch.log10(ref.pow(2).sum() / (out - ref).pow(2).sum().clamp_min(1e-30)))


def timed(fn, reps: int) -> float:
    fn()  # warm-up: compilation, autotune table lookups
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / reps


CONFIGS = {
    "int8 per-row": tqk.Int8WeightOnlyConfig(),
    "fp8 e4m3 per-row": tqk.Float8WeightOnlyConfig(),
    "int4 g128": tqk.Int4WeightOnlyConfig(group_size=128),
    "int4 g32": tqk.Int4WeightOnlyConfig(group_size=32),
    "uint3 g128": tqk.UIntxWeightOnlyConfig(bit_width=3, group_size=128),
    "fp6 e3m2 per-row": tqk.FPXWeightOnlyConfig(ebits=3, mbits=2),
    "nvfp4": tqk.NVFP4WeightOnlyConfig(),
    "int8 x int8 dynamic": tqk.Int8DynamicActivationInt8WeightConfig(),
    "fp8 x fp8 dynamic per-row": tqk.Float8DynamicActivationFloat8WeightConfig(granularity=tqk.PerRow()),
    "w4a8 (int8 act)": tqk.Int8DynamicActivationIntxWeightConfig(),
}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny model (the default without a GPU)")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--hqq", action="store_true", help="also run int4 g128 with use_hqq=True (needs hqq)")
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    small = args.small or not cuda
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(0)
    shape = dict(dim=256, hidden=768, layers=2, vocab=512) if small else dict(dim=2048, hidden=5632, layers=4, vocab=8192)
    batch, seq = (1, 8) if small else (4, 128)
    base = TinyTransformer(**shape).to(device, torch.bfloat16).eval()
    tokens = torch.randint(0, shape["vocab"], (batch, seq), device=device)
    compile_ = cuda and not args.no_compile
    reps = 1 if small else 20
    configs = dict(CONFIGS)
    if args.hqq:
        configs["int4 g128 hqq"] = tqk.Int4WeightOnlyConfig(group_size=128, use_hqq=True)

    print(f"tqk demo on {torch.cuda.get_device_name() if cuda else 'CPU (Triton interpreter)'}: "
          f"{shape['layers']} blocks, dim {shape['dim']}, tokens {batch}x{seq}, compile={compile_}")
    with torch.no_grad():
        ref = base(tokens)
        run = torch.compile(base) if compile_ else base
        rows = [("bf16 (float)", float("inf"), linear_bytes(base), timed(lambda: run(tokens), reps))]
        for name, config in configs.items():
            model = copy.deepcopy(base)
            report = tqk.quantize_(model, config)
            run = torch.compile(model) if compile_ else model
            out = run(tokens)
            rows.append((name, sqnr(out, ref), linear_bytes(model), timed(lambda: run(tokens), reps)))
            if report.skipped:
                print(report)
    print(f"\n{'config':26s} {'SQNR vs bf16':>13s} {'linear weights':>15s} {'time/forward':>13s}")
    for name, snr, nbytes, t in rows:
        print(f"{name:26s} {snr:>10.1f} dB {nbytes / 2**20:>11.2f} MiB {t * 1e3:>10.2f} ms")


if __name__ == "__main__":
    main()
