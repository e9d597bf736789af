"""Does inductor's static CUDA launcher for user kernels cut tqk's CPU cost in default mode? One config
per process (argv: bf16 | int4 | int8, then 0 | 1 for TORCHINDUCTOR_STATIC_LAUNCH_USER_DEFINED_TRITON_KERNELS,
which the caller sets): a Llama-3-8B-shaped stack (scripts/compile_check.py's Stack, 2 layers and the
head), torch.compile default mode, wall and CPU ms per step at batch 1.

    TORCHINDUCTOR_STATIC_LAUNCH_USER_DEFINED_TRITON_KERNELS=1 python scripts/static_launch_check.py int4 1
"""
import sys
import time

import torch

import tqk
from compile_check import Stack, timed

name, static = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
model = Stack(2).cuda().bfloat16()
if name != "bf16":
    tqk.quantize_(model, {"int4": lambda: tqk.Int4WeightOnlyConfig(group_size=128),
                          "int8": tqk.Int8WeightOnlyConfig}[name]())
x = torch.randn(1, 4096, device="cuda", dtype=torch.bfloat16)
t0 = time.time()
run = torch.compile(model, fullgraph=True)
with torch.no_grad():
    run(x)
    compile_s = time.time() - t0
    wall, cpu = timed(run, x, steps=200)
print(f"static-launch {name:5s} static={static} wall {wall:.3f} ms cpu {cpu:.3f} ms (compile {compile_s:.0f} s)")
