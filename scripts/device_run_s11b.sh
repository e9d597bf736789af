#!/bin/bash
# Eleventh session, run 2 (~420 s on one H200), after the float16 small-float decode, per-group sums and
# None arguments: (1) every format family on each kernel path against float64 (scripts/gpu_formats_check.py),
# (2) the compiled 2-layer model of int4, int8, fp8, mxfp4, nvfp4, codebook4 (default and reduce-overhead),
# (3) default-mode host time with the static launcher asked for through torch.compile(options=...),
# (4) the kernel sweep at M = 1 on gate_up for the new formats. Files in $OUT.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
T0=$SECONDS
timeout 170 python3 scripts/gpu_formats_check.py > $OUT/formats.txt 2>&1
echo "== formats check ($((SECONDS - T0)) s)"; grep -E "FAIL|formats check|Error" $OUT/formats.txt | cut -c1-220 | head -12
timeout 100 python3 scripts/precheck_compile.py int4,int8,fp8,mxfp4,nvfp4,codebook4 > $OUT/precheck.txt 2>&1
echo "== precheck ($((SECONDS - T0)) s)"; grep -E "FAIL|took" $OUT/precheck.txt | cut -c1-220; grep -c " ok " $OUT/precheck.txt
for c in int4 fp8; do
  TQK_STATIC_OPTION=1 timeout 45 python3 scripts/host_profile.py $c > $OUT/prof_$c.txt 2>&1
  grep -E "^static-launch|Error" $OUT/prof_$c.txt | tail -3
done
echo "== profiles ($((SECONDS - T0)) s)"
M=bf16,tqk-int4,tqk-uint3,tqk-uint2,tqk-fp6,tqk-fp5,tqk-codebook4,tqk-mxfp4,tqk-mxfp8,tqk-nvfp4,tqk-mxfp6
B=$((410 - (SECONDS - T0)))
timeout $((B + 20)) python3 -m tqk.bench kernels --methods $M --layers gate_up,o --m 1 --no-ceilings --reps 10 \
  --warmup 2 --time-budget $B --out /tmp/k > $OUT/sweep.txt 2>&1
cp /tmp/k/results.csv $OUT/ 2>/dev/null; cp /tmp/k/*.txt $OUT/ 2>/dev/null
echo "== sweep ($((SECONDS - T0)) s)"; grep -E "^llama|skip|error" $OUT/sweep.txt | cut -c1-130 | tail -26
