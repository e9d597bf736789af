"""A reduce-overhead replay's host time, a tqk config against bf16 in one process (the model benchmark's
decoder, 4 Llama-3-8B layers and the head): their 64-step loops interleaved (timing.interleaved), then a
cProfile of 200 replays of each, side by side: what the config's replay runs that bf16's does not.
The model benchmark read the config's CPU per replay at 1.36-1.97x bf16's in the same process (s14 run 1).

    python scripts/replay_pair.py tqk-int4 1
"""
import sys

import torch

from tqk.bench import model as mb
from tqk.bench import timing
from profiled import profile_steps, top
from tqk.bench.decoder import ModelArgs, build_model

name, batch = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1
dev = torch.device("cuda")
p = dict(device="cuda", seed=0, acc_len=4, gen=64, repeats=1, prefill=0, modes=["ro"])
loops = {}
for i, config in enumerate((name, "bf16")):
    model = build_model(ModelArgs.llama3_8b(n_layers=4), dev, seed=0)
    mb.apply_config(model, config)
    model.setup_caches(batch, 4 + 64 + 2)
    step, rewind, _ = mb._decoder(model, "ro", mb.Row(config, batch), p, accuracy=False, beside=i > 0)
    for _ in range(64):  # untimed; each loop rewinds 64 first
        step()
    loops[config] = (step, rewind)
got = timing.interleaved(loops, 64, dev, rounds=8)
ratio = timing.median_ratio(got[name]["cpus"], got["bf16"]["cpus"])
print(f"{name} b{batch}: cpu per replay {got[name]['cpu'] * 1e3:.3f} ms, bf16 {got['bf16']['cpu'] * 1e3:.3f}, "
      f"ratio {ratio:.2f}; wall {got[name]['wall'] * 1e3:.3f} / {got['bf16']['wall'] * 1e3:.3f}")
for config, (step, rewind) in loops.items():
    st = profile_steps(step, 64, rounds=3, before=rewind)
    calls = sum(v[1] for v in st.stats.values())
    print(f"== {config}: {calls / 192:.0f} Python calls per replay, {st.total_tt / 192 * 1e3:.3f} ms profiled")
    print(top(st, 22))
