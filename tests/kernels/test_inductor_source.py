"""torch.compile launches tqk's kernels from a module inductor writes: it copies each user kernel and
the helpers it calls, by name, and compiles that copy in a subprocess. A helper that reaches a name
the copy lacks (a module attribute such as `packing.f`, an imported module such as libdevice) runs
under the interpreter and compiles from tqk's own module, and fails only there: every tqk config's
compiled model did (the codebook and MX branches' kernels also failed to compile at all), on the H200 (docs/bench/h200-2026-12-02-s10). This compiles inductor's copy of
each kernel family's paths for sm_90, offline, with no GPU (scripts/offline_sass.py, INDUCTOR=1)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# one case per decode and load path: dense slices, the biased GEMV, WIDE tiles, small floats, the GEMM,
# the scaled GEMM's int8 and e4m3 prologues (the quantize helpers) with split-K, a codebook's table and
# vector codes (a lookup per feature), MX / NVFP4 byte scales, and the scaled GEMM's MXFP4 (e2m1 moved into
# e4m3) and NVFP4 (float16 values) weights; and the weight-only kernels on a QuantizedLinear's one buffer (_stored)
CASES = ["uint3_g128_gemv_split", "int4_g128_gemv_biased", "int8_row_gemv_wide", "fp6_e3m2_row_gemv",
         "uint7_g128_gemm_split", "fp4_e2m1_g32_gemm", "scaled0_int8xint8_row_row_16x64_prologue_split4",
         "scaled5_e4m3xe4m3_block_block128_16x64_prologue", "scaled8_e4m3xint4_row_group256_16x64",
         "lut8_g32_gemv_split", "lut4_row_gemm_split", "lut8v2_row_gemv_split", "lut4v4_g64_gemm_split",
         "mxfp4_gemv_split", "nvfp4_gemm_split", "scaled10_e4m3xe2m1_e8m0_e8m032_16x64_split4",
         "scaled11_f16xe2m1_row_e4m316_128x128", "int4_g128_gemv_biased_stored", "uint8_row_gemv_stored",
         "fp8_row_gemv_stored", "uint3_g128_gemm_split_stored",
         "nvfp4_gemv_split_stored", "lut8_g32_gemv_split_stored"]


def test_inductor_copies_of_the_kernels_compile():
    env = dict(os.environ, TRITON_INTERPRET="0", INDUCTOR="1", ONLY=",".join(CASES))
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "offline_sass.py")], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    built = {line.split()[0] for line in run.stdout.splitlines() if " sass " in line}
    assert set(CASES) <= built, f"not built: {sorted(set(CASES) - built)}"
