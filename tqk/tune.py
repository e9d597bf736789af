"""Tune tile configs on this GPU and write autotune_results/<gpu name>.json.

    python -m tqk.tune                      # Llama-3-8B shapes, M = 1, 16, 128, 2048, all formats
    python -m tqk.tune --shapes 4096x4096 --m 1 8 --formats int4_g128
    python -m tqk.tune --family scaled      # the activation-quantized GEMM: int8dq, fp8dq-row, w4a8-int8
    python -m tqk.tune --family scaled --m 1 16 2048 --act-quant both --formats int8dq fp8dq-tensor

Each (format, N, K, M bucket) gets the fastest of a small search space around the heuristic,
timed by CUDA-graph replay over enough weight copies to defeat the L2 (tqk.bench.timing), so
neither Python launch cost nor cached weights bias the choice. Existing entries for other
shapes are kept. Prints each winner beside bf16 F.linear on the same shape.

The scaled family times the GEMM alone on an activation quantized beforehand (the tile does not
change the quantization's kernel), on the path tqk.kernels.scaled_mm.quantize_in_prologue picks for
that M (`--act-quant both`: the prologue and the codes path each, keyed apart); its candidates are
compiled in parallel threads first (`--jobs`), so the search costs little more than its timing.
"""
from __future__ import annotations

import argparse
import json
import os

import torch
import torch.nn.functional as F
import triton

from .bench.methods import tqk_configs
from .configs import (Float8DynamicActivationFloat8WeightConfig, Float8DynamicActivationInt4WeightConfig,
                      Float8WeightOnlyConfig, Int4WeightOnlyConfig, Int8DynamicActivationInt8WeightConfig,
                      Int8DynamicActivationIntxWeightConfig, Int8WeightOnlyConfig, quantize_weight)
from .kernels import scaled_mm
from .kernels.scaled_mm import ScaledConfig, launch_scaled_mm, scaled_heuristic, scaled_table_key
from .kernels.tuning import KernelConfig, gpu_traits, heuristic, m_bucket, results_file, table_key
from .kernels.weight_only import launch_weight_only
from .quant.activation import activation_scales, quantize_activation
from .quant.granularity import PerBlock, PerRow

