#!/bin/bash
# Sixteenth session, run 1 (<= 590 s on one H200): the whole GPU suite (`pytest -m gpu`) on the one-buffer
# QuantizedLinear, 14 workers, the slowest tests listed; -v and unbuffered, so a suite cut by timeout still shows
# what passed (run 1's -q dots were lost in the buffer). T= the suite's seconds, K= a -k filter. Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
PYTHONUNBUFFERED=1 timeout ${T:-560} python3 -m pytest -m gpu -n ${N:-14} -p no:randomly --timeout 150 --tb=short -v -rfE --durations=15 tests ${K:+-k "$K"} \
  > $OUT/pytest_gpu.txt 2>&1
echo "== pytest -m gpu: rc $? ($((SECONDS - T0)) s)"
echo "PASSED $(grep -c " PASSED " $OUT/pytest_gpu.txt) FAILED $(grep -c " FAILED " $OUT/pytest_gpu.txt) ERROR $(grep -c " ERROR " $OUT/pytest_gpu.txt) SKIPPED $(grep -c " SKIPPED " $OUT/pytest_gpu.txt)"
grep -E "[0-9]+ passed|[0-9]+ failed" $OUT/pytest_gpu.txt | tail -1 | cut -c1-300
grep -E "^(FAILED|ERROR)" $OUT/pytest_gpu.txt | cut -c1-200 | head -20
grep -E "^E  " $OUT/pytest_gpu.txt | cut -c1-250 | sort | uniq -c | sort -rn | head -8
