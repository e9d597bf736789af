#!/bin/bash
# Fifteenth session, run 1 (<= 590 s on one H200): after a QuantizedLinear became one int32 buffer and one
# identity-guarded spec (tqk/layouts/storage.py, tqk/linear.py): scripts/replay_pair.py for int4 and int8 at batch 1
# (a replay's host time against bf16's in one process), then the whole GPU suite `pytest -m gpu -n 8` in what is
# left. Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
for c in tqk-int4 tqk-int8; do
  timeout 110 python3 scripts/replay_pair.py $c 1 > $OUT/replay_pair_$c.txt 2>&1
  echo "== replay_pair $c: rc $? ($((SECONDS - T0)) s)"; grep -E "^tqk" $OUT/replay_pair_$c.txt | cut -c1-200
done
T1=$SECONDS
timeout $((580 - SECONDS)) python3 -m pytest -m gpu -v -n 8 -p no:randomly --timeout 150 --tb=short -rfEx \
  --durations=10 tests > $OUT/pytest_gpu.txt 2>&1
echo "== pytest -m gpu: rc $? ($((SECONDS - T1)) s)"
echo "PASSED $(grep -c ' PASSED ' $OUT/pytest_gpu.txt) FAILED $(grep -c ' FAILED ' $OUT/pytest_gpu.txt) ERROR $(grep -c ' ERROR ' $OUT/pytest_gpu.txt)"
grep -E "^(FAILED|ERROR)|[0-9]+ passed|[0-9]+ failed" $OUT/pytest_gpu.txt | cut -c1-250 | tail -20
grep -E "^E  " $OUT/pytest_gpu.txt | cut -c1-250 | sort | uniq -c | sort -rn | head -8
