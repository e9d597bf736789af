"""The model benchmark's time bounds on CPU: one child process per config, timeouts, incremental output.

Every run is the tiny decoder, one layer, a few tokens, no compile; tqk configs go through Triton's
interpreter, so each child costs a few seconds.
"""
import csv
import dataclasses
import json
import os
import time

import pytest

from tqk.bench import __main__ as cli
from tqk.bench import model as mb

SMALL = ["--tiny", "--device", "cpu", "--n-layers", "1", "--batch-sizes", "1", "--gen", "2", "--warm", "1",
         "--prompt-len", "4", "--prefill-len", "8", "--acc-len", "4", "--compile", "none"]
SMALL_RUN = dict(device="cpu", batch_sizes=(1,), prompt_len=4, n_warm=1, n_gen=2, prefill_len=8, acc_len=4,
                 compile_mode="none")


def _timing_free_table(results, batch_sizes=(1,), prefill_len=8):
    """format_results with measured times replaced by a constant, so two runs' rows compare exactly."""
    fixed = [dataclasses.replace(r, tokens_per_s={b: 1.0 for b in r.tokens_per_s},
                                 prefill_ms=1.0 if r.prefill_ms == r.prefill_ms else r.prefill_ms)
             for r in results]
    return mb.format_results(fixed, batch_sizes, prefill_len)


def _read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_order_configs():
    assert mb.order_configs(["gemlite-int4", "tqk-fp8", "torchao-int4", "nope", "bf16", "tqk-int4", "tqk-fp8"]) == [
        "bf16", "tqk-fp8", "tqk-int4", "nope", "gemlite-int4", "torchao-int4"]


def test_child_process_rows_match_in_process(tmp_path):
    a = mb.ModelArgs.tiny(n_layers=1)
    logs = []
    inproc = mb.run(a, ["tqk-int8", "bf16"], log=logs.append, **SMALL_RUN)
    work = tmp_path / "work"
    child_logs = []
    isolated = mb.run(a, ["tqk-int8", "bf16"], isolate=True, work_dir=str(work), config_timeout_s=120,
                      log=child_logs.append, **SMALL_RUN)
    assert [r.config for r in isolated] == ["bf16", "tqk-int8"]
    for r in isolated:
        assert set(r.tokens_per_s) == {1} and r.tokens_per_s[1] > 0 and r.prefill_ms > 0, r
    assert isolated[1].agreement > 0.5 and 20 < isolated[1].logit_sqnr_db < float("inf")
    assert _timing_free_table(isolated) == _timing_free_table(inproc)
    # the bf16 child's logits reached the tqk child through the work dir: nobody rebuilt a reference
    assert (work / "ref_logits.pt").exists()
    assert not any("reference logits" in line for line in child_logs), child_logs
    assert any("batch   1:" in line for line in child_logs)  # the children's output is forwarded


def test_child_builds_its_own_reference_without_bf16(tmp_path):
    a = mb.ModelArgs.tiny(n_layers=1)
    logs = []
    (r,) = mb.run(a, ["nope"], isolate=True, config_timeout_s=60, log=logs.append, **SMALL_RUN)
    assert r.note.startswith("error: ValueError: unknown config 'nope'"), r.note
    assert any("reference logits: from a bf16 copy" in line for line in logs), logs


