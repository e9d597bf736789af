"""Byte/FLOP accounting, SQNR, table and CSV writing, plots (CPU only)."""
import math

import pytest
import torch

from tqk.bench import report
from tqk.bench.timing import Ceilings, Timing


def _t(us):
    s = us * 1e-6
    return Timing(median_s=s, p10_s=0.9 * s, p90_s=1.2 * s, samples=5, calls_per_sample=3, graph=True)


def test_moved_bytes_counts_weight_x_and_out():
    # int4 g128 weight of 64x128: 64*128/2 codes + 2 bf16 (scale, zero) per group
    wbytes = 64 * 128 // 2 + 64 * (128 // 128) * 2 * 2
    assert report.moved_bytes(4, 64, 128, wbytes) == wbytes + 4 * 128 * 2 + 4 * 64 * 2
    assert report.moved_bytes(1, 64, 64, 0, act_bytes=1, out_bytes=4) == 64 + 256
    assert report.matmul_flops(2, 3, 5) == 60


def test_sqnr_db():
    ref = torch.randn(64, 64)
    assert report.sqnr_db(ref, ref.clone()) == float("inf")
    noise = 0.01 * torch.randn(64, 64)
    expect = 10 * math.log10(ref.pow(2).sum().item() / noise.pow(2).sum().item())
    assert report.sqnr_db(ref, ref + noise) == pytest.approx(expect, abs=1e-3)
    assert report.sqnr_db(ref, 2 * ref) == pytest.approx(0.0, abs=1e-4)  # noise == signal
    assert report.sqnr_db(ref.bfloat16(), ref.bfloat16()) == float("inf")
    assert math.isnan(report.sqnr_db(ref, torch.full_like(ref, float("nan"))))
    with pytest.raises(ValueError):
        report.sqnr_db(ref, ref[:2])


def _rows():
    rows = []
    for M, times in ((1, {"bf16": 40.0, "tqk-int4": 10.0, "peer-a": 20.0, "peer-b": 16.0}),
                     (16, {"bf16": 50.0, "tqk-int4": 25.0, "peer-a": 30.0, "peer-b": None})):
        for name, us in times.items():
            fam = "baseline" if name == "bf16" else ("tqk" if name.startswith("tqk") else "peer")
            wb = 4096 * 4096 * 2 if name == "bf16" else 4096 * 4096 // 2
            rows.append(report.make_row("llama3-8b-o", 4096, 4096, M, name, fam,
                                        timing=_t(us) if us else None, weight_bytes=wb, sqnr=20.0,
                                        copies=3, note="" if us else "error: boom"))
    return rows


def test_finalize_ratios_and_ceiling():
    rows = _rows()
    ceil = Ceilings(memory_bytes_per_s=3e12, matmul_flops_per_s=700e12)
    report.finalize(rows, ceil)
    by = {(r.M, r.method): r for r in rows}
    r = by[(1, "tqk-int4")]
    assert r.speedup_vs_bf16 == pytest.approx(4.0)
    assert r.best_peer == "peer-b" and r.vs_best_peer == pytest.approx(1.6)
    assert by[(1, "peer-b")].vs_best_peer == pytest.approx(1.0)
    assert by[(1, "bf16")].speedup_vs_bf16 == pytest.approx(1.0)
    # M=1 is memory bound: bound = bytes / copy BW
    assert r.bound == "memory"
    assert r.pct_ceiling == pytest.approx(100 * (r.bytes / 3e12) / 10e-6)
    assert r.tbps == pytest.approx(r.bytes / 10e-6 / 1e12)
    assert r.tflops == pytest.approx(2 * 4096 * 4096 / 10e-6 / 1e12)
    # a failed point keeps NaNs and does not count as a peer
    failed = by[(16, "peer-b")]
    assert not failed.ok and math.isnan(failed.speedup_vs_bf16)
    assert by[(16, "tqk-int4")].best_peer == "peer-a"
    # compute-bound case
    big = report.make_row("s", 4096, 4096, 4096, "bf16", "baseline", timing=_t(400.0), weight_bytes=2 * 4096**2)
    report.finalize([big], ceil)
    assert big.bound == "compute"
    assert big.pct_ceiling == pytest.approx(100 * (2 * 4096**3 / 700e12) / 400e-6)


def test_table_and_csv_roundtrip(tmp_path):
    rows = _rows()
    ceil = Ceilings(memory_bytes_per_s=3e12, matmul_flops_per_s=700e12, memory_kernel="gemv 2 GiB", matmul_n=8192)
    report.finalize(rows, ceil)
    text = report.format_table(rows, ceil)
    assert "ceilings: memory 3.00 TB/s (gemv 2 GiB)" in text and "700.0 TFLOP/s" in text
    assert text.count("tqk-int4") == 2 and "error: boom" in text
    path = report.write_csv(rows, str(tmp_path / "sub" / "results.csv"))
    back = report.read_csv(path)
    assert len(back) == len(rows)
    orig = {(r.M, r.method): r for r in rows}
    for b in back:
        o = orig[(b.M, b.method)]
        assert isinstance(b.M, int) and isinstance(b.graph, bool)
        for f in report.CSV_FIELDS:
            ov, bv = getattr(o, f), getattr(b, f)
            if isinstance(ov, float) and math.isnan(ov):
                assert math.isnan(bv)
            elif isinstance(ov, float):
                assert bv == pytest.approx(ov, rel=1e-9)
            else:
                assert bv == ov
    cpath = report.write_ceilings_csv(ceil, str(tmp_path / "ceilings.csv"), "fake gpu")
    assert open(cpath).read().splitlines()[1].startswith("fake gpu,3.0000,gemv 2 GiB,700.00")


def test_plot_writer(tmp_path):
    pytest.importorskip("matplotlib")
    rows = _rows() + [report.make_row("other", 64, 64, M, m, "baseline" if m == "bf16" else "tqk",
                                      timing=_t(10.0 + M), weight_bytes=100)
                      for M in (1, 2, 4) for m in ("bf16", "tqk-int8")]
    report.finalize(rows)
    paths = report.plot_speedups(rows, str(tmp_path / "plots"))
    assert len(paths) == 2
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plot_writer_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setattr(report, "have_matplotlib", lambda: False)
    assert report.plot_speedups(_rows(), str(tmp_path)) == []
