"""Storage: a quantized layer's tensors (codes, scales, zero points, codebook table) in one int32 buffer.

Why one buffer: under torch.compile every tensor a layer holds is a graph input, and each input costs
host time on every call, CUDA-graph replays included: dynamo's frame fetches it, AOTAutograd and
CUDA-graph trees walk it. bf16 has one per linear (the weight); codes and scales as two buffers made
a quantized decode step's replay cost 1.5-1.7x bf16's CPU time on the H200 (docs/perf-notes.md).

    data  int32 [total]   segment after segment, each at a 16-byte boundary:
          packed | scales | zeros (if any) | table (if any)

The weight-only kernels take `data` itself and the segments' byte offsets (kernel_args), and cast the
pointers inside (tqk/kernels/weight_only.py, stored_pointers): the graph holds no view of it, so default
mode's generated code builds none per call either. The scaled GEMM takes views of it (view_at), which
compile to views. A layout says which in its stored_call (tqk/layouts/base.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

NAMES = ("packed", "scales", "zeros", "table")
ALIGN_WORDS = 4  # 16 bytes: the kernels' vector loads, and what Triton's divisibility hints assume


@dataclass(frozen=True)
class Segment:
    offset: int  # in int32 words
    shape: tuple
    dtype: torch.dtype
    follows_model: bool  # cast with the model (.half(), .to(torch.float32)): float scales, zero points, table

    @property
    def words(self) -> int:
        return -(-torch.Size(self.shape).numel() * self.dtype.itemsize // 4)

    def view(self, data: torch.Tensor) -> torch.Tensor:
        return view_at(data, self.offset, self.shape, self.dtype)

    def as_tuple(self) -> tuple:
        """(offset, shape, dtype): view_at's arguments, constants a compiled graph takes without guards."""
        return self.offset, self.shape, self.dtype


def view_at(data: torch.Tensor, offset: int, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """The [shape] tensor of `dtype` at int32 word `offset` of `data`: a view."""
    numel = torch.Size(shape).numel()
    flat = data[offset:offset - (-numel * dtype.itemsize // 4)].view(dtype)
    return (flat if flat.numel() == numel else flat[:numel]).view(shape)


@dataclass(frozen=True)
class Storage:
    """Where each tensor of a layer sits in its buffer; hashable (a compiled graph's constant)."""

    segments: tuple  # ((name, Segment), ...) in NAMES order, the absent ones left out

    @classmethod
    def pack(cls, tensors: dict, follows: dict) -> tuple["Storage", torch.Tensor]:
        """tensors: name -> tensor or None (NAMES); follows: name -> bool. Returns (storage, data)."""
        segments, pieces, offset = [], [], 0
        for name in NAMES:
            t = tensors.get(name)
            if t is None:
                continue
            seg = Segment(offset, tuple(t.shape), t.dtype, bool(follows.get(name, False)))
            words = -(-seg.words // ALIGN_WORDS) * ALIGN_WORDS
            flat = torch.empty(t.numel(), dtype=t.dtype, device=t.device)  # a dense copy, whatever t's strides (a
            raw = flat.copy_(t.detach().reshape(-1)).view(torch.uint8)      # one-element scale may have stride 0)
            piece = torch.zeros(words * 4, dtype=torch.uint8, device=t.device)
            piece[:raw.numel()] = raw
            pieces.append(piece)
            segments.append((name, seg))
            offset += words
        data = torch.cat(pieces).view(torch.int32)
        return cls(tuple(segments)), data

    def get(self, data: torch.Tensor, name: str) -> torch.Tensor | None:
        seg = dict(self.segments).get(name)
        return None if seg is None else seg.view(data)

    def has(self, name: str) -> bool:
        return name in dict(self.segments)

    def cast(self, data: torch.Tensor, dtype: torch.dtype) -> tuple["Storage", torch.Tensor]:
        """The buffer with the segments that follow the model cast to `dtype` (a float cast of the model)."""
        tensors = {}
        for name, seg in self.segments:
            t = seg.view(data)
            tensors[name] = t.to(dtype) if seg.follows_model else t
        return Storage.pack(tensors, {name: seg.follows_model for name, seg in self.segments})

    def kernel_args(self) -> list[int]:
        """[words per row, n_groups, scale, zero, table byte offsets (-1: absent)]: what the weight-only
        op passes its kernel beside `data` (the codes sit at offset 0)."""
        seg = dict(self.segments)
        packed, scales = seg["packed"], seg["scales"]
        assert packed.offset == 0 and len(packed.shape) == 2, "the codes lead the buffer as [N, words]"
        return [packed.shape[1], scales.shape[0]] + [seg[n].offset * 4 if n in seg else -1
                                                   for n in ("scales", "zeros", "table")]


def stored_views(data: torch.Tensor, args: list[int], fmt, n: int, dtype: torch.dtype) -> tuple:
    """(packed, scales, zeros, table) of a weight-only layer's buffer from its kernel_args alone, as the
    kernels read them (tqk/kernels/weight_only.py, stored_pointers): the op's backward has no Storage."""
    words, n_groups, scale_off, zero_off, table_off = args
    raw = data.view(torch.uint8)

    def at(offset, shape, dt):
        if offset < 0:
            return None
        numel = torch.Size(shape).numel()
        return raw[offset:offset + numel * dt.itemsize].view(dt).view(shape)

    scale_dtype = dtype if fmt.scale_fmt == "float" else torch.uint8
    zeros = (at(zero_off, (1,), torch.float32) if fmt.scale_fmt == "e4m3" else at(zero_off, (n_groups, n), dtype))
    table_shape = (1 << fmt.bits,) if fmt.vector_size == 1 else (1 << fmt.bits, fmt.vector_size)
    return (data[:n * words].view(n, words), at(scale_off, (n_groups, n), scale_dtype), zeros,
            at(table_off, table_shape, dtype))
