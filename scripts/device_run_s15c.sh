#!/bin/bash
# Fifteenth session, run 3 (<= 590 s on one H200), the session's last device time: a quick check of the one-buffer
# path on the GPU (eager fp16/bf16 models of every weight-only config, the int4 g128 compiled-model tests), then the
# model benchmark: bf16, tqk int4/int8/fp8 and gemlite int4, reduce-overhead and default, batch 1 and 16, bf16
# interleaved in each tqk config's process. S= the seconds, C= the configs, SKIP=1 no tests (run 4: every default
# config, torchao's too). Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
[ -z "$SKIP" ] && timeout 75 python3 -m pytest -m gpu -n 8 -p no:randomly --tb=short -q -rfE tests/gpu/test_gpu.py tests/gpu/test_compile_gpu.py \
  -k "fp16_and_bf16 or int4-g128 or int4_g128 or llm_shapes" > $OUT/pytest_gpu.txt 2>&1
echo "== pytest: rc $? ($((SECONDS - T0)) s)"; tail -4 $OUT/pytest_gpu.txt | cut -c1-250
grep -E "^E  " $OUT/pytest_gpu.txt | cut -c1-250 | sort | uniq -c | sort -rn | head -5
T1=$SECONDS
S=${S:-588}; C=${C:-bf16,tqk-int4,tqk-int8,tqk-fp8,gemlite-int4}
timeout $((S - SECONDS)) python3 -m tqk.bench model --configs $C \
  --paired ro,default --time-budget $((S - 20 - SECONDS)) --out $OUT/model > $OUT/model_log.txt 2>&1
echo "== model benchmark: rc $? ($((SECONDS - T1)) s)"
grep -vE "Warning|warn|^\s*$" $OUT/model_log.txt | grep -E "^\[|warm|took|skipped" | cut -c1-160 | tail -10
cut -c1-330 $OUT/model/model_table.txt 2>/dev/null
