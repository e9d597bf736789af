"""Does a compiled decode step replay as one CUDA graph, or copy inputs each step?

    python scripts/cudagraph_check.py [configs...]

Prints, per config, the decode step time and the CUDA work the profiler sees outside the graph
kernels (memcpy / copy_ of inputs that cudagraph trees copy into its static buffers each replay).
"""
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

from tqk.bench.decoder import ModelArgs, build_model
from tqk.bench.model import apply_config

configs = sys.argv[1:] or ["bf16", "tqk-int4", "gemlite-int4"]
a = ModelArgs.llama3_8b(n_layers=2, vocab=32000)
for name in configs:
    model = build_model(a, "cuda")
    apply_config(model, name)
    model.setup_caches(1, 128)
    compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)

    def step(model, tok, pos):
        return compiled(tok, pos)[:, -1].argmax(-1, keepdim=True)

    tok = torch.zeros(1, 1, dtype=torch.long, device="cuda")
    pos = torch.tensor([5], device="cuda")
    with torch.no_grad():
        for _ in range(6):
            step(model, tok, pos)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(50):
            step(model, tok, pos)
        torch.cuda.synchronize()
        dt = (time.perf_counter() - t0) / 50
        with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
            for _ in range(3):
                step(model, tok, pos)
            torch.cuda.synchronize()
    rows = sorted(((e.key, e.count, e.device_time_total) for e in prof.key_averages()), key=lambda r: -r[2])
    print(f"== {name}: {dt * 1e6:.0f} us per step")
    for key, count, t in rows[:12]:
        print(f"   {t / 3:9.1f} us/step  x{count // 3:<4d} {key[:90]}")
    del model, step
    torch._dynamo.reset()
    torch.cuda.empty_cache()