FORMATS = {
    "int4_g128": Int4WeightOnlyConfig(group_size=128),
    "int4_g32": Int4WeightOnlyConfig(group_size=32),
    "int8": Int8WeightOnlyConfig(),
    "fp8": Float8WeightOnlyConfig(),
    # the newer formats (issues 12, 13), tuned on request (--formats uint3 mxfp4 ...): the benchmark's configs
    **{name[len("tqk-"):]: cfg for name, cfg in tqk_configs().items()
       if name in ("tqk-uint3", "tqk-uint2", "tqk-fp6", "tqk-fp5", "tqk-codebook4", "tqk-codebook8", "tqk-mxfp4",
                   "tqk-mxfp6", "tqk-mxfp8", "tqk-nvfp4")},
}
SCALED_FORMATS = {
    "int8dq": Int8DynamicActivationInt8WeightConfig(),
    "fp8dq-row": Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
    "fp8dq-tensor": Float8DynamicActivationFloat8WeightConfig(),
    "fp8dq-block": Float8DynamicActivationFloat8WeightConfig(granularity=[PerBlock((1, 128)), PerBlock((128, 128))]),
    "w4a8-int8": Int8DynamicActivationIntxWeightConfig(),
    "w4a8-fp8": Float8DynamicActivationInt4WeightConfig(),
    # block-scaled floats on both operands: the benchmark's own configs (tqk-mxfp8dq, ...)
    **{name[len("tqk-"):]: cfg for name, cfg in tqk_configs().items() if name in
       ("tqk-mxfp8dq", "tqk-mxfp4dq", "tqk-nvfp4dq")},
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

def scaled_candidates(fmt, m: int) -> list[ScaledConfig]:
    """The scaled GEMM's search space for M (bucketed). BLOCK_K: the scale step where scales change
    along K (the group, the 128 block), else 128 (and 256 for small M, which streams the weight)."""
    steps = [fmt.group] if fmt.k_steps else [128, 256]
    if m <= 64:  # memory-bound: narrow tiles or K split over programs to use every SM
        bm = max(16, 1 << (m - 1).bit_length())
        # Hopper has no fp8 mma.sync: under 64 rows an fp8 tile is cast to f16 for it, 64 rows take the wgmma
        rows = [bm] if fmt.act == "int8" or bm >= 64 else [bm, 64]
        out = [ScaledConfig(r, bn, bk, num_warps=4, num_stages=4, split_k=sk) for r in rows
               for bn, splits in ((16, (1, 2)), (32, (1, 2, 4)), (64, (1, 2, 4, 8))) for bk in steps for sk in splits
               if r < 64 or bn >= 32]
        if fmt.weight == "int4":  # transposed: 64 or 128 weight rows are the wgmma's M, the activation its N
            out += [ScaledConfig(bm, bn, bk, num_warps=4, num_stages=4, split_k=sk, swap_ab=True)
                    for bn, splits in ((64, (1, 2, 4, 8)), (128, (1, 2, 4))) for bk in steps for sk in splits]
        return out
    # scales along K: also applied during the next step's dot; int4 weights: also the tile transposed
    lates = (False, True) if fmt.k_steps else (False,)
    swaps = (False, True) if fmt.weight == "int4" else (False,)
    if m <= 256:
        tiles = ((64, 64, 4, 4), (64, 128, 4, 4), (128, 64, 4, 4), (128, 128, 8, 3), (128, 128, 4, 4))
    else:
        tiles = ((128, 128, 8, 3), (128, 128, 8, 4), (128, 128, 8, 5), (128, 128, 4, 4), (128, 256, 8, 3),
                 (128, 256, 8, 4), (256, 128, 8, 3), (256, 128, 8, 4), (64, 128, 4, 4), (64, 128, 4, 5),
                 (128, 64, 4, 4), (64, 256, 8, 3))
    return [ScaledConfig(bm, bn, steps[0], num_warps=w, num_stages=st, late_scale=late, swap_ab=swap)
            for bm, bn, w, st in tiles for late in lates for swap in swaps]


def fastest(configs, weights, x, launch, bench, settle_s=0.1):
    """(ms, config) of the fastest of `configs`, each timed over every weight copy: launch(cfg, w)
    runs one call. None when no config runs (out of resources for this tile: not a candidate here)."""
    best = None
    for cfg in configs:
        calls = [lambda x, w=w, cfg=cfg: launch(cfg, w, x) for w in weights]
        try:
            t = bench(calls, x, settle_s=settle_s)
        except Exception as e:  # noqa: BLE001
            print(f"    skip {cfg}: {type(e).__name__}")
            continue
        if best is None or t < best[0]:
            best = (t, cfg)
    return best


def with_heuristic(configs: list, h) -> list:
    """The search space with the untuned heuristic in it, so a tuned entry is never worse."""
    return configs if h in configs else configs + [h]


def weight_copies(t, nbytes: int, interpreted: bool = False) -> list:
    """t and clones of it whose bytes together exceed the L2 several times over (one on the CPU)."""
    from .bench.timing import copies_needed, l2_cache_bytes
    n = 1 if interpreted else copies_needed(nbytes, l2_cache_bytes())
    return [t] + [t.clone() for _ in range(n - 1)]


def _compile_all(compile_one, items, jobs: int):
    """compile_one(item) for each item, in `jobs` threads (Triton's compiler and ptxas run outside the
    GIL), the first alone (it initializes the driver); failures are left for the timing to skip."""
    items = list(items)
    if not items:
        return
    try:
        compile_one(items[0])
    except Exception:  # noqa: BLE001 - out of resources: the timing skips it
        pass

    def quiet(item):
        try:
            compile_one(item)
        except Exception:  # noqa: BLE001
            pass
    if jobs <= 1:
        for item in items[1:]:
            quiet(item)
        return
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(quiet, items[1:]))


