#!/bin/bash
# Eleventh session, run 1 (~480 s on one H200): (1) where default mode's host time goes (scripts/host_profile.py,
# with and without inductor's static launcher for user kernels), (2) the GPU tests the codebook/MX merge touched:
# tests/gpu/test_gpu.py (every layout's kernels against the reference, gemlite agreement) and the compiled-model
# tests of every format family. Files in $OUT: prof_<config>_<static>.txt, t_gpu.txt, t_compile.txt.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
T0=$SECONDS
for spec in "bf16 0" "int4 0" "int8 0" "fp8 0" "int4 1" "fp8 1"; do
  set -- $spec
  TORCHINDUCTOR_STATIC_LAUNCH_USER_DEFINED_TRITON_KERNELS=$2 timeout 60 python3 scripts/host_profile.py $1 \
    > $OUT/prof_$1_$2.txt 2>&1
  grep -E "^static-launch|Error" $OUT/prof_$1_$2.txt | tail -3
done
echo "== profiles ($((SECONDS - T0)) s)"
timeout 130 python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu/test_compile_gpu.py \
  -k "every_format_family or split_k_gemv or one_kernel or int4-g128" > $OUT/t_compile.txt 2>&1
echo "== compile tests ($((SECONDS - T0)) s)"; grep -E "^FAILED|^ERROR|passed|failed" $OUT/t_compile.txt | cut -c1-240 | tail -14
B=$((440 - (SECONDS - T0)))
timeout $B python3 -m pytest -q -p no:cacheprovider -m gpu tests/gpu/test_gpu.py > $OUT/t_gpu.txt 2>&1
echo "== gpu tests ($((SECONDS - T0)) s, limit $B s)"; grep -E "^FAILED|^ERROR|passed|failed" $OUT/t_gpu.txt | cut -c1-240 | tail -14
