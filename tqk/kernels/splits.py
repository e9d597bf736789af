"""Split-K in one launch, for every split-K kernel of tqk (the weight-only GEMV and GEMM, the scaled GEMM).

Each split of a tile stores its partial sums to parts[split] ([SPLIT_K, M, N], never zeroed) and counts
itself in the tile's int32 counter; the split that arrives last adds the SPLIT_K partials in order of
split, so the result is the same whatever the arrival order, writes the output in its dtype and sets the
counter back to 0. A zero-filled float32 output that the splits add into atomically, then a cast, would
be three launches; under torch.compile without CUDA graphs each costs host time on every call.

Counters come from one zeroed buffer per device (shared_counters), made when a layer is quantized or
moved, never in a call: a buffer made lazily landed in CUDA-graph trees' pool during warm-up and broke
the next replay. The kernels run one after another on a stream and each leaves its counters at zero,
so every layer of a model shares the buffer: one graph input, where each input costs CPU time on every
CUDA-graph replay.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def reduce_splits(acc, parts, stride_split, mask, counter, split, SPLIT_K: tl.constexpr):
    """Store this split's partial tile acc at parts + split * stride_split (parts: the tile's pointers into
    split 0's [M, N], any shape acc has), count it in `counter`, and return (last, total): whether this
    program arrived last and, if so, the sum of all SPLIT_K partials (zeros otherwise). The last program
    has already reset the counter; it must write the output."""
    tl.store(parts + split.to(tl.int64) * stride_split, acc, mask=mask)
    tl.debug_barrier()  # every thread's partial is stored before the count says so
    last = tl.atomic_add(counter, 1, sem="acq_rel") == SPLIT_K - 1
    total = tl.zeros(acc.shape, dtype=parts.dtype.element_ty)  # what the partials are stored as
    if last:
        for s in tl.static_range(SPLIT_K):  # a pointer step per split: no s * M * N to overflow int32
            total += tl.load(parts, mask=mask, other=0, cache_modifier=".cg")
            parts += stride_split
        tl.atomic_xchg(counter, 0, sem="relaxed")  # ready for the next call (a later launch on the stream)
    return last, total


def split_counts(counters: torch.Tensor | None, slots: int, device) -> torch.Tensor:
    """The caller's counters if they hold `slots`, else zeroed ones for this call (which costs a memset)."""
    if counters is None or counters.numel() < slots:
        return torch.zeros(slots, dtype=torch.int32, device=device)
    return counters


SHARED_COUNTER_SLOTS = 1 << 17  # 512 KiB per device: every Llama-sized layer's GEMV fits
_SHARED_COUNTERS: dict[torch.device, torch.Tensor] = {}


def shared_counters(slots: int, device) -> torch.Tensor | None:
    """The device's one zeroed int32 counter buffer, at least `slots` long (None for 0)."""
    if slots == 0:
        return None
    device = torch.device(device)
    shared = _SHARED_COUNTERS.get(device)
    if shared is None or shared.numel() < slots:
        shared = torch.zeros(max(slots, SHARED_COUNTER_SLOTS), dtype=torch.int32, device=device)
        _SHARED_COUNTERS[device] = shared
    return shared
