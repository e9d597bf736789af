"""The kernel sweep: every method x shape x M, timed, checked against bf16, and reported.

Per shape, one random bf16 weight W [N, K] (std K**-0.5) and one x [max M, K] are drawn from a
fixed seed; x[:M] is the input at M. For each method the weight is prepared once per copy
(enough copies that their bytes exceed l2_factor x L2), then every M is timed. The SQNR column
compares the method's output with bf16 F.linear on the same x and W.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F

from . import methods as methods_mod
from . import report, shapes as shapes_mod, timing
from .methods import Method, Options, Unsupported


def _weight(N: int, K: int, device, seed: int, with_bias: bool):
    g = torch.Generator(device="cpu").manual_seed(seed)
    w = (torch.randn(N, K, generator=g) * K**-0.5).to(torch.bfloat16).to(device)
    b = (torch.randn(N, generator=g) * 0.1).to(torch.bfloat16).to(device) if with_bias else None
    return w, b


def _acts(M: int, K: int, device, seed: int):
    g = torch.Generator(device="cpu").manual_seed(seed + 1)
    return torch.randn(M, K, generator=g).to(torch.bfloat16).to(device)


def _short(e: BaseException, n: int = 120) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:n]


def sweep(
    shapes: Sequence[shapes_mod.Shape],
    Ms: Sequence[int],
    methods: Sequence[Method],
    *,
    device="cuda",
    opts: Optional[Options] = None,
    reps: int = 30,
    warmup: int = 3,
    l2_factor: float = 3.0,
    max_copies: int = 1024,
    seed: int = 0,
    with_bias: bool = False,
    ceilings: Optional[timing.Ceilings] = None,
    time_budget_s: Optional[float] = None,
    log: Callable[[str], None] = print,
) -> list[report.Row]:
    opts = opts or Options()
    device = torch.device(device)
    on_cuda = device.type == "cuda"
    l2 = timing.l2_cache_bytes(device) if on_cuda else timing.DEFAULT_L2_BYTES
    t_start = time.perf_counter()
    rows: list[report.Row] = []
    Ms = sorted(set(int(m) for m in Ms))

    def over_budget() -> bool:
        return time_budget_s is not None and time.perf_counter() - t_start > time_budget_s

    for si, shape in enumerate(shapes):
        N, K = shape.N, shape.K
        w, b = _weight(N, K, device, seed + si, with_bias)
        X = _acts(max(Ms), K, device, seed + si)
        refs = {M: F.linear(X[:M], w, b) for M in Ms}
        log(f"[{time.perf_counter() - t_start:6.0f}s] {shape.name}: N={N} K={K}")
        for method in methods:
            def fail_all(note):
                for M in Ms:
                    rows.append(report.make_row(shape.name, N, K, M, method.name, method.family, note=note))

            if over_budget():
                fail_all("skipped: time budget")
                continue
            t_m = time.perf_counter()
            preps = []
            try:
                preps.append(method.factory(w, b, opts))
                n_copies = timing.copies_needed(preps[0].weight_bytes, l2, l2_factor, max_copies) if on_cuda else 1
                for _ in range(n_copies - 1):
                    preps.append(preps[0].copy() if preps[0].copy else method.factory(w.clone(), b, opts))
            except Unsupported as e:
                fail_all(f"unsupported: {e}"[:160])
                log(f"    {method.name:24s} unsupported: {e}")
                continue
            except Exception as e:  # noqa: BLE001 - one broken method must not end the sweep
                fail_all(f"error: {_short(e)}")
                log(f"    {method.name:24s} error while preparing: {_short(e, 300)}")
                preps = []
                _free(on_cuda)
                continue
            wbytes = preps[0].weight_bytes
            for M in Ms:
                if over_budget():
                    rows.append(report.make_row(shape.name, N, K, M, method.name, method.family,
                                                weight_bytes=wbytes, note="skipped: time budget"))
                    continue
                x = X[:M]
                try:
                    out = preps[0].fn(x)
                    sq = report.sqnr_db(refs[M], out)
                    del out
                    t = timing.time_calls([p.fn for p in preps], x, reps=reps, warmup=warmup)
                    rows.append(report.make_row(shape.name, N, K, M, method.name, method.family, timing=t,
                                                weight_bytes=wbytes, sqnr=sq, copies=len(preps),
                                                note=preps[0].status()))
                except Exception as e:  # noqa: BLE001
                    rows.append(report.make_row(shape.name, N, K, M, method.name, method.family,
                                                weight_bytes=wbytes, copies=len(preps), note=f"error: {_short(e)}"))
            ok = [r for r in rows[-len(Ms):] if r.ok]
            log(f"    {method.name:24s} {len(preps):4d} copies, {wbytes / 2**20:8.2f} MiB/copy, "
                f"{len(ok)}/{len(Ms)} points, {time.perf_counter() - t_m:5.1f}s")
            del preps
            _free(on_cuda)
        del w, b, X, refs
        _free(on_cuda)
    report.finalize(rows, ceilings)
    return rows


def _free(on_cuda: bool):
    if on_cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


# ----------------------------------------------------------------------------- CLI
def add_args(p: argparse.ArgumentParser):
    p.add_argument("--models", default=None, help="comma list of llama3 sizes (8b,70b); default 8b, --full: 8b,70b")
    p.add_argument("--layers", default=",".join(shapes_mod.LAYER_NAMES), help="comma list of qkv,o,gate_up,down,lm_head")
    p.add_argument("--shape", action="append", default=[], metavar="[NAME=]NxK",
                   help="custom shape instead of the llama ones (repeatable), e.g. --shape 64x64")
    p.add_argument("--m", default=None, help="comma list of M; default 1,16,256,4096; --full: 1,2,4,...,4096")
    p.add_argument("--full", action="store_true", help="8B and 70B shapes, every power of two M, every method")
    p.add_argument("--methods", default=None, help="comma list of method names (see --list-methods)")
    p.add_argument("--list-methods", action="store_true")
    p.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    p.add_argument("--reps", type=int, default=30, help="timed graph replays per point")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--l2-factor", type=float, default=3.0, help="weight copies' bytes >= this x L2")
    p.add_argument("--bias", action="store_true", help="give every linear a bias")
    p.add_argument("--no-compile", action="store_true", help="run torchao / act-quant peers eagerly")
    p.add_argument("--no-ceilings", action="store_true")
    p.add_argument("--time-budget", type=float, default=None,
                   help="seconds; points past it are skipped (default 540 unless --full)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_out/kernels", help="directory for results.csv, table.txt, plots")


def main(args) -> int:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.list_methods:
        for name, m in methods_mod.REGISTRY.items():
            reason = m.check(device)
            print(f"{name:24s} {m.family:8s} {'default' if m.default else '       '} "
                  f"{m.description}{'  [skip: ' + reason + ']' if reason else ''}")
        return 0
    if args.shape:
        shapes = [shapes_mod.parse_shape(s) for s in args.shape]
    else:
        models = args.models.split(",") if args.models else (["8b", "70b"] if args.full else list(shapes_mod.DEFAULT_MODELS))
        shapes = shapes_mod.select_shapes(models, args.layers.split(","))
    Ms = [int(m) for m in args.m.split(",")] if args.m else list(shapes_mod.ALL_M if args.full else shapes_mod.DEFAULT_M)
    names = args.methods.split(",") if args.methods else None
    chosen, skipped = methods_mod.select_methods(names, device, include_all=args.full)
    if not chosen:
        print("no method can run here")
        return 1
    budget = args.time_budget if args.time_budget is not None else (None if args.full else 540.0)

    os.makedirs(args.out, exist_ok=True)
    ceilings = None
    if device.type == "cuda" and not args.no_ceilings:
        ceilings = timing.measure_ceilings(device)
        print(f"ceilings: memory {ceilings.memory_bytes_per_s / 1e12:.2f} TB/s ({ceilings.memory_kernel}), "
              f"bf16 matmul {ceilings.matmul_flops_per_s / 1e12:.1f} TFLOP/s")
    t0 = time.perf_counter()
    rows = sweep(
        shapes, Ms, chosen, device=device, opts=Options(compile=not args.no_compile),
        reps=args.reps, warmup=args.warmup, l2_factor=args.l2_factor, seed=args.seed,
        with_bias=args.bias, ceilings=ceilings, time_budget_s=budget)
    elapsed = time.perf_counter() - t0

    table = report.format_table(rows, ceilings)
    print(table)
    csv_path = report.write_csv(rows, os.path.join(args.out, "results.csv"))
    with open(os.path.join(args.out, "table.txt"), "w") as fh:
        fh.write(table + "\n")
    if ceilings is not None:
        report.write_ceilings_csv(ceilings, os.path.join(args.out, "ceilings.csv"), torch.cuda.get_device_name(device))
    plots = report.plot_speedups(rows, os.path.join(args.out, "plots"),
                                 title_suffix=f"  ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    meta = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "elapsed_s": round(elapsed, 1), "shapes": [s.name for s in shapes], "M": Ms,
        "methods": [m.name for m in chosen], "skipped_methods": dict(skipped),
        "l2_bytes": timing.l2_cache_bytes(device) if device.type == "cuda" else None,
        "ceilings": None if ceilings is None else {"memory_TBps": ceilings.memory_bytes_per_s / 1e12,
                                                   "memory_kernel": ceilings.memory_kernel,
                                                   "matmul_TFLOPs": ceilings.matmul_flops_per_s / 1e12},
    }
    with open(os.path.join(args.out, "meta.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    print(f"\nsweep took {elapsed:.0f}s; wrote {csv_path}, table.txt, meta.json"
          + (f", {len(plots)} plots in {os.path.join(args.out, 'plots')}" if plots else " (no plots: matplotlib missing)"))
    if skipped:
        print("skipped methods: " + "; ".join(f"{n} ({r})" for n, r in skipped))
    if any(r.note.startswith("skipped: time budget") for r in rows):
        print(f"WARNING: time budget of {budget:.0f}s reached; some points were skipped (see --time-budget)")
    return 0
