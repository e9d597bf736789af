"""Codebook (lookup-table) quantization: value = table[code] * scale.

One table of 2**bits entries per tensor, fitted by k-means to the weight's values divided by their
block's scale (the root mean square of a row, or of a group of `group_size` input features); each
weight's code is the index of its nearest entry. The table and the scales are stored in the model
dtype, and codes are chosen against the stored (rounded) table and scales, so every weight maps to
the nearest entry of what the kernel reads.

k-means on scalars is Lloyd's algorithm on the sorted values: a cluster of a sorted table is an
interval of the sorted data, found by a binary search for each midpoint between neighbouring
entries, and its mean is a difference of two prefix sums. One iteration is O(entries * log n),
deterministic (no scatter-add, whose order varies on a GPU), after one sort of the data: a
4096 x 14336 weight sorts in milliseconds on a GPU and a 1024 x 1024 one in ~0.1 s on a CPU.
"""
from __future__ import annotations

import torch

KMEANS_ITERATIONS = 300  # an iteration costs O(entries * log n): the bound is for the 256-entry tables
KMEANS_TOLERANCE = 1e-9  # stop when no entry moves by more than this times the data's range


def kmeans_1d(values: torch.Tensor, entries: int, max_iter: int = KMEANS_ITERATIONS,
              tol: float = KMEANS_TOLERANCE) -> torch.Tensor:
    """float64 table [entries], ascending, of 1-D k-means (Lloyd) on `values` (any shape), started
    from the data's quantiles (i + 1/2) / entries. An entry whose cluster is empty keeps its value
    (ties and data with fewer distinct values than entries give repeated entries)."""
    x = values.detach().reshape(-1).double().sort().values
    n = x.numel()
    if n == 0:
        return torch.zeros(entries, dtype=torch.float64, device=values.device)
    prefix = torch.cat([x.new_zeros(1), x.cumsum(0)])
    at = ((torch.arange(entries, device=x.device, dtype=torch.float64) + 0.5) * n / entries).long().clamp(max=n - 1)
    table = x[at]
    stop = tol * float(x[-1] - x[0])
    ends = torch.tensor([0, n], device=x.device)
    for _ in range(max_iter):
        edges = torch.cat([ends[:1], torch.searchsorted(x, (table[1:] + table[:-1]) / 2), ends[1:]])
        counts = edges[1:] - edges[:-1]
        means = (prefix[edges[1:]] - prefix[edges[:-1]]) / counts.clamp(min=1)
        moved = torch.where(counts > 0, means, table)
        done = float((moved - table).abs().max()) <= stop
        table = moved
        if done:
            break
    return table.sort().values


def nearest_codes(values: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """uint8 codes: the index of the nearest entry of `table` (ascending) for each of `values`
    (float64 comparisons; a value halfway between two entries takes the upper one)."""
    t = table.double()
    mids = (t[1:] + t[:-1]) / 2
    return torch.searchsorted(mids, values.double().contiguous(), right=True).to(torch.uint8)


def block_scales(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """Scales [N, K // group] in the weight's dtype: each block's root mean square (0 for a zero
    block is kept at the dtype's smallest normal, so that w / scale stays finite)."""
    n, k = weight.shape
    wg = weight.double().view(n, k // group_size, group_size)
    rms = wg.pow(2).mean(-1).sqrt()
    info = torch.finfo(weight.dtype)
    return rms.clamp(min=info.smallest_normal, max=info.max).to(weight.dtype)


def quantize_codebook(weight: torch.Tensor, bits: int, group_size: int = 0):
    """float weight [N, K] -> (codes uint8 [N, K], table [2**bits], scales [N, n_groups]); table and
    scales in the weight's dtype. group_size 0: one scale per row."""
    n, k = weight.shape
    group = group_size or k
    scales = block_scales(weight, group)
    normalized = weight.double().view(n, k // group, group) / scales.double()[..., None]
    table = kmeans_1d(normalized, 1 << bits).to(weight.dtype)
    table = table.sort().values  # rounding keeps the order, ties included; sorted for nearest_codes
    codes = nearest_codes(normalized, table).view(n, k)
    return codes, table, scales
