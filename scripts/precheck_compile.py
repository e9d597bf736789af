"""GPU smoke of the compiled-model path for every config family: a 2-layer model, quantize_,
torch.compile (default and reduce-overhead, fullgraph, no eager call first), against eager.
The activation-quantized configs log their recompiles (TORCH_LOGS=recompiles) to stderr.

    python scripts/precheck_compile.py [int4,int8,...]
"""
import sys
import time

import torch
from torch import nn

import tqk

CONFIGS = {
    "int4": lambda: tqk.Int4WeightOnlyConfig(group_size=128), "int8": tqk.Int8WeightOnlyConfig,
    "fp8": tqk.Float8WeightOnlyConfig, "uint3": lambda: tqk.UIntxWeightOnlyConfig(bit_width=3, group_size=128),
    "fp6": lambda: tqk.FPXWeightOnlyConfig(ebits=3, mbits=2),
    "codebook4": lambda: tqk.CodebookWeightOnlyConfig(dtype=torch.uint4),
    "mxfp4": lambda: tqk.MXWeightOnlyConfig(weight_dtype=torch.float4_e2m1fn_x2), "nvfp4": tqk.NVFP4WeightOnlyConfig,
    "int8dq": tqk.Int8DynamicActivationInt8WeightConfig,
    "fp8dq-row": lambda: tqk.Float8DynamicActivationFloat8WeightConfig(granularity=tqk.PerRow()),
}

t0 = time.time()
only = sys.argv[1].split(",") if len(sys.argv) > 1 else list(CONFIGS)  # e.g. int4,mxfp4
for name, make in ((n, CONFIGS[n]) for n in only):
    if name == "int8dq":
        torch._logging.set_logs(recompiles=True)
    for mode in (None, "reduce-overhead"):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(512, 1024, bias=False), nn.Linear(1024, 512, bias=False)).cuda().bfloat16()
        tqk.quantize_(m, make())
        x = torch.randn(4, 512, device="cuda", dtype=torch.bfloat16)
        try:
            c = torch.compile(m, mode=mode, fullgraph=True)
            with torch.no_grad():
                c(x)
                y = c(x).clone()
                ref = m(x)
            err = ((y.float() - ref.float()).norm() / ref.float().norm()).item()
            print(f"precheck {name:9s} {str(mode):16s} ok rel={err:.1e}", flush=True)
        except Exception as e:  # noqa: BLE001 - a smoke test reports and goes on
            print(f"precheck {name:9s} {str(mode):16s} FAIL {type(e).__name__}: {str(e)[:300]}", flush=True)
        torch._dynamo.reset()
print(f"precheck took {time.time() - t0:.0f} s")
