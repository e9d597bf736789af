#!/bin/bash
# The tenth session's last H200 run (~440 s): the compiled-model smoke of every config family
# (scripts/precheck_compile.py, int8dq's recompile reasons), then issue 12's and 13's formats in the
# kernel sweep at gate_up M = 1 and 2048, torchao's codebook path on o, and issue 11's scaled
# configs at M = 2048. Needs the wheels in .whl (carry it).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>&1 | tail -1
export PYTHONPATH=$PWD:/tmp/site
T0=$SECONDS
timeout 80 python3 scripts/precheck_compile.py > $OUT/precheck.txt 2>&1
grep precheck $OUT/precheck.txt | cut -c1-240
grep -A3 -i "recompil" $OUT/precheck.txt | grep -v "^--" | cut -c1-240 | head -12
W=bf16,tqk-int4,tqk-uint3,tqk-uint2,tqk-fp6,tqk-fp5,tqk-codebook4,tqk-codebook8,tqk-mxfp4,tqk-mxfp8,tqk-nvfp4
timeout 200 python3 -m tqk.bench kernels --methods $W --layers gate_up --m 1,2048 --no-ceilings --reps 10 \
  --warmup 2 --time-budget 170 --out /tmp/k1 > $OUT/sweep_formats.txt 2>&1
echo "== formats sweep ($((SECONDS - T0)) s)"; cat /tmp/k1/table.txt 2>/dev/null | head -40
cp /tmp/k1/results.csv $OUT/results_formats.csv 2>/dev/null
timeout 60 python3 -m tqk.bench kernels --methods bf16,tqk-codebook4,torchao-codebook4 --layers o --m 1 \
  --no-ceilings --reps 10 --warmup 2 --out /tmp/k2 > $OUT/sweep_codebook_peer.txt 2>&1
echo "== codebook peer ($((SECONDS - T0)) s)"; cat /tmp/k2/table.txt 2>/dev/null | head -12
B=$((370 - (SECONDS - T0)))
timeout $((B + 20)) python3 -m tqk.bench kernels --methods bf16,tqk-int8dq,tqk-fp8dq-row,tqk-fp8dq-tensor,tqk-fp8dq-block,torch-scaled_mm-fp8 \
  --layers o,gate_up,down --m 2048 --no-ceilings --reps 10 --warmup 2 --time-budget $B --out /tmp/k3 > $OUT/sweep_scaled.txt 2>&1
echo "== scaled sweep ($((SECONDS - T0)) s)"; cat /tmp/k3/table.txt 2>/dev/null | head -30
cp /tmp/k3/results.csv $OUT/results_scaled.csv 2>/dev/null
