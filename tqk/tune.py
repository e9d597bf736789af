"""Tune tile configs on this GPU and write autotune_results/<gpu name>.json.

    python -m tqk.tune                      # Llama-3-8B shapes, M = 1, 16, 128, 2048, all formats
    python -m tqk.tune --shapes 4096x4096 --m 1 8 --formats int4_g128

Each (format, N, K, M bucket) gets the fastest of a small search space around the heuristic,
timed by CUDA-graph replay over enough weight copies to defeat the L2 (tqk.bench.timing), so
neither Python launch cost nor cached weights bias the choice. Existing entries for other
shapes are kept. Prints each winner beside bf16 F.linear on the same shape.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn.functional as F
import triton

from .configs import Float8WeightOnlyConfig, Int4WeightOnlyConfig, Int8WeightOnlyConfig, quantize_weight
from .kernels.tuning import KernelConfig, gpu_traits, heuristic, m_bucket, results_file, table_key
from .kernels.weight_only import launch_weight_only

FORMATS = {
    "int4_g128": Int4WeightOnlyConfig(group_size=128),
    "int4_g32": Int4WeightOnlyConfig(group_size=32),
    "int8": Int8WeightOnlyConfig(),
    "fp8": Float8WeightOnlyConfig(),
}
LLAMA3_8B = ["6144x4096", "4096x4096", "28672x4096", "4096x14336"]


def candidates(m: int, biased: bool = False) -> list[KernelConfig]:
    """The search space for M (bucketed); `biased`: the format can decode biased (gemv_bias)."""
    if m <= 2:  # CUDA cores: 2 or 4 rows per thread (block_n / (8 * num_warps)), K split or not,
        #        one or two blocks per loop trip, a tile's K splits side by side or apart, biased
        #        decode or not; or wide trips: 1-32 rows, 4-16 blocks of each row loaded as one tile
        return [KernelConfig("gemv", block_n=bn, num_warps=w, num_stages=2, split_k=sk, trip_blocks=tb,
                             adjacent_splits=adj, biased=b)
                for bn, w in ((32, 1), (64, 2), (128, 4), (32, 2), (64, 4), (128, 8), (256, 8))
                for sk in (1, 2, 4, 8) for tb, adj in ((2, False), (1, sk > 1), (2, True))
                for b in ((False, True) if biased else (False,))
                if sk > 1 or not adj] + \
               [KernelConfig("gemv", block_n=bn, num_warps=w, num_stages=2, split_k=sk, trip_blocks=tb, wide=True,
                             adjacent_splits=sk > 1)  # a few rows, long stretches of each row per trip
                for bn, tb, w in ((1, 8, 1), (1, 16, 2), (2, 8, 1), (2, 16, 2), (4, 8, 2), (4, 16, 4), (8, 8, 4),
                                  (8, 8, 8), (16, 8, 8), (16, 4, 4), (32, 4, 8))
                for sk in (1, 2)] + \
               [KernelConfig("gemm", block_n=64, block_m=16, split_k=sk, num_warps=4, num_stages=3)
                for sk in (2, 4)]  # a thin tensor-core tile, for comparison
    if m <= 64:
        bm = max(16, 1 << (m - 1).bit_length())
        return [KernelConfig("gemm", block_n=bn, block_m=bm, split_k=sk, num_warps=4, num_stages=3, one_dot=od)
                for bn in (32, 64, 128) for sk in (1, 2, 4, 8) for od in (False, True) if not (bn == 128 and sk == 8)]
    if m <= 256:
        return [KernelConfig("gemm", block_n=bn, block_m=bm, split_k=sk, num_warps=w, num_stages=3, one_dot=od)
                for bn, bm, w in ((64, 64, 4), (128, 64, 4), (128, 128, 8), (64, 128, 4)) for sk in (1, 2)
                for od in (False, True)]
    return [KernelConfig("gemm", block_n=bn, block_m=bm, num_warps=w, num_stages=st, one_dot=od, block_scale=bs)
            for bn, bm, w in ((128, 128, 8), (128, 256, 8), (256, 128, 8), (128, 128, 4), (64, 256, 8))
            for st in (3,) for od in (False, True) for bs in (False, True)]

def tune_one(weights, x, config_list, bench):
    fmt = weights[0].quant_layout.weight_format()
    n, k = weights[0].shape
    best = None
    for cfg in config_list:
        calls = [lambda x, qw=qw, cfg=cfg: launch_weight_only(x, qw.packed, qw.scales, qw.zeros, None, fmt, n, k, cfg)
                 for qw in weights]
        try:
            t = bench(calls, x)
        except Exception as e:  # out of resources for this tile: not a candidate here
            print(f"    skip {cfg}: {type(e).__name__}")
            continue
        if best is None or t < best[0]:
            best = (t, cfg)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shapes", nargs="+", default=LLAMA3_8B, help="NxK (out x in)")
    p.add_argument("--m", nargs="+", type=int, default=[1, 16, 128, 2048])
    p.add_argument("--formats", nargs="+", default=["int4_g128", "int8", "fp8"], choices=sorted(FORMATS))
    p.add_argument("--out", default=None, help="JSON path (default: autotune_results/<gpu>.json)")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("tqk.tune needs a CUDA GPU")
    device = torch.device("cuda")
    gpu = gpu_traits(device.index or 0)
    path = args.out or results_file(gpu.name)
    table = json.loads(open(path).read()) if os.path.exists(path) else {"configs": {}}
    table.update(gpu.to_json(), torch=torch.__version__, triton=triton.__version__)

    from .bench.timing import copies_needed, l2_cache_bytes, time_calls

    def bench(calls, x):
        return time_calls(calls, x, reps=15, warmup=2, min_replay_s=5e-4).median_s * 1e3  # ms

    rows = []
    for shape in args.shapes:
        n, k = map(int, shape.split("x"))
        w = torch.randn(n, k, dtype=torch.bfloat16, device=device)
        for m in args.m:
            x = torch.randn(m, k, dtype=torch.bfloat16, device=device)
            bf16_copies = [w] + [w.clone() for _ in range(copies_needed(w.numel() * 2, l2_cache_bytes()) - 1)]
            t_bf16 = bench([lambda x, w=w: F.linear(x, w) for w in bf16_copies], x)
            del bf16_copies
            for fname in args.formats:
                qw = quantize_weight(w, FORMATS[fname])
                weights = [qw] + [qw.clone() for _ in range(copies_needed(qw.packed_nbytes, l2_cache_bytes()) - 1)]
                cands = candidates(m, qw.quant_layout.weight_format().gemv_bias > 0)
                h = heuristic(n, k, m_bucket(m))
                if h not in cands:
                    cands.append(h)
                t, cfg = tune_one(weights, x, cands, bench)
                del weights
                key = table_key(qw.quant_layout.weight_format().key, n, k, m)
                table["configs"][key] = cfg.to_json()
                rows.append((fname, shape, m, t * 1e3, t_bf16 * 1e3, t_bf16 / t, cfg))
                print(f"{fname:10s} {shape:11s} M={m:<5d} {t*1e3:8.1f} us  bf16 {t_bf16*1e3:8.1f} us  "
                      f"x{t_bf16/t:5.2f}  {cfg}", flush=True)
        with open(path, "w") as f:  # after every shape, so an interrupted run keeps its results
            json.dump(table, f, indent=1, sort_keys=True)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
