#!/bin/bash
# Twelfth session, run 1 (~300 s on one H200): why int8 and fp8 cost more host time per reduce-overhead
# replay than int4 and bf16 (scripts/replay_profile.py: stalled reading, GPU ops per replay, cProfile), and
# where default mode's host time goes for int8 against int4 (scripts/host_profile.py). Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
for c in bf16 tqk-int4 tqk-int8 tqk-fp8; do
  timeout 75 python3 scripts/replay_profile.py $c 1 > $OUT/replay_$c.txt 2>&1
  echo "== $c ($((SECONDS - T0)) s)"; grep -E "ms'|GPU ops|Error" $OUT/replay_$c.txt | cut -c1-200 | tail -4
done
for c in int4 int8; do
  timeout 45 python3 scripts/host_profile.py $c > $OUT/prof_$c.txt 2>&1
  echo "== host $c ($((SECONDS - T0)) s)"; grep -E "ms|Error" $OUT/prof_$c.txt | grep -v "^ " | cut -c1-200 | tail -6
done
