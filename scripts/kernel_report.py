"""Dev tool: registers, spills, shared memory and SASS instruction mix of chosen kernel configs.

    python scripts/kernel_report.py OUTDIR     (on a GPU; writes each kernel's ttgir/sass to OUTDIR)
"""
import collections
import os
import re
import sys

import torch

import tqk
from tqk.kernels.tuning import KernelConfig
from tqk.kernels.weight_only import launch_weight_only
from tqk.kernels import weight_only as wo

out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
captured = []
for kern in (wo.weight_only_gemm_kernel, wo.weight_only_gemv_kernel):
    orig = kern.run

    def run(*a, _orig=orig, **k):
        c = _orig(*a, **k)
        captured.append(c)
        return c
    kern.run = run

cases = [
    ("int4_gemm_m2048", tqk.Int4WeightOnlyConfig(128), 2048, KernelConfig("gemm", 128, 256, num_warps=8, num_stages=3)),
    ("int4_gemm_m2048_bs", tqk.Int4WeightOnlyConfig(128), 2048, KernelConfig("gemm", 128, 128, num_warps=8, num_stages=3, block_scale=True)),
    ("int8_gemm_m2048", tqk.Int8WeightOnlyConfig(), 2048, KernelConfig("gemm", 128, 256, num_warps=8, num_stages=3, one_dot=True)),
    ("int8_gemm_m2048_planes", tqk.Int8WeightOnlyConfig(), 2048, KernelConfig("gemm", 128, 256, num_warps=8, num_stages=3)),
    ("int4_gemv_m1", tqk.Int4WeightOnlyConfig(128), 1, KernelConfig("gemv", 128, num_warps=8, num_stages=2)),
    ("int8_gemv_m1", tqk.Int8WeightOnlyConfig(), 1, KernelConfig("gemv", 16, num_warps=1, num_stages=2)),
]
n, k = 4096, 4096
w = torch.randn(n, k, dtype=torch.bfloat16, device="cuda")
for name, cfg, m, kc in cases:
    qw = tqk.quantize_weight(w, cfg)
    fmt = qw.quant_layout.weight_format()
    x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
    captured.clear()
    launch_weight_only(x, qw.packed, qw.scales, qw.zeros, None, fmt, n, k, kc)
    c = captured[-1]
    sass = c.asm.get("sass", "")
    ops = collections.Counter(re.findall(r"^\s+/\*[0-9a-f]+\*/\s+(?:@!?P\d+\s+)?([A-Z0-9]+)", sass, re.M))
    top = ", ".join(f"{op}:{cnt}" for op, cnt in ops.most_common(14))
    print(f"{name:24s} regs={c.n_regs} spills={c.n_spills} smem={c.metadata.shared} | {top}")
    for ext in ("ttgir", "sass"):
        if ext in c.asm:
            open(os.path.join(out_dir, f"{name}.{ext}"), "w").write(c.asm[ext])
