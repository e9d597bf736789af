"""Byte/FLOP accounting, SQNR, and the outputs of the kernel sweep: table, CSV, plots.

Bytes that must move for one call y[M, N] = x[M, K] @ W.T:
    weight_bytes (packed codes + scales + zeros, as the method stores them)
  + M * K * 2   (x, bf16)
  + M * N * 2   (y, bf16)
The roofline bound of a point is the larger of bytes / memory bandwidth (the best of a copy, a sum
and a GEMV over 1-4 GiB: timing.measure_memory_bandwidth) and FLOPs / bf16-matmul rate (both
measured in the same run); "% ceiling" is bound / measured time.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import asdict, dataclass, fields
from typing import Iterable, Sequence

import torch

ACT_BYTES = 2  # bf16 activations
OUT_BYTES = 2  # bf16 outputs


def moved_bytes(M: int, N: int, K: int, weight_bytes: int, act_bytes: int = ACT_BYTES,
                out_bytes: int = OUT_BYTES) -> int:
    return int(weight_bytes) + M * K * act_bytes + M * N * out_bytes


def matmul_flops(M: int, N: int, K: int) -> int:
    return 2 * M * N * K


def sqnr_db(ref: torch.Tensor, out: torch.Tensor) -> float:
    """Signal-to-quantization-noise ratio of out against ref, in dB (inf when identical)."""
    ref = ref.detach().float()
    out = out.detach().float()
    if ref.shape != out.shape:
        raise ValueError(f"shape mismatch {tuple(ref.shape)} vs {tuple(out.shape)}")
    signal = ref.pow(2).sum().item()
    noise = (ref - out).pow(2).sum().item()
    if not math.isfinite(noise):
        return float("nan")
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * math.log10(signal / noise)


@dataclass
class Row:
    shape: str
    N: int
    K: int
    M: int
    method: str
    family: str
    median_us: float = float("nan")
    p10_us: float = float("nan")
    p90_us: float = float("nan")
    weight_bytes: int = 0
    bytes: int = 0
    flops: int = 0
    tbps: float = float("nan")
    tflops: float = float("nan")
    speedup_vs_bf16: float = float("nan")
    vs_best_peer: float = float("nan")
    best_peer: str = ""
    pct_ceiling: float = float("nan")
    bound: str = ""
    sqnr_db: float = float("nan")
    graph: bool = False
    copies: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        return math.isfinite(self.median_us) and self.median_us > 0


def make_row(shape: str, N: int, K: int, M: int, method: str, family: str, *, timing=None,
             weight_bytes: int = 0, sqnr: float = float("nan"), copies: int = 0, note: str = "") -> Row:
    row = Row(shape, N, K, M, method, family, weight_bytes=int(weight_bytes), sqnr_db=sqnr,
              copies=copies, note=note)
    row.bytes = moved_bytes(M, N, K, weight_bytes)
    row.flops = matmul_flops(M, N, K)
    if timing is not None:
        row.median_us = timing.median_s * 1e6
        row.p10_us = timing.p10_s * 1e6
        row.p90_us = timing.p90_s * 1e6
        row.graph = bool(timing.graph)
        t = timing.median_s
        row.tbps = row.bytes / t / 1e12
        row.tflops = row.flops / t / 1e12
    return row


def finalize(rows: Sequence[Row], ceilings=None) -> None:
    """Fill the relative columns: ratio to bf16, to the best peer, % of the roofline ceiling.

    The best peer of a (shape, M) point is the fastest method outside tqk (bf16 included): the
    thing a user would pick instead. vs_best_peer = t(best peer) / t(method), > 1 means faster."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault((r.shape, r.M), []).append(r)
    for group in groups.values():
        base = next((r for r in group if r.method == "bf16" and r.ok), None)
        peers = [r for r in group if r.family != "tqk" and r.ok]
        best = min(peers, key=lambda r: r.median_us) if peers else None
        for r in group:
            if not r.ok:
                continue
            if base is not None:
                r.speedup_vs_bf16 = base.median_us / r.median_us
            if best is not None:
                r.vs_best_peer = best.median_us / r.median_us
                r.best_peer = best.method
            if ceilings is not None:
                bound_s, kind = ceilings.bound_s(r.bytes, r.flops)
                r.pct_ceiling = 100.0 * bound_s / (r.median_us * 1e-6)
                r.bound = kind


# ----------------------------------------------------------------------------- table
def _fmt(v, spec: str, width: int) -> str:
    if isinstance(v, float) and not math.isfinite(v):
        s = "inf" if v == float("inf") else "-"
    else:
        s = format(v, spec)
    return s.rjust(width)


TABLE_COLUMNS = ("shape", "M", "method", "median_us", "p10-p90", "TB/s", "TFLOP/s", "x bf16",
                 "x peer", "%ceil", "SQNR dB", "note")


def sort_rows(rows: Iterable[Row]) -> list[Row]:
    """Group by (shape, M) in first-seen shape order, methods in their original order."""
    rows = list(rows)
    shape_idx: dict[str, int] = {}
    for r in rows:
        shape_idx.setdefault(r.shape, len(shape_idx))
    return sorted(rows, key=lambda r: (shape_idx[r.shape], r.M))  # stable: keeps method order


