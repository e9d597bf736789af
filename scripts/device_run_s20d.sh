#!/bin/bash
# ~330 s: the scaled GEMM's GPU tests to the end (run 2's 150 s cut them at 259 of 276), then the model
# benchmark's decode under reduce-overhead at batch 1 and 16: the dynamic int8 / fp8 configs beside the
# weight-only ones of the same weight bytes (issue 11's M = 1 and 16 point, at the model level).
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name --format=csv,noheader
T0=$SECONDS
timeout 175 python3 -m pytest -q -p no:cacheprovider -m gpu -n 14 --timeout 160 tests/gpu/test_scaled_gpu.py \
  > $OUT/t_scaled.txt 2>&1
echo "== scaled GPU tests ($((SECONDS - T0)) s)"; grep -E "^FAILED|^ERROR|passed|failed" $OUT/t_scaled.txt | cut -c1-200 | tail -8
S=$((330 - (SECONDS - T0)))
timeout $S python3 -m tqk.bench model --configs bf16,tqk-int8,tqk-int8dq,tqk-fp8,tqk-fp8dq-row --modes ro --paired "" \
  --time-budget $((S - 8)) --out /tmp/model > $OUT/model_log.txt 2>&1
cp /tmp/model/model_table.txt $OUT/ 2>/dev/null
echo "== model decode ($((SECONDS - T0)) s)"; grep -E "^\[|took|rror" $OUT/model_log.txt | cut -c1-160 | tail -8
cut -c1-200 /tmp/model/model_table.txt 2>/dev/null
