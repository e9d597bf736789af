"""Which kernel and tile a call uses: measured configs as data, a heuristic for the rest.

Configs live in autotune_results/<gpu name>.json (written by `python -m tqk.tune`), keyed by
"<format key>:<N>x<K>:m<M bucket>": KernelConfig's fields for the weight-only family, ScaledConfig's
(tqk/kernels/scaled_mm.py, format keys "scaled_...") for the activation-quantized GEMM. A shape that
is not in the GPU's own file is looked up in the files of its siblings (same compute capability and
multiprocessor count, e.g. an H200 reads the H100's: the same SMs, so the same tiles fit and the same
schedules fill the chip), then gets the heuristic, so a call never autotunes on the hot path. Files
are read once per process.
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

M_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
# Dynamic M, traced once per region (tqk.ops): (last M of the region, the M whose config it runs). Static M
# (every CUDA-graph decode step, dynamo's first compile) gets its own bucket's config instead.
M_REGIONS = ((64, 16), (None, 2048))


@dataclass(frozen=True)
class KernelConfig:
    kernel: str  # "gemv" | "gemm"
    block_n: int
    block_m: int = 1
    split_k: int = 1
    group_n: int = 8
    num_warps: int = 4
    num_stages: int = 2
    one_dot: bool = False  # gemm: one dot per packed block instead of one per bit plane
    block_scale: bool = False  # gemm: a group scale shared by a K block scales the block's partial
    #                            product (always done when block_m <= 32) instead of each element
    trip_blocks: int = 2  # gemv: packed blocks decoded per loop trip (1 or 2; 2-16 if wide), the next
    #                       trip's loading meanwhile
    adjacent_splits: bool = False  # gemv: the K splits of one row tile are launched side by side
    wide: bool = False  # gemv: a trip's blocks of each row are loaded as one tile (whole 128-byte lines)
    biased: bool = False  # gemv, not wide: codes that allow it (WeightFormat.gemv_bias) decode with no FADD,
    #                       the bias taken off per block with the zero point

    def __post_init__(self):
        if self.kernel not in ("gemv", "gemm"):
            raise ValueError(f"KernelConfig.kernel must be 'gemv' or 'gemm', got {self.kernel!r}")
        if self.trip_blocks not in ((2, 4, 8, 16) if self.wide else (1, 2)):
            raise ValueError(f"KernelConfig.trip_blocks must be 1 or 2 (2, 4, 8 or 16 with wide=True), "
                             f"got {self.trip_blocks!r}")
        if self.biased and self.wide:
            raise ValueError("KernelConfig.biased is for narrow GEMV trips: wide=True takes biased=False")

    def to_json(self) -> dict:
        return asdict(self)


def m_bucket(m: int) -> int:
    for b in M_BUCKETS:
        if m <= b:
            return b
    return M_BUCKETS[-1]


def largest_m(bucket: int) -> int:
    """The largest M that runs this bucket's config: the bucket, or under dynamic shapes the last M of
    the region it stands in for. The open last region has none: a split-K call beyond the bucket there
    finds too few counters and zeroes its own."""
    return max([bucket] + [last for last, stand_in in M_REGIONS if last is not None and m_bucket(stand_in) == bucket])


def results_dir() -> Path:
    """$TQK_AUTOTUNE_DIR, else autotune_results/ beside the package (a source checkout)."""
    env = os.environ.get("TQK_AUTOTUNE_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "autotune_results"


def results_file(device_name: str) -> Path:
    return results_dir() / (re.sub(r"[^A-Za-z0-9.-]+", "_", device_name).strip("_") + ".json")


@dataclass(frozen=True)
class GpuTraits:
    """What decides whether one GPU's tuned tiles suit another."""

    name: str
    capability: tuple  # (major, minor)
    multiprocessors: int

    def to_json(self) -> dict:
        return dict(device=self.name, capability=list(self.capability), multiprocessors=self.multiprocessors)


