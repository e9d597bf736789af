"""Quick CUDA correctness check of every format and kernel path (dev tool; tests/gpu is the suite)."""
import torch, tqk
from tqk.kernels.tuning import KernelConfig
from tqk.kernels.weight_only import launch_weight_only
from tqk.kernels import reference

torch.manual_seed(0)
cfgs = {"int4_g32": tqk.Int4WeightOnlyConfig(32), "int4_g128": tqk.Int4WeightOnlyConfig(128),
        "int8": tqk.Int8WeightOnlyConfig(), "int8_g64": tqk.Int8WeightOnlyConfig(group_size=64),
        "fp8": tqk.Float8WeightOnlyConfig(), "e5m2": tqk.Float8WeightOnlyConfig(torch.float8_e5m2)}
paths = [KernelConfig("gemv", 32, num_warps=4, num_stages=3), KernelConfig("gemm", 64, 16, split_k=4),
         KernelConfig("gemm", 128, 128, num_warps=8, num_stages=3), KernelConfig("gemm", 128, 64, num_warps=4)]
worst = 99
for name, cfg in cfgs.items():
    for dtype in (torch.bfloat16, torch.float16):
        n, k = 1000, 4096 + 128
        w = torch.randn(n, k, dtype=dtype, device="cuda")
        qw = tqk.quantize_weight(w, cfg)
        fmt = qw.quant_layout.weight_format()
        for m in (1, 5, 300):
            x = torch.randn(m, k, dtype=dtype, device="cuda")
            b = torch.randn(n, dtype=dtype, device="cuda")
            ref = reference.linear(x, qw.packed, qw.scales, qw.zeros, b, fmt, k)
            for p in paths:
                if p.kernel == "gemv" and m > 8:
                    continue
                out = launch_weight_only(x, qw.packed, qw.scales, qw.zeros, b, fmt, n, k, p)
                err = ((out.double() - ref).norm() / ref.norm()).item()
                worst = min(worst, -20 * torch.log10(torch.tensor(err)).item())
                if err > 1e-2 or not torch.isfinite(out).all():
                    print("FAIL", name, dtype, m, p, err)
            y = torch.nn.functional.linear(x, qw, b)
            assert ((y.double() - ref).norm() / ref.norm()) < 1e-2, (name, m)
print(f"gpu smoke done: worst kernel-vs-reference SQNR {worst:.1f} dB")
