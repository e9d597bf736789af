#!/bin/bash
# Twelfth session, model benchmark (<= 590 s on one H200): `python -m tqk.bench model` as a user runs it
# (modes reduce-overhead and default, batch 1 and 16, bf16, tqk int4/int8/fp8, gemlite, torchao), inside a
# 540-s budget. Files in $OUT/model.
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl 2>/dev/null
export PYTHONPATH=$PWD:/tmp/site
T0=$SECONDS
timeout 585 python3 -m tqk.bench model --time-budget 540 --out $OUT/model > $OUT/model_log.txt 2>&1
echo "== model benchmark: rc $? ($((SECONDS - T0)) s)"
grep -vE "Warning|warn|^\s*$" $OUT/model_log.txt | grep -E "^\[|warm|took" | cut -c1-160 | tail -14
cat $OUT/model/model_table.txt 2>/dev/null | cut -c1-250
