#!/bin/bash
# Issue 11 on one H100/H200, ~580 s, for the next session: the tuner's new candidates (late_scale for the K-step
# formats, swap_ab for W4A8, 64-row wgmma tiles for fp8 at small M; perf notes 51-53) have never run.
# (1) the scaled GEMM's GPU tests (test_tuner_options_against_float64_reference forces those options),
# (2) the scaled tuner at M = 2048 for the K-step formats and at
# M = 1, 16 for every 8-bit dynamic format,
# (3) the dynamic configs' kernel sweep at M = 1, 16, 2048 beside _scaled_mm / _int_mm and the weight-only
# configs. $OUT: t_scaled.txt, tune.txt, the tuned json, sweep.txt, results.csv; a ratio table last.
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
T0=$SECONDS
timeout 200 python3 -m pytest -q -p no:cacheprovider -m gpu -n 8 --timeout 180 tests/gpu/test_scaled_gpu.py \
  > $OUT/t_scaled.txt 2>&1
echo "== scaled GPU tests ($((SECONDS - T0)) s)"; grep -E "^FAILED|^ERROR|passed|failed" $OUT/t_scaled.txt | cut -c1-200 | tail -10
timeout 150 python3 -m tqk.tune --family scaled --formats fp8dq-block w4a8-int8 w4a8-fp8 --m 2048 > $OUT/tune.txt 2>&1
timeout $((400 - (SECONDS - T0))) python3 -m tqk.tune --family scaled --formats int8dq fp8dq-row fp8dq-tensor \
  fp8dq-block w4a8-int8 w4a8-fp8 --m 1 16 >> $OUT/tune.txt 2>&1
echo "== tuner ($((SECONDS - T0)) s): $(grep -c ' us  bf16' $OUT/tune.txt) entries"
grep " us  bf16" $OUT/tune.txt | grep "M=2048" | cut -c1-100
cp autotune_results/NVIDIA_*.json $OUT/ 2>/dev/null
M=bf16,tqk-int8dq,tqk-fp8dq-row,tqk-fp8dq-tensor,tqk-fp8dq-block,tqk-w4a8-int8,tqk-w4a8-fp8
M=$M,torch-scaled_mm-fp8,torch-int_mm-int8,tqk-int8,tqk-fp8,tqk-int4
B=$((560 - (SECONDS - T0)))
timeout $((B + 20)) python3 -m tqk.bench kernels --methods $M --layers qkv,o,gate_up,down --m 1,16,2048 \
  --no-ceilings --reps 10 --warmup 2 --time-budget $B --out /tmp/k > $OUT/sweep.txt 2>&1
cp /tmp/k/results.csv $OUT/ 2>/dev/null
echo "== sweep ($((SECONDS - T0)) s)"; grep -E "^skip|WARNING|sweep took|rror" $OUT/sweep.txt | cut -c1-200 | tail -8
python3 scripts/dq_ratio_table.py $OUT/results.csv
