#!/bin/bash
# Seventeenth session, run 1 (<= 590 s on one H200): the GPU tests that session 16's suite run left failed (3) or
# unreached (10), by node id from NODES= (default scripts/gpu_nodes_s17a.txt), one worker each, a per-test timeout
# of TT= s and full tracebacks; then, if S= leaves time, a short kernel sweep (KS= s). Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
mapfile -t NODES < ${NODES:-scripts/gpu_nodes_s17a.txt}
PYTHONUNBUFFERED=1 timeout ${T:-430} python3 -m pytest -m gpu -n ${N:-13} -p no:randomly --timeout ${TT:-420} --tb=long -v -rfE \
  --durations=20 "${NODES[@]}" > $OUT/pytest_gpu.txt 2>&1
echo "== pytest -m gpu (${#NODES[@]} nodes): rc $? ($((SECONDS - T0)) s)"
grep -E "[0-9]+ passed|[0-9]+ failed" $OUT/pytest_gpu.txt | tail -1 | cut -c1-300
grep -E "^(FAILED|ERROR)" $OUT/pytest_gpu.txt | cut -c1-200 | head -20
grep -E "^E  " $OUT/pytest_gpu.txt | cut -c1-250 | sort | uniq -c | sort -rn | head -12
grep -E "^[0-9.]+s call" $OUT/pytest_gpu.txt | head -14 | cut -c1-160
S=${S:-585}; KS=$((S - SECONDS - 15))
if [ $KS -gt 60 ]; then
  T1=$SECONDS
  timeout $((S - SECONDS)) python3 -m tqk.bench kernels --m 1,16,2048 --methods ${KM:-bf16,tqk-int4,tqk-int8,tqk-fp8,gemlite-int4} \
    --time-budget $KS --out $OUT/kernels > $OUT/kernels_log.txt 2>&1
  echo "== kernel sweep: rc $? ($((SECONDS - T1)) s)"; cut -c1-250 $OUT/kernels/table.txt 2>/dev/null | head -40
fi
