"""The codebook's spec (tqk/quant/codebook.py): k-means' fixed point, determinism, speed, and every
weight mapped to its nearest entry of the stored table."""
from __future__ import annotations

import time

import pytest
import torch

import tqk
from tqk import testing as T
from tqk.quant.codebook import kmeans_1d, kmeans_vectors, nearest_codes, nearest_vectors


def test_kmeans_is_a_fixed_point_and_deterministic():
    """Converged Lloyd: every entry is the mean of the values nearest to it; the same data gives the
    same table bit for bit (no random start, no scatter-add)."""
    v = torch.randn(50_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    table = kmeans_1d(v, 16)
    assert torch.equal(table, kmeans_1d(v.flip(0), 16)) and bool((table[1:] >= table[:-1]).all())
    codes = nearest_codes(v, table).long()
    means = torch.zeros(16, dtype=torch.float64).index_add_(0, codes, v) / torch.bincount(codes, minlength=16)
    assert torch.allclose(means, table, rtol=0, atol=1e-6)


def test_kmeans_with_fewer_distinct_values_than_entries():
    v = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0, -2.0], dtype=torch.float64)
    table = kmeans_1d(v, 8)
    assert set(table.tolist()) == {-2.0, 0.0, 1.0}
    assert torch.equal(table[nearest_codes(v, table).long()], v)


def test_kmeans_is_fast_on_a_1024_square_weight():
    w = torch.randn(1024, 1024, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    tqk.quantize_weight(w, tqk.CodebookWeightOnlyConfig(torch.uint8))
    assert time.perf_counter() - start < 10  # ~0.2 s here; a 4096 x 14336 weight is 56x the data


@pytest.mark.parametrize("config", [tqk.CodebookWeightOnlyConfig(torch.uint4),
                                    tqk.CodebookWeightOnlyConfig(torch.uint3, scale_block_size=32),
                                    tqk.CodebookWeightOnlyConfig(torch.uint1)], ids=repr)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_every_weight_maps_to_its_nearest_entry(config, dtype):
    """|w - table[code] * s| is the smallest over the stored table (the table and scales as stored,
    float64 arithmetic; 1e-12 relative slack for the division w / s), and scales are positive."""
    w = T.make_weight((40, 128), dtype, "outliers", seed=2)
    qw = tqk.quantize_weight(w, config)
    assert bool((qw.scales > 0).all())
    scale = T._abs_scale_matrix(qw)  # [N, K]: each element's block scale
    candidates = qw.table.double()[None, None, :] * scale[..., None]  # [N, K, entries]
    dist = (w.double()[..., None] - candidates).abs()
    chosen = dist.gather(-1, qw.codes().long()[..., None]).squeeze(-1)
    assert bool((chosen <= dist.amin(-1) * (1 + 1e-12) + 1e-300).all())
    assert torch.equal(T.dequantize_reference(qw), qw.table.double()[qw.codes().long()] * scale)


def test_vector_kmeans_is_a_fixed_point_and_deterministic():
    """Converged Lloyd in 3 dimensions (fewer vectors than the sample bound: k-means sees them all): every
    entry is the mean of the vectors nearest to it; the same data and seed give the same table bit for
    bit (a seeded start, means from sorted prefix sums); another seed is another start."""
    v = torch.randn(2_000, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    table = kmeans_vectors(v, 16, max_iter=1000)
    assert table.shape == (16, 3) and torch.equal(table, kmeans_vectors(v, 16, max_iter=1000))
    codes = nearest_vectors(v, table)
    counts = torch.bincount(codes, minlength=16)
    assert bool((counts > 0).all())
    means = torch.zeros(16, 3, dtype=torch.float64).index_add_(0, codes, v) / counts[:, None]
    assert torch.allclose(means, table, rtol=0, atol=1e-6)
    assert not torch.equal(table, kmeans_vectors(v, 16, max_iter=1000, seed=1))  # the seed is the start


def test_vector_kmeans_with_fewer_distinct_vectors_than_entries():
    v = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, -1.0], [2.0, -1.0], [2.0, -1.0]], dtype=torch.float64)
    table = kmeans_vectors(v, 8)
    assert {tuple(r) for r in table.tolist()} <= {(0.0, 1.0), (2.0, -1.0)}
    assert torch.equal(table[nearest_vectors(v, table)], v)


@pytest.mark.parametrize("config", [tqk.CodebookWeightOnlyConfig(torch.uint6, (1, 2)),
                                    tqk.CodebookWeightOnlyConfig(torch.uint4, (1, 3)),
                                    tqk.CodebookWeightOnlyConfig(torch.uint8, (1, 4), scale_block_size=64),
                                    tqk.CodebookWeightOnlyConfig(torch.uint3, (1, 8))], ids=repr)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_every_vector_maps_to_its_nearest_entry(config, dtype):
    """Each run of v weights of a row is nearest (squared distance, float64) to its code's entry of the
    stored table times its block's scale, among all entries: up to float64's rounding of the distances
    (1e-12 of their scale), and scales are positive."""
    v = config.block_size[1]
    w = T.make_weight((40, 192), dtype, "outliers", seed=2)
    qw = tqk.quantize_weight(w, config)
    assert bool((qw.scales > 0).all()) and qw.table.shape == (1 << config.bits, v)
    scale = T._abs_scale_matrix(qw)[:, ::v]  # [N, K / v]: each vector's block scale
    vectors = w.double().view(40, 192 // v, 1, v)
    candidates = qw.table.double()[None, None] * scale[..., None, None]  # [N, K / v, entries, v]
    dist = (vectors - candidates).pow(2).sum(-1)
    chosen = dist.gather(-1, qw.codes().long()[..., None]).squeeze(-1)
    slack = 1e-12 * (vectors.pow(2).sum(-1).squeeze(-1) + candidates.pow(2).sum(-1).amax(-1))
    assert bool((chosen <= dist.amin(-1) + slack).all())
    assert torch.equal(T.dequantize_reference(qw), qw.table.double()[qw.codes().long()].flatten(-2) *
                       T._abs_scale_matrix(qw))
