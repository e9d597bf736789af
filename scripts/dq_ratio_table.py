"""The dynamic configs' sweep as ratios to bf16: python scripts/dq_ratio_table.py results.csv"""
import csv, sys
try:
    rows = list(csv.DictReader(open(sys.argv[1])))
except OSError:
    sys.exit("no results.csv")
cols = [("tqk-int8dq", "i8dq"), ("torch-int_mm-int8", "_int_mm"), ("tqk-fp8dq-row", "f8row"), ("tqk-fp8dq-tensor", "f8ten"),
        ("tqk-fp8dq-block", "f8blk"), ("torch-scaled_mm-fp8", "_sc_mm"), ("tqk-w4a8-int8", "w4a8i8"),
        ("tqk-w4a8-fp8", "w4a8f8"), ("tqk-int8", "i8wo"), ("tqk-fp8", "f8wo"), ("tqk-int4", "i4wo")]
t = {(r["shape"].replace("llama3-8b-", ""), int(r["M"]), r["method"]): r for r in rows}
print("x bf16 (bf16 us first); ! = error or SQNR < 18 dB")
print(f"{'shape':8s} {'M':>5s} {'bf16':>7s} " + " ".join(f"{h:>7s}" for _, h in cols))
for shape in ("qkv", "o", "gate_up", "down"):
    for m in (1, 16, 2048):
        b = t.get((shape, m, "bf16"))
        if not b or b["median_us"] in ("", "nan"):
            continue
        bu = float(b["median_us"])
        cells = []
        for name, _ in cols:
            r = t.get((shape, m, name))
            if not r or r["median_us"] in ("", "nan"):
                cells.append(f"{'-':>7s}")
                continue
            bad = r["note"].startswith(("error", "unsupported")) or float(r["sqnr_db"] or 99) < 18
            cells.append(f"{bu / float(r['median_us']):6.2f}{'!' if bad else ' '}")
        print(f"{shape:8s} {m:5d} {bu:7.1f} " + " ".join(cells))