def tune_scaled(args, device, table, bench, bf16_time) -> list:
    """The scaled family: for each shape, format, M and path, the fastest of scaled_candidates."""
    counters = torch.zeros(1 << 17, dtype=torch.int32, device=device)  # zeroed split-K slots (left at zero)
    interpreted = device.type != "cuda"  # (a CPU smoke test through Triton's interpreter)
    rows = []
    for shape in args.shapes:
        n, k = map(int, shape.split("x"))
        w = torch.randn(n, k, dtype=torch.bfloat16, device=device) * k**-0.5
        xs = {m: torch.randn(m, k, dtype=torch.bfloat16, device=device) for m in args.m}
        t_bf16 = {m: bf16_time(w, xs[m]) for m in args.m}
        for fname in args.formats:
            qw = quantize_weight(w, SCALED_FORMATS[fname])
            layout = qw.quant_layout
            fmt = layout.scaled_format()
            weights = weight_copies(qw, qw.packed_nbytes, interpreted)
            for m in args.m:
                auto = scaled_mm.quantize_in_prologue("auto", fmt.a_scale, m)
                paths = (auto,) if args.act_quant == "auto" or not layout.takes_prologue else (True, False)
                for quantize_a in paths:
                    x = xs[m]
                    if quantize_a:
                        a, a_scales = x, activation_scales(x, layout.act, layout.act_granularity, layout.static_scale)
                    else:
                        a, a_scales = quantize_activation(x, layout.act, layout.act_granularity, layout.static_scale,
                                                          layout.scaling_mode)
                    cands = with_heuristic(scaled_candidates(fmt, m), scaled_heuristic(fmt, m, n, k))

                    def launch(cfg, qw, a, warmup=False, a_scales=a_scales, quantize_a=quantize_a):
                        return launch_scaled_mm(a, a_scales, qw.packed, qw.scales, qw.zeros, None, fmt, n, k,
                                                torch.bfloat16, cfg, quantize_a, interpreted, counters=counters,
                                                warmup=warmup)
                    if not interpreted:
                        _compile_all(lambda cfg, a=a: launch(cfg, qw, a, warmup=True), cands, args.jobs)
                    best = fastest(cands, weights, a, launch, bench, settle_s=0.05)
                    if best is None:
                        continue
                    t, cfg = best
                    table["configs"][table_key(scaled_table_key(fmt, quantize_a), n, k, m)] = cfg.to_json()
                    path = "prologue" if quantize_a else "codes"
                    rows.append((fname, path, shape, m, t * 1e3, t_bf16[m] * 1e3, cfg))
                    print(f"{fname:12s} {path:8s} {shape:11s} M={m:<5d} {t*1e3:8.1f} us  bf16 {t_bf16[m]*1e3:8.1f} us  "
                          f"x{t_bf16[m]/t:5.2f}  {cfg}", flush=True)
            del weights
        args.write(table)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--family", default="weight_only", choices=["weight_only", "scaled"])
    p.add_argument("--shapes", nargs="+", default=LLAMA3_8B, help="NxK (out x in)")
    p.add_argument("--m", nargs="+", type=int, default=None, help="default 1 16 128 2048 (scaled: 1 16 2048)")
    p.add_argument("--formats", nargs="+", default=None,
                   help=f"weight_only: {sorted(FORMATS)} (default int4_g128 int8 fp8); "
                        f"scaled: {list(SCALED_FORMATS)} (default int8dq fp8dq-row w4a8-int8)")
    p.add_argument("--act-quant", default="auto", choices=["auto", "both"],
                   help="scaled: tune the path quantize_in_prologue picks per M, or the prologue and codes each")
    p.add_argument("--jobs", type=int, default=min(16, os.cpu_count() or 1), help="scaled: compile threads")
    p.add_argument("--out", default=None, help="JSON path (default: autotune_results/<gpu>.json)")
    args = p.parse_args(argv)
    scaled = args.family == "scaled"
    known = SCALED_FORMATS if scaled else FORMATS
    args.formats = args.formats or (["int8dq", "fp8dq-row", "w4a8-int8"] if scaled else ["int4_g128", "int8", "fp8"])
    args.m = args.m or ([1, 16, 2048] if scaled else [1, 16, 128, 2048])
    unknown = [f for f in args.formats if f not in known]
    if unknown:
        p.error(f"unknown {args.family} formats {unknown}; choose from {sorted(known)}")
    if not torch.cuda.is_available():
        raise SystemExit("tqk.tune needs a CUDA GPU")
    device = torch.device("cuda")
    gpu = gpu_traits(device.index or 0)
    path = args.out or results_file(gpu.name)
    table = json.loads(open(path).read()) if os.path.exists(path) else {"configs": {}}
    table.update(gpu.to_json(), torch=torch.__version__, triton=triton.__version__)

    def write(table):  # after every shape, so an interrupted run keeps its results
        with open(path, "w") as f:
            json.dump(table, f, indent=1, sort_keys=True)
    args.write = write

    from .bench.timing import time_calls

    def bench(calls, x, settle_s=0.1):
        return time_calls(calls, x, reps=15, warmup=2, min_replay_s=5e-4, settle_s=settle_s).median_s * 1e3  # ms

    def bf16_time(w, x):
        return bench([lambda x, w=w: F.linear(x, w) for w in weight_copies(w, w.numel() * 2)], x)

    if scaled:
        rows = tune_scaled(args, device, table, bench, bf16_time)
        print(f"wrote {path}")
        return rows
    rows = []
    for shape in args.shapes:
        n, k = map(int, shape.split("x"))
        w = torch.randn(n, k, dtype=torch.bfloat16, device=device)
        for m in args.m:
            x = torch.randn(m, k, dtype=torch.bfloat16, device=device)
            t_bf16 = bf16_time(w, x)
            for fname in args.formats:
                qw = quantize_weight(w, FORMATS[fname])
                weights = weight_copies(qw, qw.packed_nbytes)
                wfmt = qw.quant_layout.weight_format()
                cands = with_heuristic(candidates(m, wfmt.gemv_bias > 0), heuristic(n, k, m_bucket(m)))

                def launch(cfg, qw, x, wfmt=wfmt):
                    return launch_weight_only(x, qw.packed, qw.scales, qw.zeros, None, wfmt, n, k, cfg, table=qw.table)
                t, cfg = fastest(cands, weights, x, launch, bench)
                del weights
                key = table_key(qw.quant_layout.weight_format().key, n, k, m)
                table["configs"][key] = cfg.to_json()
                rows.append((fname, shape, m, t * 1e3, t_bf16 * 1e3, t_bf16 / t, cfg))
                print(f"{fname:10s} {shape:11s} M={m:<5d} {t*1e3:8.1f} us  bf16 {t_bf16*1e3:8.1f} us  "
                      f"x{t_bf16/t:5.2f}  {cfg}", flush=True)
        write(table)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