def format_table(rows: Iterable[Row], ceilings=None) -> str:
    rows = sort_rows(rows)
    lines = []
    if ceilings is not None:
        lines.append(f"ceilings: memory {ceilings.memory_bytes_per_s / 1e12:.2f} TB/s ({ceilings.memory_kernel}), "
                     f"bf16 matmul {ceilings.matmul_flops_per_s / 1e12:.1f} TFLOP/s (n={ceilings.matmul_n})")
    sw = max([len("shape")] + [len(r.shape) for r in rows])
    mw = max([len("method")] + [len(r.method) for r in rows])
    head = (f"{'shape'.ljust(sw)} {'M':>5} {'method'.ljust(mw)} {'median_us':>10} {'p10-p90 us':>17} "
            f"{'TB/s':>6} {'TFLOP/s':>8} {'x bf16':>7} {'x peer':>7} {'%ceil':>9} {'SQNR dB':>8}  note")
    lines += [head, "-" * len(head)]
    last = None
    for r in rows:
        if last is not None and (r.shape, r.M) != last:
            lines.append("")
        last = (r.shape, r.M)
        spread = f"{r.p10_us:.1f}-{r.p90_us:.1f}" if r.ok else "-"
        ceil = f"{r.pct_ceiling:.0f}% {r.bound[:3]}" if math.isfinite(r.pct_ceiling) else "-"
        note = r.note + ("" if r.graph or not r.ok else " [no graph]")
        lines.append(
            f"{r.shape.ljust(sw)} {r.M:>5} {r.method.ljust(mw)} {_fmt(r.median_us, '.1f', 10)} {spread:>17} "
            f"{_fmt(r.tbps, '.2f', 6)} {_fmt(r.tflops, '.1f', 8)} {_fmt(r.speedup_vs_bf16, '.2f', 7)} "
            f"{_fmt(r.vs_best_peer, '.2f', 7)} {ceil:>9} {_fmt(r.sqnr_db, '.1f', 8)}  {note.strip()}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CSV
CSV_FIELDS = [f.name for f in fields(Row)]
_TYPES = {f.name: f.type for f in fields(Row)}


def write_csv(rows: Iterable[Row], path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS)
        w.writeheader()
        for r in sort_rows(rows):
            w.writerow(asdict(r))
    return path


def _parse(name: str, text: str):
    typ = _TYPES[name]
    if typ in ("int", int):
        return int(text)
    if typ in ("float", float):
        return float(text) if text != "" else float("nan")
    if typ in ("bool", bool):
        return text == "True"
    return text


def read_csv(path: str) -> list[Row]:
    with open(path, newline="") as fh:
        return [Row(**{k: _parse(k, v) for k, v in rec.items()}) for rec in csv.DictReader(fh)]


def write_ceilings_csv(ceilings, path: str, device_name: str = "") -> str:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["device", "memory_TBps", "memory_kernel", "bf16_matmul_TFLOPs", "matmul_n"])
        w.writerow([device_name, f"{ceilings.memory_bytes_per_s / 1e12:.4f}", ceilings.memory_kernel,
                    f"{ceilings.matmul_flops_per_s / 1e12:.2f}", ceilings.matmul_n])
    return path


# ----------------------------------------------------------------------------- plots
def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


def plot_speedups(rows: Sequence[Row], out_dir: str, title_suffix: str = "") -> list[str]:
    """One PNG per shape: speedup over bf16 against M (log2 x axis), one line per method.
    Returns the written paths ([] when matplotlib is missing)."""
    if not have_matplotlib():
        return []
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    shapes = list(dict.fromkeys(r.shape for r in rows))
    for shape in shapes:
        srows = [r for r in rows if r.shape == shape and math.isfinite(r.speedup_vs_bf16)]
        if not srows:
            continue
        fig, ax = plt.subplots(figsize=(8, 5))
        methods = list(dict.fromkeys(r.method for r in srows))
        for m in methods:
            pts = sorted((r.M, r.speedup_vs_bf16) for r in srows if r.method == m)
            fam = next(r.family for r in srows if r.method == m)
            style = {"tqk": dict(linewidth=2.2, marker="o"), "baseline": dict(color="black", linestyle="--"),
                     "peer": dict(linewidth=1.2, marker=".", alpha=0.85)}[fam if fam in ("tqk", "baseline") else "peer"]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=m, **style)
        ax.set_xscale("log", base=2)
        ms = sorted({r.M for r in srows})
        ax.set_xticks(ms)
        ax.set_xticklabels([str(m) for m in ms], fontsize=8)
        ax.minorticks_off()
        ax.set_xlabel("M (tokens)")
        ax.set_ylabel("speedup over bf16 F.linear")
        first = srows[0]
        ax.set_title(f"{shape}  N={first.N} K={first.K}{title_suffix}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in shape)
        path = os.path.join(out_dir, f"speedup_{safe}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
