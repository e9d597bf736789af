"""Where a default-mode (no CUDA graphs) decode step's host time goes in the model benchmark's decoder, per
config, at batch 1 then batch 16 in one process (as `python -m tqk.bench model` runs them: a
torch._dynamo.reset() between). Per batch: whether inductor's code is dynamic in the batch (symbols in
it), the tqk launches in it, wall and CPU ms per step, and the top of a cProfile of 100 steps.

    python scripts/default_profile.py tqk-int4 [layers] [option]   # option: static (inductor's launcher)
"""
import re
import sys
import time

import torch
from torch._inductor.utils import run_and_get_code

from profiled import profile_steps, top
from tqk.bench.decoder import ModelArgs, build_model
from tqk.bench.model import STATIC_LAUNCH, apply_config

name = sys.argv[1]
layers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
options = {"options": STATIC_LAUNCH} if "static" in sys.argv[3:] else {}
model = build_model(ModelArgs(n_layers=layers), torch.device("cuda"), seed=0)
apply_config(model, name)

for batch in (1, 16):
    model.setup_caches(batch, 256)
    torch._dynamo.reset()
    run = torch.compile(model, fullgraph=True, **options)
    tok = torch.zeros(batch, 1, dtype=torch.long, device="cuda")
    pos = torch.zeros(1, dtype=torch.long, device="cuda")
    t0 = time.time()
    with torch.no_grad():
        _, codes = run_and_get_code(run, tok, pos)
        code = "\n".join(codes)
        symbols = sorted(set(re.findall(r"\bs\d+\b", code)))
        launches = sum(1 for ln in code.splitlines() if ".run(" in ln and ("weight_only" in ln or "scaled_mm" in ln))
        compile_s = time.time() - t0

        def step():
            run(tok, pos)

        for _ in range(5):
            step()
        torch.cuda.synchronize()
        w0, c0 = time.perf_counter(), time.thread_time()
        for _ in range(200):
            step()
        c1 = time.thread_time()
        torch.cuda.synchronize()
        wall, cpu = (time.perf_counter() - w0) / 200 * 1e3, (c1 - c0) / 200 * 1e3
        stats = profile_steps(step, 100)
    print(f"=== {name} {'static ' if options else ''}batch {batch}: wall {wall:.3f} ms cpu {cpu:.3f} ms per step; "
          f"{launches} tqk launches; symbols {symbols[:6]}; compile {compile_s:.0f} s", flush=True)
    print("\n".join(top(stats, 16, 180).splitlines()[:22]), flush=True)
