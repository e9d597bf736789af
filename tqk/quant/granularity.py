"""Granularities: which elements share one scale. Same names and meaning as torchao's."""
from __future__ import annotations

from dataclasses import dataclass


class Granularity:
    """Base class. `block_size(shape)` gives the torchao block_size tuple for a weight shape."""

    def block_size(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        raise NotImplementedError


@dataclass(frozen=True)
class PerTensor(Granularity):
    """One scale for the whole tensor."""

    def block_size(self, shape):
        return tuple(shape)


@dataclass(frozen=True)
class PerAxis(Granularity):
    """One scale per index along `axis` (each slice at a fixed index of `axis` shares one)."""

    axis: int = 0

    def block_size(self, shape):
        axis = self.axis % len(shape)
        return tuple(1 if i == axis else s for i, s in enumerate(shape))


@dataclass(frozen=True)
class PerRow(Granularity):
    """One scale per row of the last dimension: for a weight (out, in), one per output channel."""

    def block_size(self, shape):
        return (1,) * (len(shape) - 1) + (shape[-1],)


@dataclass(frozen=True)
class PerGroup(Granularity):
    """One scale per `group_size` consecutive elements of the last dimension."""

    group_size: int = 128

    def block_size(self, shape):
        if shape[-1] % self.group_size:
            raise ValueError(
                f"group_size={self.group_size} does not divide the last dimension {shape[-1]}"
            )
        return (1,) * (len(shape) - 1) + (self.group_size,)


@dataclass(frozen=True)
class PerBlock(Granularity):
    """One scale per block of the given shape (e.g. (128, 128) blocks of a weight)."""

    block: tuple[int, ...] = (128, 128)

    def block_size(self, shape):
        if len(self.block) != len(shape):
            raise ValueError(f"PerBlock{self.block} does not match a tensor of shape {tuple(shape)}")
        for b, s in zip(self.block, shape):
            if s % b:
                raise ValueError(f"PerBlock{self.block} does not tile a tensor of shape {tuple(shape)}")
        return tuple(self.block)