def _processes_with_env(marker: str):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def test_timeout_kills_the_child_and_keeps_its_partial_results(tmp_path, monkeypatch, capsys):
    marker = f"tqk-test-{os.getpid()}-{time.time_ns()}"
    monkeypatch.setenv("TQK_TEST_MARKER", marker)
    monkeypatch.setenv(mb._HANG_ENV, "bf16:decode")  # the bf16 child sleeps for an hour before decoding
    out = tmp_path / "out"
    t0 = time.perf_counter()
    # 40 s: the hanging child is killed then, and tqk-int8 (Triton's interpreter on a 2-core CI
    # machine) must finish inside it; 10 s was too short on a slower machine.
    rc = cli.main(["model", *SMALL, "--configs", "tqk-int8,bf16", "--config-timeout", "40", "--out", str(out)])
    elapsed = time.perf_counter() - t0
    assert rc == 0
    assert elapsed < 120, elapsed
    printed = capsys.readouterr().out
    assert "hangs at decode" in printed and "timed out after 40s: killed" in printed
    if os.path.isdir("/proc"):
        assert _processes_with_env(marker) == []  # the child and its group are gone
    rows = {r["config"]: r for r in _read_csv(out / "model_results.csv")}
    assert list(rows) == ["bf16", "tqk-int8"]
    bf16 = rows["bf16"]
    # what the child reported before it hung: accuracy, prefill, weights; no decode
    assert bf16["note"] == "timed out after 40 s"
    assert float(bf16["agreement"]) == 1.0 and float(bf16["prefill_ms"]) > 0 and float(bf16["weight_mib"]) > 0
    assert bf16["tokens_per_s_b1"] == ""
    # the next config ran, against bf16's reference logits written before the hang
    q = rows["tqk-int8"]
    assert q["note"] == "" and float(q["tokens_per_s_b1"]) > 0 and float(q["logit_sqnr_db"]) > 20
    assert "reference logits: from a bf16 copy" not in printed
    table = (out / "model_table.txt").read_text()
    assert "timed out after 40 s" in table
    meta = json.loads((out / "model_meta.json").read_text())
    assert meta["finished"] is True and meta["done"] == ["bf16", "tqk-int8"] and meta["isolate"] is True


class _Killed(BaseException):
    """Stands for the run being killed from outside (not an Exception: nothing catches it)."""


def test_results_are_written_after_every_config(tmp_path, monkeypatch):
    real_apply = mb.apply_config

    def apply(model, name, device, skip_lm_head=False):
        if name == "tqk-int8":
            raise _Killed()
        return real_apply(model, name, device, skip_lm_head)

    monkeypatch.setattr(mb, "apply_config", apply)
    out = tmp_path / "out"
    with pytest.raises(_Killed):
        cli.main(["model", *SMALL, "--no-isolate", "--configs", "bf16,tqk-int8", "--out", str(out)])
    rows = _read_csv(out / "model_results.csv")
    assert [r["config"] for r in rows] == ["bf16"] and float(rows[0]["tokens_per_s_b1"]) > 0
    assert "bf16" in (out / "model_table.txt").read_text()
    meta = json.loads((out / "model_meta.json").read_text())
    assert meta["finished"] is False and meta["done"] == ["bf16"] and meta["configs"] == ["bf16", "tqk-int8"]


def test_deadline_skips_the_remaining_batch_sizes():
    a = mb.ModelArgs.tiny(n_layers=1)
    p = mb.RunParams(a, "cpu", batch_sizes=(1, 2), prompt_len=4, n_warm=1, n_gen=2, prefill_len=0, acc_len=4,
                     compile_mode="none")
    reports = []
    r = mb.measure_config("bf16", p, get_ref=lambda: None, put_ref=lambda t: None, deadline=time.time() - 1,
                          log=lambda s: None, report=lambda res: reports.append(dict(res.tokens_per_s)))
    assert r.tokens_per_s == {} and r.note == "skipped batch 1,2: time budget" and r.agreement == 1.0
    assert reports  # partial results were reported (accuracy) even with no decode
    r = mb.measure_config("bf16", p, get_ref=lambda: None, put_ref=lambda t: None, deadline=time.time() + 300,
                          log=lambda s: None)
    assert set(r.tokens_per_s) == {1, 2} and r.note == ""


def test_time_budget_skips_configs_in_process():
    a = mb.ModelArgs.tiny(n_layers=1)
    res = mb.run(a, ["tqk-int8", "bf16"], time_budget_s=0, log=lambda s: None, **SMALL_RUN)
    assert [(r.config, r.note) for r in res] == [("bf16", "skipped: time budget"), ("tqk-int8", "skipped: time budget")]
