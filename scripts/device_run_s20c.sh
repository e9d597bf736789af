#!/bin/bash
# Issue 11 in one call (~570 s) after the scaled GEMM's K-step changes: (1) the scaled GEMM's GPU tests,
# (2) the scaled tuner at M = 2048 for the K-step formats (block fp8, W4A8), (3) the dynamic configs' kernel
# sweep at M = 1, 16, 2048, (4) the model benchmark's 2048-token prefill for bf16, fp8 row and int8 x int8.
# $OUT: t_scaled.txt, tune.txt, the tuned json, sweep.txt, results.csv, model_log.txt, model_table.txt.
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
T0=$SECONDS
timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu -n 8 --timeout 130 tests/gpu/test_scaled_gpu.py \
  > $OUT/t_scaled.txt 2>&1
echo "== scaled GPU tests ($((SECONDS - T0)) s)"; grep -E "^FAILED|^ERROR|passed|failed" $OUT/t_scaled.txt | cut -c1-200 | tail -8
timeout 50 python3 -m tqk.tune --family scaled --formats fp8dq-block w4a8-int8 w4a8-fp8 --m 2048 > $OUT/tune.txt 2>&1
echo "== tuner ($((SECONDS - T0)) s)"; grep " us  bf16" $OUT/tune.txt | cut -c1-100
cp autotune_results/NVIDIA_*.json $OUT/ 2>/dev/null
M=bf16,tqk-int8dq,tqk-fp8dq-row,tqk-fp8dq-block,tqk-w4a8-int8,tqk-w4a8-fp8,torch-scaled_mm-fp8,tqk-int8,tqk-fp8
B=$((330 - (SECONDS - T0)))
timeout $((B + 15)) python3 -m tqk.bench kernels --methods $M --layers o,gate_up,down --m 1,16,2048 \
  --no-ceilings --reps 10 --warmup 2 --time-budget $B --out /tmp/k > $OUT/sweep.txt 2>&1
cp /tmp/k/results.csv $OUT/ 2>/dev/null
echo "== sweep ($((SECONDS - T0)) s)"; grep -E "^skip|WARNING|sweep took|rror" $OUT/sweep.txt | cut -c1-200 | tail -6
S=$((565 - (SECONDS - T0)))
timeout $S python3 -m tqk.bench model --configs bf16,tqk-fp8dq-row,tqk-int8dq --modes prefill --paired "" \
  --batch-sizes 1 --time-budget $((S - 10)) --out /tmp/model > $OUT/model_log.txt 2>&1
cp /tmp/model/model_table.txt $OUT/ 2>/dev/null
echo "== model prefill ($((SECONDS - T0)) s)"; grep -E "^\[|took|rror" $OUT/model_log.txt | cut -c1-160 | tail -8
cut -c1-200 /tmp/model/model_table.txt 2>/dev/null
python3 scripts/dq_ratio_table.py $OUT/results.csv
