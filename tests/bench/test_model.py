"""The model benchmark on CPU: the decoder, the table and CSV, budgets and skipped configs.

The tiny decoder runs eagerly (--modes eager) except in one test that compiles one config: the
inductor CPU compile takes tens of seconds on a CI machine.
"""
import csv
import math

import pytest
import torch

from tqk.bench import __main__ as cli
from tqk.bench import model as mb
from tqk.bench.decoder import ModelArgs, build_model, kv_cache_bytes, weight_bytes

TINY = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab=256)
SMALL = ["--tiny", "--device", "cpu", "--n-layers", "1", "--acc-len", "2", "--gen", "1", "--repeats", "1"]


def _params(**over):
    p = dict(model=vars(ModelArgs.tiny(n_layers=1)), device="cpu", batches=[1], modes=["eager"], acc_len=3, gen=2,
             repeats=1, seed=0, bandwidth=1e9)
    return {**p, **over}


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_build_is_deterministic_and_bf16():
    a = ModelArgs.tiny(**TINY)
    m1, m2 = build_model(a, seed=1), build_model(a, seed=1)
    for (n, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        assert p1.dtype == torch.bfloat16 and torch.equal(p1, p2), n
    assert not torch.equal(m1.output.weight, build_model(a, seed=2).output.weight)
    read = sum(p.numel() for n, p in m1.named_parameters() if "tok_embeddings" not in n) * 2
    assert weight_bytes(m1) == read  # a step reads one row of the embedding table, not the table
    m1.setup_caches(2, 16)  # caches and rope tables are not weights; the decode attention reads the cache whole
    assert weight_bytes(m1) == read and kv_cache_bytes(m1) == a.n_layers * 2 * (2 * 2 * 16 * 16) * 2


def test_kv_cache_decode_matches_full_prefill():
    a = ModelArgs.tiny(**TINY)
    model = build_model(a, seed=0)
    tokens = torch.randint(0, a.vocab, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model.setup_caches(2, 16)
        full = model(tokens, torch.arange(10))
        model.setup_caches(2, 16)
        model(tokens[:, :6], torch.arange(6))
        steps = [model(tokens[:, i:i + 1], torch.tensor([i]))[:, -1] for i in range(6, 10)]
    assert full.shape == (2, 10, a.vocab)
    for i, lg in enumerate(steps):
        ref = full[:, 6 + i].float()
        assert (lg.float() - ref).abs().max().item() < 0.1 * ref.abs().max().item()
        assert torch.equal(lg.argmax(-1), ref.argmax(-1))


def test_cli_rows_csv_and_table(tmp_path, capsys):
    pytest.importorskip("tqk")
    out = tmp_path / "out"
    rc = cli.main(["model", *SMALL, "--modes", "eager", "--batch-sizes", "1,2", "--no-isolate", "--out", str(out),
                   "--configs", "gemlite-int4,tqk-int8,bf16,torchao-int8,nope"])
    assert rc == 0
    printed = capsys.readouterr().out
    table = (out / "model_table.txt").read_text()
    assert printed.rstrip().endswith(table.rstrip())  # the table is printed last
    rows = _read_csv(out / "model_results.csv")
    assert [(r["config"], r["batch"]) for r in rows] == [
        (c, b) for c in ("bf16", "tqk-int8", "gemlite-int4", "torchao-int8", "nope") for b in ("1", "2")]
    by = {(r["config"], int(r["batch"])): r for r in rows}
    for c in ("bf16", "tqk-int8"):
        for b in (1, 2):
            r = by[(c, b)]
            assert float(r["eager_ms"]) > 0 and float(r["eager_cpu_ms"]) > 0 and float(r["ideal_ms"]) > 0, r
            assert r["floor_ms"] == "" and "floor: CUDA only" in r["note"]
            assert float(r["eager_x_bf16"]) > 0
    assert float(by[("bf16", 1)]["eager_x_bf16"]) == 1.0 and by[("bf16", 1)]["sqnr_db"] == "inf"
    q = by[("tqk-int8", 1)]
    assert float(q["weight_mib"]) < float(by[("bf16", 1)]["weight_mib"])
    assert float(q["ideal_ms"]) < float(by[("bf16", 1)]["ideal_ms"])
    assert float(q["agreement"]) >= 0.5 and 20 < float(q["sqnr_db"]) < math.inf  # accuracy at the first batch only
    assert by[("tqk-int8", 2)]["agreement"] == ""
    for c in ("gemlite-int4", "torchao-int8"):
        assert by[(c, 1)]["note"] == "skipped: needs a CUDA GPU" and by[(c, 1)]["eager_ms"] == ""
    assert by[("nope", 2)]["note"].startswith("skipped: unknown config")


def test_compiled_model_first_call(tmp_path):
    """One compile (default mode, batch 1) of bf16: the compiled model's first call is its first, the
    timed loop does not recompile, and the teacher-forced logits give the reference."""
    out = tmp_path / "out"
    assert cli.main(["model", *SMALL, "--modes", "default", "--batch-sizes", "1", "--no-isolate", "--out", str(out),
                     "--configs", "bf16"]) == 0
    (r,) = _read_csv(out / "model_results.csv")
    assert float(r["default_ms"]) > 0 and float(r["default_cpu_ms"]) > 0
    assert r["note"] == "floor: CUDA only" and r["agreement"] == "1.0"


def test_failures_are_notes_not_crashes(tmp_path):
    rows = mb.measure_config(_params(config="nope", ref_path="", deadline=1e18, batches=[1, 2]))
    assert [r["batch"] for r in rows] == [1, 2]
    assert all(any(n.startswith("error: ValueError: unknown config") for n in r["notes"]) for r in rows)
    (r,) = mb.measure_config(_params(config="bf16", ref_path=str(tmp_path / "ref.pt"), deadline=1e18,
                                     modes=["bad", "eager"]))
    assert list(r["wall_ms"]) == ["eager"] and any(n.startswith("bad: KeyError") for n in r["notes"])
    assert r["agreement"] == 1.0  # taken by the first run that got through the prompt


def test_deadline_skips_runs_and_budget_skips_configs(tmp_path):
    reports = []
    rows = mb.measure_config(_params(config="bf16", ref_path=str(tmp_path / "ref.pt"), deadline=0.0,
                                     batches=[1, 2]), report=reports.append)
    assert [r["wall_ms"] for r in rows] == [{}, {}]
    assert all("eager: skipped, 0 s left (time budget)" in r["notes"] for r in rows) and reports
    got = mb.run(_params(), ["tqk-int8", "bf16"], time_budget_s=0, isolated=False, log=lambda s: None)
    assert [(r.config, r.notes) for r in got] == [("bf16", ["skipped: time budget"]),
                                                  ("tqk-int8", ["skipped: time budget"])]


def test_config_timeout_keeps_a_reserve_for_the_configs_after():
    assert mb.config_timeout(540, 7) == 540 - 7 * mb.RESERVE_S
    assert mb.config_timeout(100, 0) == 100
    assert mb.config_timeout(100, 3) == 25  # less than the reserves: an equal share
    assert mb.order_configs(["gemlite-int4", "tqk-fp8", "bf16", "torchao-int4", "tqk-int4", "tqk-fp8"]) == [
        "bf16", "tqk-fp8", "tqk-int4", "gemlite-int4", "torchao-int4"]


def test_table_ratios_and_missing_cells():
    rows = [mb.Row("bf16", 1, wall_ms={"ro": 2.0, "default": 4.0}, cpu_ms={"ro": 0.2}, floor_ms=1.8, weight_mib=10),
            mb.Row("tqk-int4", 1, wall_ms={"ro": 1.0}, cpu_ms={"ro": 0.3}, floor_ms=0.9, notes=["default: boom"]),
            mb.Row("tqk-int4", 16, wall_ms={"ro": 3.0})]  # no bf16 row at batch 16: no ratio
    cols = {name: vals for _, name, _, vals in mb._columns(rows, ["ro", "default"])}
    assert cols["ro_x_bf16"][:2] == [1.0, 2.0] and math.isnan(cols["ro_x_bf16"][2])
    assert cols["floor_x_bf16"][1] == pytest.approx(2.0) and math.isnan(cols["default_x_bf16"][1])
    assert cols["ro_tok_s"] == [500.0, 1000.0, pytest.approx(16 / 3e-3)]
    text = mb.format_table(rows, ["ro", "default"], header="hdr")
    lines = text.splitlines()
    assert lines[0] == "hdr" and lines[1].split()[:4] == ["config", "batch", "ro", "ms"] and set(lines[2]) == {"-"}
    assert "2.00" in lines[4] and lines[4].endswith("default: boom") and " - " in lines[4]


def test_isolated_run_returns_the_childs_rows():
    """Each config in a child process (the default): its rows come back through isolate's JSON file."""
    (r,) = mb.run(_params(), ["bf16"], time_budget_s=300, log=lambda s: None)
    assert r.config == "bf16" and r.wall_ms["eager"] > 0 and r.sqnr_db == math.inf
    assert r.notes == ["floor: CUDA only"]


def test_prefill_mode_and_an_activation_quantized_config(tmp_path):
    """--modes prefill times one prefill at the first batch size only (the other rows say nothing of
    it), and an activation-quantized tqk config runs through the same path."""
    out = tmp_path / "out"
    assert cli.main(["model", *SMALL, "--modes", "prefill", "--batch-sizes", "1,2", "--no-isolate", "--prefill", "8",
                     "--out", str(out), "--configs", "bf16,tqk-int8dq"]) == 0
    rows = _read_csv(out / "model_results.csv")
    assert [(r["config"], r["batch"]) for r in rows] == [("bf16", "1"), ("bf16", "2"), ("tqk-int8dq", "1"),
                                                         ("tqk-int8dq", "2")]
    assert all(float(r["prefill_ms"]) > 0 for r in rows if r["batch"] == "1")
    assert all(r["prefill_ms"] in ("", "nan") for r in rows if r["batch"] == "2")


def test_warm_compile_fills_the_cache_the_timed_run_hits():
    """warm_config compiles the graph a timed run compiles (same model, shapes, strides and mode), so
    the timed run's compile is an FX-graph cache hit: that is all the warm phase is for."""
    from torch._dynamo.utils import counters
    p = _params(modes=["default"], batches=[1], config="bf16")
    assert mb.warm_config(p) == {}
    model = build_model(ModelArgs(**p["model"]), torch.device("cpu"), seed=p["seed"])
    model.setup_caches(1, mb._cache_len(p, True))
    counters.clear()
    compiled, prompt, pos = mb._compiled_and_prompt(model, "default", 1, p)
    with torch.no_grad():
        compiled(prompt[0], pos)
    assert counters["inductor"]["fxgraph_cache_hit"] >= 1 and not counters["inductor"]["fxgraph_cache_miss"], \
        dict(counters["inductor"])


def test_warm_phase_runs_every_config_in_parallel_children():
    """run(warm_jobs=2): one warm child per config before the timed ones, each logged with its
    seconds; failures are logged, and
    the timed rows are the same as without it."""
    logs = []
    rows = mb.run(_params(), ["bf16", "tqk-int8"], time_budget_s=300, log=logs.append, warm_jobs=2)
    assert [r.config for r in rows] == ["bf16", "tqk-int8"] and all(r.wall_ms["eager"] > 0 for r in rows)
    assert any("warm compiles of 2 configs x 1 batch sizes, 2 at a time" in line for line in logs), logs
    assert not any(line.startswith("  warm ") for line in logs), logs  # a failed warm child's line
    assert sorted(line.split()[1] for line in logs if line.startswith("  warmed ")) == ["bf16", "tqk-int8"], logs


def test_paired_bf16_is_interleaved_in_the_configs_own_process():
    """--paired: a tqk config's row carries bf16's loops interleaved with its own, from its own process;
    the columns are the per-round ratios; bf16's own row has none."""
    rows = mb.run(_params(modes=["default"], paired=["default"], pair_rounds=2), ["bf16", "tqk-int8"],
                  time_budget_s=300, isolated=False, log=lambda s: None)
    bf16, q = rows
    pair = q.pair["default"]
    assert not bf16.pair and pair["bf16_ms"] > 0 and pair["ms"] > 0 and pair["x"] > 0 and pair["cpu"] > 0, q
    assert not any("recompiled" in n for n in q.notes), q.notes  # bf16's own frame: no shared cache
    cols = {name: vals for _, name, _, vals in mb._columns(rows, ["default"])}
    assert cols["default_x_paired_bf16"][1] == pair["x"] and cols["default_cpu_over_paired_bf16"][1] == pair["cpu"]
    assert math.isnan(cols["default_x_paired_bf16"][0])


def test_interleaved_loops_alternate_and_ratios_are_per_round():
    """timing.interleaved takes the loops in turn, A B then B A, rewinding each before it runs; the
    ratio is a median of per-round ratios (a ratio of medians would mix rounds)."""
    from tqk.bench import timing
    calls = []
    loops = {k: (lambda k=k: calls.append(k), lambda k=k: calls.append("r" + k)) for k in "ab"}
    got = timing.interleaved(loops, 2, "cpu", rounds=3)
    assert calls == ["ra", "a", "a", "rb", "b", "b", "rb", "b", "b", "ra", "a", "a", "ra", "a", "a", "rb", "b", "b"]
    assert len(got["a"]["walls"]) == 3 and got["a"]["wall"] > 0
    assert timing.median_ratio([2, 9, 4], [1, 1, 4]) == 2.0


def test_static_mode_is_for_tqk_and_its_bf16_reference():
    """The static launcher changes how inductor launches user-defined Triton kernels: the peers skip it."""
    from tqk.bench.model import config_modes
    modes = ["ro", "default", "static"]
    assert config_modes("tqk-int4", modes) == modes and config_modes("bf16", modes) == modes
    assert config_modes("gemlite-int4", modes) == config_modes("torchao-fp8", modes) == ["ro", "default"]


