#!/bin/bash
# Fourteenth session, run 2 (<= 420 s on one H200): the GPU tests that run 1 failed, after their fixes (the test
# helpers' CPU tables and tensor scale, NVFP4's weight tensor scale in the GEMM's epilogue, NVFP4's compiled-vs-eager
# comparison by norm), every NVFP4-dynamic GPU test; then scripts/replay_pair.py: int4's replay host time against
# bf16's in one process, with the cProfile of each. Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
G=tests/gpu/test_gpu.py
timeout 230 python3 -m pytest -m gpu -v -n 8 -p no:randomly --timeout 200 --tb=short -rfEx \
  "$G::test_kernels_match_reference[CodebookLayout(group_size=32, nbits=8, vector_size=1)]" \
  "$G::test_kernels_match_reference[CodebookLayout(group_size=64, nbits=8, vector_size=2)]" \
  "$G::test_kernels_match_reference[NVFP4Layout(group_size=16)]" \
  "$G::test_kernels_exact_on_exact_data[CodebookLayout(group_size=32, nbits=8, vector_size=1)]" \
  tests/gpu/test_scaled_gpu.py -k "nvfp4 or Codebook or NVFP4" > $OUT/pytest_gpu.txt 2>&1
echo "== pytest: rc $? ($((SECONDS - T0)) s)"
grep -E "^(FAILED|ERROR)|[0-9]+ passed|[0-9]+ failed" $OUT/pytest_gpu.txt | cut -c1-250 | tail -20
grep -E "^E  " $OUT/pytest_gpu.txt | cut -c1-250 | sort | uniq -c | sort -rn | head -8
T1=$SECONDS
timeout 170 python3 scripts/replay_pair.py tqk-int4 1 > $OUT/replay_pair_int4.txt 2>&1
echo "== replay_pair: rc $? ($((SECONDS - T1)) s)"
grep -E "^tqk|^==|^ +[0-9]" $OUT/replay_pair_int4.txt | cut -c1-200 | head -60
