"""Dev experiment: int4 g128 packed with span 8 vs 16, tuned at M = 1, 16, 2048."""
import torch
import torch.nn.functional as F

import tqk
from tqk.bench.timing import copies_needed, l2_cache_bytes, time_calls
from tqk.layouts import AffineLayout
from tqk.tensor import QuantizedLinearWeight
from tqk.tune import candidates, tune_one


def bench(calls, x):
    return time_calls(calls, x, reps=15, warmup=2, min_replay_s=5e-4).median_s * 1e3


for n, k in ((28672, 4096), (4096, 4096)):
    w = torch.randn(n, k, dtype=torch.bfloat16, device="cuda")
    base = tqk.quantize_weight(w, tqk.Int4WeightOnlyConfig(128))
    codes = base.codes()
    for m in (1, 16, 2048):
        if n == 28672 and m == 16:
            continue
        x = torch.randn(m, k, dtype=torch.bfloat16, device="cuda")
        bf = [w] + [w.clone() for _ in range(copies_needed(w.numel() * 2, l2_cache_bytes()) - 1)]
        t_bf = bench([lambda x, w=w: F.linear(x, w) for w in bf], x)
        del bf
        for span in (8, 16):
            lay = AffineLayout(group_size=128, nbits=4, span=span)
            qw = QuantizedLinearWeight(lay.pack(codes), base.scales, base.zeros, lay, (n, k), torch.bfloat16)
            ws = [qw] + [qw.clone() for _ in range(copies_needed(qw.packed_nbytes, l2_cache_bytes()) - 1)]
            cands = candidates(m)
            if m > 2:
                cands += [c.__class__(**{**c.to_json(), "num_stages": 2}) for c in cands if c.block_m >= 128]
            t, cfg = tune_one(ws, x, cands, bench)
            ref = x.double() @ qw.dequantize().double().T
            out = F.linear(x, qw)
            err = ((out.double() - ref).norm() / ref.norm()).item()
            print(f"{n}x{k} M={m:<5d} span={span:2d} {t*1e3:8.1f} us bf16 {t_bf*1e3:8.1f} x{t_bf/t:5.2f} err={err:.1e} {cfg}",
                  flush=True)
