"""Where a compiled step's host time goes, per config: the launch line inductor writes for tqk's kernel,
wall and CPU ms per step in default mode and under reduce-overhead, and the top of a cProfile of 200
steps in each. One config per process (argv: bf16 | int4 | int8 | fp8); set
TORCHINDUCTOR_STATIC_LAUNCH_USER_DEFINED_TRITON_KERNELS=1 in the environment to try inductor's static
launcher for user kernels, TQK_MODES= the compile modes (default "default,reduce-overhead"), or TQK_STATIC_OPTION=1 to ask for it through torch.compile(options=...) in default mode.

    python scripts/host_profile.py int4
"""
import cProfile
import io
import os
import pstats
import sys
import time

import torch
from torch._inductor.utils import run_and_get_code

import tqk
from compile_check import Stack, timed

name = sys.argv[1]
static = os.environ.get("TORCHINDUCTOR_STATIC_LAUNCH_USER_DEFINED_TRITON_KERNELS", "0")
static += "+option" if os.environ.get("TQK_STATIC_OPTION") == "1" else ""
torch.manual_seed(0)
model = Stack(2).cuda().bfloat16()
configs = {"int4": lambda: tqk.Int4WeightOnlyConfig(group_size=128), "int8": tqk.Int8WeightOnlyConfig,
           "fp8": tqk.Float8WeightOnlyConfig}
if name != "bf16":
    tqk.quantize_(model, configs[name]())
x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)


def profile(run, label, rows):
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(200):
        run(x)
    prof.disable()
    torch.cuda.synchronize()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(rows)
    keep = [ln for ln in out.getvalue().splitlines() if ln.strip() and not ln.startswith(("   Ordered", "   List"))]
    print(f"--- {name} static={static} {label}: cProfile, 200 steps")
    print("\n".join(ln[:170] for ln in keep[:rows + 4]))


with torch.no_grad():
    for mode in os.environ.get("TQK_MODES", "default,reduce-overhead").split(","):
        torch._dynamo.reset()
        if mode == "default" and os.environ.get("TQK_STATIC_OPTION") == "1":  # the static launcher, per compile
            run = torch.compile(model, fullgraph=True, options={"static_launch_user_defined_triton_kernels": True})
        else:
            run = torch.compile(model, fullgraph=True, mode=None if mode == "default" else mode)
        t0 = time.time()
        _, codes = run_and_get_code(run, x)
        if mode != "reduce-overhead":
            lines = "\n".join(codes).splitlines()
            hits = [i for i, ln in enumerate(lines) if "weight_only" in ln and ".run(" in ln]
            for i in hits[:1]:
                print(f"--- {name} launch line in inductor's code:\n" + "\n".join(l[:300] for l in lines[i - 2:i + 2]))
            print(f"--- {name} {mode}: {len(hits)} tqk launches, {sum('extern_kernels.mm' in l for l in lines)} mm calls, "
                  f"{sum('.run(' in l for l in lines)} kernel launches in all")
        wall, cpu = timed(run, x, steps=300)
        print(f"static-launch {name:5s} static={static} {mode:15s} wall {wall:.3f} ms cpu {cpu:.3f} ms "
              f"(compile {time.time() - t0:.0f} s)", flush=True)
        profile(run, mode, 10 if mode == "reduce-overhead" else 14)
