"""Dev experiment: int4 g128 packed with span 8 vs 16, tuned at M = 1, 16, 2048."""
import torch
import torch.nn.functional as F

import tqk
from tqk.bench.timing import time_calls
from tqk.layouts import AffineLayout
from tqk.tensor import QuantizedLinearWeight
from tqk.kernels.weight_only import launch_weight_only
from tqk.tune import candidates, fastest, weight_copies


def bench(calls, x, settle_s=0.1):
    return time_calls(calls, x, reps=15, warmup=2, min_replay_s=5e-4, settle_s=settle_s).median_s * 1e3


for n, k in ((28672, 4096), (4096, 4096)):
    w = torch.randn(n, k, dtype=torch.bfloat16, device="cuda")
    base = tqk.quantize_weight(w, tqk.Int4WeightOnlyConfig(128))
    codes = base.codes()
    for m in (1, 16, 2048):
        if n == 28672 and m == 16:
            continue
        x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
        t_bf = bench([lambda x, w=w: F.linear(x, w) for w in weight_copies(w, w.numel() * 2)], x)
        for span in (8, 16):
            lay = AffineLayout(group_size=128, nbits=4, span=span)
            qw = QuantizedLinearWeight(lay.pack(codes), base.scales, base.zeros, lay, (n, k), torch.bfloat16)
            ws = weight_copies(qw, qw.packed_nbytes)
            cands = candidates(m)
            if m > 2:
                cands += [c.__class__(**{**c.to_json(), "num_stages": 2}) for c in cands if c.block_m >= 128]
            fmt = lay.weight_format()
            t, cfg = fastest(cands, ws, x, lambda cfg, qw, x, fmt=fmt: launch_weight_only(
                x, qw.packed, qw.scales, qw.zeros, None, fmt, n, k, cfg), bench)
            ref = x.double() @ qw.dequantize().double().T
            out = F.linear(x, qw)
            err = ((out.double() - ref).norm() / ref.norm()).item()
            print(f"{n}x{k} M={m:<5d} span={span:2d} {t*1e3:8.1f} us bf16 {t_bf*1e3:8.1f} x{t_bf/t:5.2f} err={err:.1e} {cfg}",
                  flush=True)
