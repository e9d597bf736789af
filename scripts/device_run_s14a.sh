#!/bin/bash
# Fourteenth session, run 1 (<= 590 s on one H200): the GPU tests that failed in s13 run 1 (NVFP4 dynamic
# under compile, two layouts' property tests) and the unreached forced block-scaled paths, by node id with
# tracebacks; then the model benchmark, tqk against bf16 with bf16 interleaved in each config's process
# (--paired ro,default), no peers (run 2 has them). Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
G=tests/gpu/test_gpu.py; S=tests/gpu/test_scaled_gpu.py
timeout 200 python3 -m pytest -m gpu -v -n 8 -p no:randomly --timeout 170 --tb=short -rfEx \
  "$G::test_kernels_match_reference[CodebookLayout(group_size=32, nbits=8, vector_size=1)]" \
  "$G::test_kernels_match_reference[NVFP4Layout(group_size=16)]" \
  "$G::test_kernels_exact_on_exact_data[NVFP4Layout(group_size=16)]" \
  "$S::test_at_most_two_kernels_per_linear_under_compile[nvfp4-dynamic-1]" \
  "$S::test_mlp_every_mode_first_call[nvfp4-dynamic-default]" \
  "$S::test_mlp_every_mode_first_call[nvfp4-dynamic-reduce-overhead]" \
  "$S::test_forced_activation_paths_against_float64_reference[nvfp4-dynamic-1]" \
  "$S::test_forced_activation_paths_against_float64_reference[mxfp8-rceil-1]" \
  "$S::test_forced_activation_paths_against_float64_reference[mxfp4-floor-2048]" \
  > $OUT/pytest_gpu.txt 2>&1
echo "== pytest: rc $? ($((SECONDS - T0)) s)"
grep -E "^(FAILED|ERROR)|[0-9]+ passed|[0-9]+ failed| PASSED | FAILED " $OUT/pytest_gpu.txt | cut -c1-250 | tail -20
grep -E "^E  |Error" $OUT/pytest_gpu.txt | cut -c1-250 | sort | uniq -c | sort -rn | head -14
T1=$SECONDS
timeout 350 python3 -m tqk.bench model --configs bf16,tqk-int4,tqk-int8,tqk-fp8 --paired ro,default \
  --time-budget 335 --out $OUT/model > $OUT/model_log.txt 2>&1
echo "== model benchmark: rc $? ($((SECONDS - T1)) s)"
grep -vE "Warning|warn|^\s*$" $OUT/model_log.txt | grep -E "^\[|warm|took|Error" | cut -c1-160 | tail -10
cut -c1-300 $OUT/model/model_table.txt 2>/dev/null
