"""Bit-plane packing of integer codes into int32 words, in the order tqk's kernels read.

A row of K codes (each < 2**bits) is cut into blocks of per_word * span codes (the row is padded
with zero codes to a whole number of blocks). Block b becomes `span` words; word s holds

    bits [j*bits, (j+1)*bits) = code b*block + j*span + s      for j = 0 .. per_word-1

    codes of one block:  | plane 0: s=0..span-1 | plane 1 | ... | plane per_word-1 |
    word s:              | plane per_word-1 [s] | ... | plane 1 [s] | plane 0 [s] |  (MSB..LSB)

so a kernel that loads `span` consecutive words and shifts by j*bits gets plane j: `span`
consecutive codes, ready to meet `span` consecutive activations.
"""
from __future__ import annotations

import torch


def codes_per_word(bits: int) -> int:
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    return 1 << ((32 // bits).bit_length() - 1)


def pack_planes(codes: torch.Tensor, bits: int, span: int) -> torch.Tensor:
    """uint8 codes [N, K] -> int32 words [N, ceil(K / block) * span]."""
    if codes.dtype != torch.uint8 or codes.dim() != 2:
        raise TypeError(f"pack_planes wants 2-D uint8 codes, got {codes.dtype} of shape {tuple(codes.shape)}")
    if codes.numel() and int(codes.max()) >= 1 << bits:
        raise ValueError(f"a code does not fit in {bits} bits (max {int(codes.max())})")
    per_word = codes_per_word(bits)
    n, k = codes.shape
    block = per_word * span
    padded = -(-k // block) * block
    c = torch.nn.functional.pad(codes.to(torch.int64), (0, padded - k))
    c = c.view(n, padded // block, per_word, span)
    shifts = (torch.arange(per_word, device=codes.device, dtype=torch.int64) * bits).view(1, 1, per_word, 1)
    words = (c << shifts).sum(dim=2)  # planes occupy disjoint bits: the sum is an OR
    words = torch.where(words >= 2**31, words - 2**32, words)  # two's complement for the top bit
    return words.to(torch.int32).reshape(n, -1).contiguous()


def unpack_planes(words: torch.Tensor, bits: int, span: int, k: int) -> torch.Tensor:
    """The inverse of pack_planes: int32 words [N, W] -> uint8 codes [N, k]."""
    per_word = codes_per_word(bits)
    n, w = words.shape
    shifts = (torch.arange(per_word, device=words.device, dtype=torch.int64) * bits).view(1, 1, per_word, 1)
    x = words.to(torch.int64).view(n, w // span, 1, span)
    codes = (x >> shifts) & ((1 << bits) - 1)
    return codes.reshape(n, -1)[:, :k].to(torch.uint8)
