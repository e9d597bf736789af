"""The codebook's spec (tqk/quant/codebook.py): k-means' fixed point, determinism, speed, and every
weight mapped to its nearest entry of the stored table."""
from __future__ import annotations

import time

import pytest
import torch

import tqk
from tqk import testing as T
from tqk.quant.codebook import kmeans_1d, nearest_codes


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
