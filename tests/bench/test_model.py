"""The model benchmark's decoder on CPU: tiny, bf16, no compile."""
import math

import pytest
import torch

from tqk.bench import model as mb

TINY = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab=256)


def test_build_is_deterministic_and_bf16():
    a = mb.ModelArgs.tiny(**TINY)
    m1, m2 = mb.build_model(a, seed=1), mb.build_model(a, seed=1)
    for (n, p1), p2 in zip(m1.named_parameters(), m2.parameters()):
        assert p1.dtype == torch.bfloat16 and torch.equal(p1, p2), n
    assert not torch.equal(m1.output.weight, mb.build_model(a, seed=2).output.weight)
    assert mb.weight_bytes(m1) == sum(p.numel() for p in m1.parameters()) * 2
    m1.setup_caches(2, 16)  # caches and rope tables do not count as weights
    assert mb.weight_bytes(m1) == sum(p.numel() for p in m1.parameters()) * 2


def test_kv_cache_decode_matches_full_prefill():
    a = mb.ModelArgs.tiny(**TINY)
    model = mb.build_model(a, seed=0)
    tokens = torch.randint(0, a.vocab, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        model.setup_caches(2, 16)
        _, full = mb.prefill(model, tokens)
        model.setup_caches(2, 16)
        _, part = mb.prefill(model, tokens[:, :6])
        steps = [mb.logits_step(model, tokens[:, i:i + 1], i) for i in range(6, 10)]
    assert full.shape == (2, 10, a.vocab)
    for i, lg in enumerate(steps):
        ref = full[:, 6 + i].float()
        assert (lg.float() - ref).abs().max().item() < 0.1 * ref.abs().max().item()
        assert torch.equal(lg.argmax(-1), ref.argmax(-1))


def test_generate_and_run_bf16():
    a = mb.ModelArgs.tiny(**TINY)
    model = mb.build_model(a, seed=0)
    prompt = torch.randint(0, a.vocab, (3, 5), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        model.setup_caches(3, 12)
        toks = mb.generate(model, prompt, 6)
        model.setup_caches(3, 12)
        again = mb.generate(model, prompt, 6)
    assert toks.shape == (3, 6) and torch.equal(toks, again)
    logs = []
    res = mb.run(a, ["bf16"], device="cpu", batch_sizes=(1, 2), prompt_len=4, n_warm=1, n_gen=3, prefill_len=16,
                 acc_len=8, compile_mode="none", log=logs.append)
    (r,) = res
    assert r.config == "bf16" and r.agreement == 1.0 and r.logit_sqnr_db == float("inf")
    assert set(r.tokens_per_s) == {1, 2} and all(v > 0 for v in r.tokens_per_s.values())
    assert r.prefill_ms > 0 and r.weight_mib > 0 and r.compiled == "eager"
    text = mb.format_results(res, (1, 2), 16)
    assert "bf16" in text and "inf" in text


def test_unknown_and_gpu_only_configs_fail_cleanly(tmp_path):
    a = mb.ModelArgs.tiny(**TINY)
    res = mb.run(a, ["nope", "torchao-int4", "gemlite-int4"], device="cpu", batch_sizes=(1,), prompt_len=2,
                 n_warm=0, n_gen=1, prefill_len=0, acc_len=4, compile_mode="none", log=lambda s: None)
    assert [r.config for r in res] == ["nope", "torchao-int4", "gemlite-int4"]
    assert all(r.note.startswith("error:") for r in res)
    path = mb.write_results(res, str(tmp_path / "m.csv"), (1,))
    lines = open(path).read().splitlines()
    assert lines[0].startswith("config,tokens_per_s_b1,prefill_ms") and len(lines) == 4


def test_agreement_and_sqnr():
    ref = torch.randn(1, 5, 10)
    agree, sq = mb.agreement_and_sqnr(ref, ref.clone())
    assert agree == 1.0 and sq == float("inf")
    agree, sq = mb.agreement_and_sqnr(ref, -ref)
    assert agree == 0.0 and math.isfinite(sq)


def test_tqk_config_on_tiny_model():
    tqk = pytest.importorskip("tqk")
    if not hasattr(tqk, "quantize_"):
        pytest.skip("tqk.quantize_ not available")
    a = mb.ModelArgs.tiny(dim=128, n_layers=1, n_heads=4, n_kv_heads=2, ffn_dim=128, vocab=128)
    model = mb.build_model(a, seed=0)
    before = mb.weight_bytes(model)
    mb.apply_config(model, "tqk-int8", "cpu")
    assert mb.weight_bytes(model) < before
    prompt = torch.randint(0, a.vocab, (1, 4), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        logits = mb.accuracy_logits(model, prompt)
        ref = mb.accuracy_logits(mb.build_model(a, seed=0), prompt)
    assert mb.agreement_and_sqnr(ref, logits)[1] > 15
