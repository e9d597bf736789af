#!/bin/bash
# Thirteenth session, run 1 (<= 590 s on one H200): default mode's host cost in the model benchmark's decoder
# (2 layers + head) for bf16, tqk int4, int8 at batch 1 then 16 (scripts/default_profile.py, the int4 batch-16
# default-mode gap of s12 run 2), then the GPU suite `pytest -m gpu -n 8` in what is left. Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
for c in bf16 tqk-int4 tqk-int8; do
  timeout 150 python3 scripts/default_profile.py $c 2 > $OUT/prof_$c.txt 2>&1
done
timeout 100 python3 scripts/default_profile.py tqk-int4 2 static > $OUT/prof_tqk-int4_static.txt 2>&1
echo "== profiles ($((SECONDS - T0)) s)"
T1=$SECONDS
timeout $((575 - SECONDS)) python3 -m pytest -m gpu -v -n 8 -p no:randomly --timeout 150 -rfEx --durations=12 tests \
  > $OUT/pytest_gpu.txt 2>&1
echo "== pytest -m gpu: rc $? ($((SECONDS - T1)) s)"
echo "PASSED $(grep -c ' PASSED ' $OUT/pytest_gpu.txt) FAILED $(grep -c ' FAILED ' $OUT/pytest_gpu.txt) ERROR $(grep -c ' ERROR ' $OUT/pytest_gpu.txt)"
grep -E " (FAILED|ERROR|XPASS) |^(FAILED|ERROR) |[0-9]+ passed" $OUT/pytest_gpu.txt | cut -c1-200 | tail -25
grep -h "^===" $OUT/prof_*.txt | cut -c1-200