@functools.lru_cache(maxsize=None)
def gpu_traits(index: int = 0) -> GpuTraits:
    p = torch.cuda.get_device_properties(index)
    return GpuTraits(p.name, (p.major, p.minor), p.multi_processor_count)


@functools.lru_cache(maxsize=None)
def _read_table(path: Path) -> tuple[dict, dict]:
    """(metadata, {key: the entry's fields}) of one results file: KernelConfig's for the weight-only
    family, ScaledConfig's (tqk/kernels/scaled_mm.py) for keys of the scaled family."""
    data = json.loads(path.read_text())
    return {k: v for k, v in data.items() if k != "configs"}, dict(data["configs"])


@functools.lru_cache(maxsize=None)
def tuned_files(gpu: GpuTraits) -> tuple[Path, ...]:
    """The results files a GPU reads, in order: its own, then its siblings' by name."""
    own = results_file(gpu.name)
    siblings = []
    for path in sorted(results_dir().glob("*.json")) if results_dir().is_dir() else ():
        if path == own:
            continue
        meta, _ = _read_table(path)
        if tuple(meta.get("capability", ())) == gpu.capability and meta.get("multiprocessors") == gpu.multiprocessors:
            siblings.append(path)
    return ((own,) if own.exists() else ()) + tuple(siblings)


def table_key(format_key: str, n: int, k: int, m: int) -> str:
    return f"{format_key}:{n}x{k}:m{m_bucket(m)}"


def tuned_entry(format_key: str, n: int, k: int, m: int, gpu: GpuTraits) -> dict | None:
    """The fields of the tuned entry for this format, shape and M's bucket: the GPU's own file first,
    then its siblings'; None if none has it."""
    key = table_key(format_key, n, k, m)
    for path in tuned_files(gpu):
        found = _read_table(path)[1].get(key)
        if found is not None:
            return found
    return None


@functools.lru_cache(maxsize=4096)
def _select(format_key: str, n: int, k: int, bucket: int, gpu: GpuTraits | None) -> KernelConfig:
    if gpu is None:
        return heuristic(n, k, bucket, interpreted=True)
    found = tuned_entry(format_key, n, k, bucket, gpu)
    return KernelConfig(**found) if found is not None else heuristic(n, k, bucket)


def select_config(format_key: str, n: int, k: int, m: int, device: torch.device) -> KernelConfig:
    gpu = gpu_traits(device.index or 0) if device.type == "cuda" else None
    return _select(format_key, n, k, m_bucket(m), gpu)


def heuristic(n: int, k: int, m: int, interpreted: bool = False) -> KernelConfig:
    """Tiles for shapes never tuned: enough programs to fill ~132 SMs, fewer for the interpreter."""
    if interpreted:  # the interpreter pays per program and per loop trip: few, large tiles (256 rows
        #             ran MiniLM's layers 2.5-5x faster than 64)
        if m <= 2:
            return KernelConfig("gemv", block_n=min(256, _pow2_at_least(n)))
        return KernelConfig("gemm", block_n=min(256, max(16, _pow2_at_least(n))),
                            block_m=min(64, max(16, _pow2_at_least(m))))
    if m <= 2:  # the H100 tuning's pattern: 4 rows per thread, K split until ~1000 programs
        tiles = -(-n // 64)
        split_k = 1 << max(0, min(3, (1024 // max(tiles, 1)).bit_length() - 1))
        return KernelConfig("gemv", block_n=64, num_warps=2, num_stages=2, split_k=split_k)
    if m <= 64:
        block_m = max(16, _pow2_at_least(m))
        tiles = -(-n // 64)
        split_k = max(1, min(8, 264 // max(tiles, 1)))
        return KernelConfig("gemm", block_n=64, block_m=block_m, split_k=split_k, num_warps=4, num_stages=4)
    if m <= 256:
        return KernelConfig("gemm", block_n=128, block_m=64, num_warps=4, num_stages=4)
    return KernelConfig("gemm", block_n=128, block_m=128, num_warps=8, num_stages=3)


def _pow2_at_least(v: int) -> int:
    return 1 << max(0, (v - 1).bit_length())
