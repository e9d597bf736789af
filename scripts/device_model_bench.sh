#!/bin/bash
# The model benchmark on one H200 (<= 590 s a call): `python -m tqk.bench model` with the configs C=, modes M=,
# paired modes P= (bf16 interleaved in each tqk config's process), all within S= seconds. Files in $OUT/model.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:$PWD/scripts:/tmp/site
S=${S:-588}; C=${C:-bf16,tqk-int4,tqk-int8,tqk-fp8,gemlite-int4,torchao-int4,torchao-int8,torchao-fp8}
M=${M:-ro,default}; P=${P-ro,default}
timeout $((S - SECONDS)) python3 -m tqk.bench model --configs $C --modes $M --paired "$P" \
  --time-budget $((S - 12 - SECONDS)) --out $OUT/model > $OUT/model_log.txt 2>&1
echo "== model benchmark: rc $? ($SECONDS s)"
grep -E "^\[|^  warm|took" $OUT/model_log.txt | cut -c1-160 | tail -30
cut -c1-330 $OUT/model/model_table.txt 2>/dev/null
