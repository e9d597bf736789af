"""GPU check of the whole-model path: Llama-3-8B-shaped linear stacks, quantize_, torch.compile in
each mode with no eager call first; correctness against eager, kernels per step, wall and CPU ms
per step, and the step captured as one CUDA graph (the floor).

    python scripts/compile_check.py [--layers 8] [--batch 1]
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

import tqk


class Stack(nn.Module):
    def __init__(self, layers: int, dim=4096, ffn=14336, qkv=6144, vocab=128256):
        super().__init__()
        self.blocks = nn.ModuleList(nn.ModuleDict(dict(
            qkv=nn.Linear(dim, qkv, bias=False), o=nn.Linear(dim, dim, bias=False),
            gate_up=nn.Linear(dim, 2 * ffn, bias=False), down=nn.Linear(ffn, dim, bias=False)))
            for _ in range(layers))
        self.head = nn.Linear(dim, vocab, bias=False)
        self.dim = dim

    def forward(self, x):
        for b in self.blocks:
            h = b["qkv"](x)[..., :self.dim]
            x = x + b["o"](h) * 0.1
            g, u = b["gate_up"](x).chunk(2, dim=-1)
            x = x + b["down"](F.silu(g) * u) * 0.1
        return self.head(x)


def timed(fn, x, steps=100):
    for _ in range(3):
        fn(x)
    torch.cuda.synchronize()
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(steps):
        fn(x)
    c1 = time.thread_time()
    torch.cuda.synchronize()
    return (time.perf_counter() - w0) / steps * 1e3, (c1 - c0) / steps * 1e3


def floor_ms(fn, x, steps=100):
    fn(x)
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fn(x)
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        fn(x)
    g.replay()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(steps):
        g.replay()
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) / steps


def kernels_per_step(fn, x):
    fn(x)
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn(x)
        torch.cuda.synchronize()
    names = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    return len(names), sorted(set(n[:40] for n in names))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--batch", default="1,16")
    p.add_argument("--configs", default="bf16,int4,int8,fp8")
    p.add_argument("--profile", action="store_true", help="cProfile 200 reduce-overhead replays per config")
    args = p.parse_args()
    configs = {"bf16": None, "int4": tqk.Int4WeightOnlyConfig(group_size=128), "int8": tqk.Int8WeightOnlyConfig(),
               "fp8": tqk.Float8WeightOnlyConfig()}
    rows = []
    for name in args.configs.split(","):
        torch.manual_seed(0)
        model = Stack(args.layers).to(torch.bfloat16).cuda().eval()
        for prm in model.parameters():
            prm.data.normal_(0, prm.shape[-1] ** -0.5)
        if configs[name] is not None:
            tqk.quantize_(model, configs[name])
        for batch in map(int, args.batch.split(",")):
            x = torch.randn(batch, 4096, dtype=torch.bfloat16, device="cuda")
            row = {"config": name, "batch": batch}
            with torch.no_grad():
                for mode in ("reduce-overhead", "default"):
                    torch._dynamo.reset()
                    t0 = time.perf_counter()
                    fn = torch.compile(model, fullgraph=True, mode=None if mode == "default" else mode)
                    try:
                        out = fn(x).clone()  # the first call: no eager warm-up before it
                        ref = model(x)
                        err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
                        wall, cpu = timed(fn, x)
                        if args.profile and mode == "reduce-overhead":
                            import cProfile
                            import pstats
                            prof = cProfile.Profile()
                            prof.enable()
                            for _ in range(200):
                                fn(x)
                            prof.disable()
                            torch.cuda.synchronize()
                            print(f"--- {name} b{batch} reduce-overhead, 200 replays")
                            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
                        row[mode] = f"{wall:.3f}/{cpu:.3f} (err {err:.1e}, compile {time.perf_counter() - t0:.0f}s)"
                        if mode == "default":
                            n, kinds = kernels_per_step(fn, x)
                            row["kernels"] = n
                            row["kinds"] = kinds
                            row["floor"] = f"{floor_ms(fn, x):.3f}"
                    except Exception as e:  # reported in the table, not hidden
                        row[mode] = f"FAILED {type(e).__name__}: {str(e)[:1500]}"
            rows.append(row)
            print(row, flush=True)
    print("\nconfig batch | reduce-overhead wall/CPU ms | default wall/CPU ms | floor ms | kernels/step")
    for r in rows:
        print(f"{r['config']:5} {r['batch']:3} | {r.get('reduce-overhead')} | {r.get('default')} | {r.get('floor')} | "
              f"{r.get('kernels')}")


if __name__ == "__main__":
    main()
