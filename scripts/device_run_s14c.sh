#!/bin/bash
# Fourteenth session, run 3 (<= 590 s on one H200): the NVFP4-dynamic GPU tests and every config's kernel count
# under compile (after NVFP4's activation scale became one tensor scale, expanded), then the model benchmark as a
# user runs it: bf16, tqk int4/int8/fp8, gemlite, torchao; reduce-overhead and default; bf16 interleaved in each
# tqk config's process (--paired ro,default). Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
timeout 110 python3 -m pytest -m gpu -v -n 8 -p no:randomly --timeout 100 --tb=short -rfEx \
  tests/gpu/test_scaled_gpu.py -k "nvfp4 or at_most_two" > $OUT/pytest_gpu.txt 2>&1
echo "== pytest: rc $? ($((SECONDS - T0)) s)"
grep -E "^(FAILED|ERROR)|[0-9]+ passed|[0-9]+ failed" $OUT/pytest_gpu.txt | cut -c1-250 | tail -12
grep -E "^E  " $OUT/pytest_gpu.txt | cut -c1-250 | sort | uniq -c | sort -rn | head -6
T1=$SECONDS
S=${S:-585}
timeout $((S - SECONDS)) python3 -m tqk.bench model --paired ro,default --time-budget $((S - 25 - SECONDS)) \
  --out $OUT/model > $OUT/model_log.txt 2>&1
echo "== model benchmark: rc $? ($((SECONDS - T1)) s)"
grep -vE "Warning|warn|^\s*$" $OUT/model_log.txt | grep -E "^\[|warm|took|skipped" | cut -c1-160 | tail -14
cut -c1-330 $OUT/model/model_table.txt 2>/dev/null
