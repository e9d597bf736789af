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

Vector codes (a code for v consecutive input features of a row, v = 2..8): the table holds 2**bits
v-dim entries, fitted by Lloyd in v dimensions (kmeans_vectors) to the normalized weight cut into
vectors, and each vector takes its nearest entry (nearest_vectors: squared distances, float64). Lloyd
there has no sorted shortcut, an iteration costs a distance per vector and entry, so it is fitted on a
seeded sample of at most KMEANS_SAMPLE_PER_ENTRY vectors per entry (FAISS's default bound) from a
seeded k-means++ start, for at most KMEANS_VECTOR_ITERATIONS iterations; the codes of the whole weight
are then chosen against the stored table. The means are deterministic (the vectors sorted by code and
differences of prefix sums, no scatter-add). On a seeded 1024 x 1024 N(0, 1) weight, 8-bit pairs
(4 bits per weight) give 21.1 dB of output SQNR where 4-bit scalar codes give 20.3.
"""
from __future__ import annotations

import torch

KMEANS_ITERATIONS = 300  # an iteration costs O(entries * log n): the bound is for the 256-entry tables
KMEANS_TOLERANCE = 1e-9  # stop when no entry moves by more than this times the data's range
KMEANS_VECTOR_ITERATIONS = 50  # an iteration costs a distance per sampled vector and entry
KMEANS_SAMPLE_PER_ENTRY = 256  # vectors k-means sees per entry (a seeded sample): all of a 1024 x 1024 weight's
#                                pairs (8x) gained 0.04 dB of SQNR for 8x the time
KMEANS_SEED = 0
_CHUNK_ELEMENTS = 1 << 22  # distances computed at once (32 MiB of float64)


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
    t = table.double().to(values.device)  # a table kept on the CPU serves values on any device
    mids = (t[1:] + t[:-1]) / 2
    return torch.searchsorted(mids, values.double().contiguous(), right=True).to(torch.uint8)


def nearest_vectors(vectors: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """int64 codes [n]: the index of the nearest entry of `table` [entries, v] (squared Euclidean
    distance, float64, computed as |e|^2 - 2 x.e, which differs from the exact distance by float64
    rounding only; the lowest index among ties) for each of `vectors` [n, v]."""
    x, t = vectors.double(), table.double()
    norms = t.pow(2).sum(1)
    chunk = max(1, _CHUNK_ELEMENTS // t.shape[0])
    codes = torch.empty(x.shape[0], dtype=torch.int64, device=x.device)
    for i in range(0, x.shape[0], chunk):
        codes[i:i + chunk] = torch.addmm(norms[None, :], x[i:i + chunk], t.T, alpha=-2).argmin(1)
    return codes


def _kmeans_plus_plus(x: torch.Tensor, entries: int, g: torch.Generator) -> torch.Tensor:
    """Start entries [entries, v] drawn from x [n, v] (CPU, float64) by k-means++: each next entry a
    vector drawn with probability proportional to its squared distance to the entries so far."""
    first = int(torch.randint(x.shape[0], (1,), generator=g))
    picked = [first]
    dist = (x - x[first]).pow(2).sum(1)
    for _ in range(entries - 1):
        i = int(torch.multinomial(dist, 1, generator=g)) if bool(dist.sum() > 0) else int(
            torch.randint(x.shape[0], (1,), generator=g))
        picked.append(i)
        dist = torch.minimum(dist, (x - x[i]).pow(2).sum(1))
    return x[picked].clone()


def kmeans_vectors(vectors: torch.Tensor, entries: int, max_iter: int = KMEANS_VECTOR_ITERATIONS,
                   tol: float = KMEANS_TOLERANCE, seed: int = KMEANS_SEED,
                   sample_per_entry: int = KMEANS_SAMPLE_PER_ENTRY) -> torch.Tensor:
    """float64 table [entries, v] of k-means (Lloyd) on `vectors` [n, v], on a seeded sample of at most
    sample_per_entry * entries of them, from a seeded k-means++ start. An entry whose cluster is empty
    keeps its value. The same vectors and seed give the same table."""
    x = vectors.detach().double()
    n, v = x.shape
    if n == 0:
        return torch.zeros(entries, v, dtype=torch.float64, device=vectors.device)
    g = torch.Generator().manual_seed(seed)
    if n > sample_per_entry * entries:
        x = x[torch.randperm(n, generator=g)[:sample_per_entry * entries].to(x.device)]
    table = _kmeans_plus_plus(x.cpu(), entries, g).to(x.device)
    stop = tol * float(x.max() - x.min())
    for _ in range(max_iter):
        codes = nearest_vectors(x, table)
        counts = torch.bincount(codes, minlength=entries)
        ends = counts.cumsum(0)
        prefix = torch.cat([x.new_zeros(1, v), x[codes.argsort(stable=True)].cumsum(0)])
        means = (prefix[ends] - prefix[ends - counts]) / counts.clamp(min=1)[:, None]
        moved = torch.where((counts > 0)[:, None], means, table)
        done = float((moved - table).abs().max()) <= stop
        table = moved
        if done:
            break
    return table


def block_scales(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    """Scales [N, K // group] in the weight's dtype: each block's root mean square (0 for a zero
    block is kept at the dtype's smallest normal, so that w / scale stays finite)."""
    n, k = weight.shape
    wg = weight.double().view(n, k // group_size, group_size)
    rms = wg.pow(2).mean(-1).sqrt()
    info = torch.finfo(weight.dtype)
    return rms.clamp(min=info.smallest_normal, max=info.max).to(weight.dtype)


def quantize_codebook(weight: torch.Tensor, bits: int, group_size: int = 0, vector_size: int = 1):
    """float weight [N, K] -> (codes uint8 [N, K / vector_size], table [2**bits] (vectors:
    [2**bits, vector_size]), scales [N, n_groups]); table and scales in the weight's dtype. group_size
    0: one scale per row. K must be a multiple of the group and of vector_size, the group of
    vector_size."""
    n, k = weight.shape
    group = group_size or k
    scales = block_scales(weight, group)
    normalized = weight.double().view(n, k // group, group) / scales.double()[..., None]
    if vector_size > 1:
        vectors = normalized.reshape(-1, vector_size)  # a group holds whole vectors: none straddles a scale
        table = kmeans_vectors(vectors, 1 << bits).to(weight.dtype)
        codes = nearest_vectors(vectors, table).to(torch.uint8).view(n, k // vector_size)
        return codes, table, scales
    table = kmeans_1d(normalized, 1 << bits).to(weight.dtype)
    table = table.sort().values  # rounding keeps the order, ties included; sorted for nearest_codes
    codes = nearest_codes(normalized, table).view(n, k)
    return codes, table, scales
