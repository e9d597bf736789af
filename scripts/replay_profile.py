"""Where a reduce-overhead replay's host time goes in the model benchmark's decoder (4 Llama-3-8B layers and
the head, static KV cache), per config: the stalled reading (steps issued while the GPU sleeps: host work
only) and the top of a cProfile of 200 replays. One config per process (argv: bf16 | tqk-int4 | tqk-int8 |
tqk-fp8 ...; batch as the second argument, default 1). The model benchmark read fp8 and int8 at up to 1.8x
bf16's stalled host time per replay where int4 read below it (docs/bench/h200-2026-12-02-s11, run 3).

    python scripts/replay_profile.py tqk-fp8 1
"""
import sys

import torch

from profiled import profile_steps, top
from tqk.bench import model as mb
from tqk.bench import timing
from tqk.bench.decoder import ModelArgs, build_model

name, batch = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
dev = torch.device("cuda")
model = build_model(ModelArgs.llama3_8b(n_layers=4), dev, seed=0)
print(name, mb.apply_config(model, name))
p = dict(device="cuda", seed=0, acc_len=4, gen=64, repeats=1, prefill=0, modes=["ro"])
model.setup_caches(batch, 4 + 3 * 200 + 64)
compiled, prompt, pos = mb._compiled_and_prompt(model, "ro", batch, p)
with torch.no_grad():
    for tokens in prompt:
        out = compiled(tokens, pos)[:, -1]
        pos += 1
    tok = out.argmax(-1, keepdim=True)

    def step():
        global tok
        tok = compiled(tok, pos)[:, -1].argmax(-1, keepdim=True)
        pos.add_(1)

    for _ in range(3):
        print(name, batch, {k: f"{v * 1e3:.3f} ms" for k, v in timing.host_readings(step, 64, dev).items()})
    # Kernels per replay (CUPTI sees the graph's kernels): a heavier graph costs the host more per launch.
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as kp:
        for _ in range(10):
            step()
        torch.cuda.synchronize()
    kernels = [e for e in kp.key_averages() if e.device_type == torch.autograd.DeviceType.CUDA]
    print(name, batch, "GPU ops per replay:", sum(e.count for e in kernels) / 10)
    for e in sorted(kernels, key=lambda e: -e.count)[:12]:
        print(f"  {e.count / 10:6.1f}  {e.key[:110]}")
    stats = profile_steps(step, 200)
print(top(stats, 16, 170)[:6000])
