#!/bin/bash
# Fifteenth session, run 2 (<= 250 s on one H200): why run 1's eager GPU tests failed on the one-buffer path
# (tracebacks), then replay_pair int4 and the compiled-model GPU tests of int4 g128. Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
timeout 60 python3 -m pytest -m gpu -x -p no:randomly --tb=long -q tests/gpu/test_gpu.py -k "fp16_and_bf16" \
  > $OUT/pytest_eager.txt 2>&1
echo "== eager: rc $? ($((SECONDS - T0)) s)"; grep -E "Error|error|^E " $OUT/pytest_eager.txt | cut -c1-300 | head -20
timeout 80 python3 scripts/replay_pair.py tqk-int4 1 > $OUT/replay_pair_int4.txt 2>&1
echo "== replay_pair: rc $? ($((SECONDS - T0)) s)"; grep -E "^tqk|Error" $OUT/replay_pair_int4.txt | cut -c1-250 | head
timeout $((235 - SECONDS)) python3 -m pytest -m gpu -n 8 -p no:randomly --tb=short -q -rfE tests/gpu/test_compile_gpu.py \
  tests/gpu/test_gpu.py -k "int4-g128 or int4_g128" > $OUT/pytest_compile.txt 2>&1
echo "== compile int4: rc $? ($((SECONDS - T0)) s)"; tail -5 $OUT/pytest_compile.txt | cut -c1-250
