"""The sweep driver and the `kernels` CLI end to end on CPU (tiny shapes, fake methods)."""
import json
import math
import os

import pytest
import torch.nn.functional as F

from tqk.bench import __main__ as cli
from tqk.bench import kernels, methods as M, report, shapes


def _fake_methods():
    def scaled(w, b, opts):  # a "quantized" method: slightly off, half the bytes
        w2 = (w.float() * 1.01).bfloat16()
        return M.Prepared(lambda x: F.linear(x, w2, b), w.numel())

    def unsupported(w, b, opts):
        raise M.Unsupported("K too small")

    def broken(w, b, opts):
        raise RuntimeError("kaboom")

    def fails_at_call(w, b, opts):
        def fn(x):
            if x.shape[0] > 1:
                raise RuntimeError("bad M")
            return F.linear(x, w, b)
        return M.Prepared(fn, 7)

    return [M.REGISTRY["bf16"], M.Method("fake-q", "tqk", scaled), M.Method("unsup", "peer", unsupported),
            M.Method("broken", "peer", broken), M.Method("partial", "peer", fails_at_call)]


def test_sweep_rows_and_failures():
    shp = [shapes.parse_shape("tiny=32x64"), shapes.parse_shape("16x32")]
    logs = []
    rows = kernels.sweep(shp, [1, 2], _fake_methods(), device="cpu", reps=2, warmup=1, log=logs.append)
    assert len(rows) == 2 * 2 * 5
    by = {(r.shape, r.M, r.method): r for r in rows}
    q = by[("tiny", 2, "fake-q")]
    assert q.ok and q.weight_bytes == 32 * 64 and q.bytes == 32 * 64 + 2 * 64 * 2 + 2 * 32 * 2
    assert 30 < q.sqnr_db < 50 and math.isfinite(q.speedup_vs_bf16) and q.best_peer
    assert by[("tiny", 1, "bf16")].sqnr_db == float("inf")
    assert by[("tiny", 1, "unsup")].note.startswith("unsupported: K too small")
    assert by[("16x32", 2, "broken")].note.startswith("error: RuntimeError: kaboom")
    assert by[("tiny", 1, "partial")].ok and not by[("tiny", 2, "partial")].ok
    assert "bad M" in by[("tiny", 2, "partial")].note
    assert any("unsupported" in line for line in logs)


def test_sweep_time_budget():
    shp = [shapes.parse_shape("16x32")]
    rows = kernels.sweep(shp, [1, 2], _fake_methods()[:2], device="cpu", reps=1, warmup=1, time_budget_s=-1.0,
                         log=lambda s: None)
    assert rows and all(r.note == "skipped: time budget" for r in rows)


def test_llama_shapes():
    s8 = {s.layer: (s.N, s.K) for s in shapes.llama_shapes("8b")}
    assert s8 == {"qkv": (6144, 4096), "o": (4096, 4096), "gate_up": (28672, 4096), "down": (4096, 14336),
                  "lm_head": (128256, 4096)}
    s70 = {s.layer: (s.N, s.K) for s in shapes.llama_shapes("70b")}
    assert s70["qkv"] == (10240, 8192) and s70["down"] == (8192, 28672) and s70["gate_up"] == (57344, 8192)
    assert shapes.ALL_M == tuple(2**i for i in range(13))
    assert len(shapes.select_shapes(("8b", "70b"), ("o", "down"))) == 4
    with pytest.raises(ValueError):
        shapes.select_shapes(("13b",))
    with pytest.raises(ValueError):
        shapes.select_shapes(("8b",), ("mlp",))
    assert shapes.parse_shape("a=8x16") == shapes.Shape("", "a", 8, 16)


def test_kernels_cli_writes_outputs(tmp_path, capsys):
    out = tmp_path / "k"
    rc = cli.main(["kernels", "--device", "cpu", "--shape", "64x128", "--m", "1,3", "--reps", "2", "--warmup", "1",
                   "--methods", "bf16,torch-tinygemm-int4,torch-int_mm-int8,gemlite-A16W4", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "skip gemlite-A16W4" in text and "torch-tinygemm-int4" in text
    rows = report.read_csv(str(out / "results.csv"))
    assert {(r.method, r.M) for r in rows} == {(m, M_) for m in ("bf16", "torch-tinygemm-int4", "torch-int_mm-int8")
                                              for M_ in (1, 3)}
    assert all(r.ok and r.N == 64 and r.K == 128 for r in rows)
    assert (out / "table.txt").read_text().startswith("shape")
    meta = json.loads((out / "meta.json").read_text())
    assert "gemlite-A16W4" in meta["skipped_methods"] and meta["M"] == [1, 3]
    if report.have_matplotlib():
        assert os.listdir(out / "plots") == ["speedup_64x128.png"]


def test_cli_list_methods(capsys):
    assert cli.main(["kernels", "--list-methods", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "bf16" in out and "torchao-fp8dq" in out
