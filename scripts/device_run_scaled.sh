#!/bin/bash
# Issue 11 on one H200, at most ~490 s: (1) the kernel-count test (<= 2 kernels per linear, every granularity),
# (2) the scaled tuner (int8dq, fp8dq-row, w4a8-int8; prologue and codes paths; Llama-3-8B shapes at
# M = 1, 16, 2048), (3) the kernel sweep: prologue vs codes vs the peers at M = 1, 16, 2048.
# Comes back in $OUT (5 files): t_count.txt, tune.txt, NVIDIA_H200.json (the tuned table), sweep.txt
# (the sweep's log and full table), results.csv. Prints a short table last.
export PYTHONPATH=$PWD
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
T0=$SECONDS

timeout 90 python3 -m pytest -q -p no:cacheprovider -m gpu \
  tests/gpu/test_scaled_gpu.py::test_at_most_two_kernels_per_linear_under_compile > $OUT/t_count.txt 2>&1
echo "== kernel count test ($((SECONDS - T0)) s)"; grep -E "^FAILED|^E .*assert|passed|failed" $OUT/t_count.txt | cut -c1-220 | tail -12

timeout 150 python3 -m tqk.tune --family scaled --formats int8dq fp8dq-row w4a8-int8 --m 1 16 2048 \
  --act-quant both > $OUT/tune.txt 2>&1
echo "== tuner ($((SECONDS - T0)) s): $(grep -c ' us  bf16' $OUT/tune.txt) entries"; tail -2 $OUT/tune.txt | cut -c1-200
cp "$(ls -t autotune_results/*.json | head -1)" $OUT/ 2>/dev/null

M=bf16,tqk-int8dq-prologue,tqk-int8dq-codes,tqk-fp8dq-row-prologue,tqk-fp8dq-row-codes,tqk-fp8dq-tensor
M=$M,tqk-fp8dq-block,tqk-w4a8-int8,torch-scaled_mm-fp8
B=$((450 - (SECONDS - T0)))  # the sweep gets what the test and the tuner left of ~450 s (points past it are skipped)
timeout $((B + 30)) python3 -m tqk.bench kernels --methods $M --layers qkv,o,gate_up,down --m 1,16,2048 \
  --no-ceilings --reps 10 --warmup 2 --time-budget $B --out /tmp/k > $OUT/sweep.txt 2>&1
cp /tmp/k/results.csv $OUT/ 2>/dev/null
echo "== sweep ($((SECONDS - T0)) s)"; grep -E "^skip|WARNING|sweep took|error" $OUT/sweep.txt | cut -c1-200 | tail -8

python3 - "$OUT/results.csv" <<'EOF'
import csv, sys
try:
    rows = list(csv.DictReader(open(sys.argv[1])))
except OSError:
    sys.exit("no results.csv")
cols = [("bf16", "bf16"), ("tqk-int8dq-prologue", "i8 pro"), ("tqk-int8dq-codes", "i8 cod"),
        ("tqk-fp8dq-row-prologue", "f8r pro"), ("tqk-fp8dq-row-codes", "f8r cod"), ("tqk-fp8dq-tensor", "f8 tens"),
        ("tqk-fp8dq-block", "f8 blk"), ("tqk-w4a8-int8", "w4a8i8"), ("torch-scaled_mm-fp8", "_sc_mm")]
t = {(r["shape"].replace("llama3-8b-", ""), int(r["M"]), r["method"]): r for r in rows}
print("median us per call (CUDA-graph replay over weight copies); errors and SQNR < 18 dB below")
print(f"{'shape':8s} {'M':>5s} " + " ".join(f"{h:>8s}" for _, h in cols))
bad = []
for shape in ("qkv", "o", "gate_up", "down"):
    for m in (1, 16, 2048):
        cells = []
        for name, _ in cols:
            r = t.get((shape, m, name))
            us = float(r["median_us"]) if r and r["median_us"] not in ("", "nan") else float("nan")
            cells.append(f"{us:8.1f}")
            if r and (r["note"].startswith(("error", "unsupported")) or (name != "bf16" and us == us and
                                                                       float(r["sqnr_db"] or "nan") < 18)):
                bad.append(f"{shape} M={m} {name}: {r['note'][:90]} sqnr={r['sqnr_db']}")
        print(f"{shape:8s} {m:5d} " + " ".join(cells))
for line in bad[:8]:
    print("  !", line)
EOF
