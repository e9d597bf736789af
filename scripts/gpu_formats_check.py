"""Quick CUDA check of every weight-only format family on each kernel path, against the float64 reference of
dequantize(W) @ x + b (dev tool, ~1 min; tests/gpu is the suite). Prints one line per family, FAIL lines first.

    python scripts/gpu_formats_check.py
"""
import time

import torch

import tqk
from tqk.kernels import reference
from tqk.kernels.tuning import KernelConfig
from tqk.kernels.weight_only import launch_weight_only

FAMILIES = {
    "int4_g128": tqk.Int4WeightOnlyConfig(group_size=128), "int4_g32": tqk.Int4WeightOnlyConfig(group_size=32),
    "int8": tqk.Int8WeightOnlyConfig(), "fp8": tqk.Float8WeightOnlyConfig(),
    "uint3_g128": tqk.UIntxWeightOnlyConfig(bit_width=3, group_size=128),
    "uint2_g64": tqk.UIntxWeightOnlyConfig(bit_width=2, group_size=64),
    "uint5_g32": tqk.UIntxWeightOnlyConfig(bit_width=5, group_size=32),
    "fp6_e3m2": tqk.FPXWeightOnlyConfig(ebits=3, mbits=2), "fp6_e2m3": tqk.FPXWeightOnlyConfig(ebits=2, mbits=3),
    "fp5_e2m2": tqk.FPXWeightOnlyConfig(ebits=2, mbits=2), "fp4_e2m1": tqk.FPXWeightOnlyConfig(ebits=2, mbits=1),
    "mxfp4": tqk.MXWeightOnlyConfig(weight_dtype=torch.float4_e2m1fn_x2),
    "mxfp6_e3m2": tqk.MXWeightOnlyConfig(weight_dtype="fp6_e3m2"),
    "mxfp6_e2m3": tqk.MXWeightOnlyConfig(weight_dtype="fp6_e2m3"),
    "mxfp8": tqk.MXWeightOnlyConfig(weight_dtype=torch.float8_e4m3fn), "nvfp4": tqk.NVFP4WeightOnlyConfig(),
    "codebook4": tqk.CodebookWeightOnlyConfig(dtype=torch.uint4),
}
PATHS = [KernelConfig("gemv", 32, num_warps=4, num_stages=2), KernelConfig("gemv", 64, num_warps=2, split_k=4),
         KernelConfig("gemv", 4, num_warps=2, trip_blocks=8, wide=True),
         KernelConfig("gemm", 64, 16, split_k=4), KernelConfig("gemm", 64, 16, split_k=2, one_dot=True),
         KernelConfig("gemm", 128, 128, num_warps=8, num_stages=3)]

DEV = "cuda" if torch.cuda.is_available() else "cpu"  # the CPU: TRITON_INTERPRET=1, small shapes
N, K, MS = (1000, 4096, (1, 3, 300)) if DEV == "cuda" else (48, 256, (1, 20))
if DEV == "cpu":
    PATHS = [p for p in PATHS if p.block_n <= 64 and p.block_m <= 16] + [KernelConfig("gemm", 32, 32)]
torch.manual_seed(0)
t0 = time.time()
lines = []
for name, cfg in FAMILIES.items():
    try:
        n, k = N, K
        w = torch.randn(n, k, dtype=torch.bfloat16, device=DEV)
        w[:, :32] *= 50  # an outlier block
        qw = tqk.quantize_weight(w, cfg)
        fmt = qw.quant_layout.weight_format()
        worst, bad = 1e9, []
        for m in MS:
            x = torch.randn(m, k, dtype=torch.bfloat16, device=DEV)
            b = torch.randn(n, dtype=torch.bfloat16, device=DEV)
            ref = reference.linear(x, qw.packed, qw.scales, qw.zeros, b, fmt, k, qw.table)
            for p in PATHS:
                if p.kernel == "gemv" and m > 8:
                    continue
                out = launch_weight_only(x, qw.packed, qw.scales, qw.zeros, b, fmt, n, k, p, table=qw.table)
                err = ((out.double() - ref).norm() / ref.norm()).item()
                worst = min(worst, -20 * torch.log10(torch.tensor(max(err, 1e-12))).item())
                if not err < 1e-2:
                    bad.append(f"m={m} {p.kernel} bn={p.block_n} sk={p.split_k} wide={p.wide} one_dot={p.one_dot}: "
                               f"rel {err:.2e}")
        lines.append((bool(bad), f"{'FAIL' if bad else 'ok  '} {name:11s} worst {worst:5.1f} dB " + "; ".join(bad[:3])))
    except Exception as e:  # noqa: BLE001 - a check reports and goes on
        lines.append((True, f"FAIL {name:11s} {type(e).__name__}: {str(e)[:200]}"))
for _, line in sorted(lines, key=lambda t: not t[0]):
    print(line)
print(f"formats check: {sum(f for f, _ in lines)} of {len(lines)} families failed, {time.time() - t0:.0f} s")
