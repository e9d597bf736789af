#!/bin/bash
# Twelfth session, run 2 (<= 230 s on one H200): the GPU suite, `pytest -m gpu`, in 8 processes on the one GPU
# (pytest-xdist is on the image), each test at most 120 s; then a short table of outcomes. Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
timeout ${PYTEST_S:-210} python3 -m pytest -m gpu -v -n 8 -p no:randomly --timeout 120 -rfEx --durations=12 tests \
  > $OUT/pytest_gpu.txt 2>&1
echo "== pytest -m gpu: rc $? ($((SECONDS - T0)) s)"
# -v: a line per finished test, so a run cut by the timeout still says what passed and failed
echo "PASSED $(grep -c ' PASSED ' $OUT/pytest_gpu.txt) FAILED $(grep -c ' FAILED ' $OUT/pytest_gpu.txt) ERROR $(grep -c ' ERROR ' $OUT/pytest_gpu.txt)"
grep -E " (FAILED|ERROR|XPASS) |^(FAILED|ERROR) |[0-9]+ passed|slowest|^[0-9.]+s " $OUT/pytest_gpu.txt | cut -c1-230 | tail -40
