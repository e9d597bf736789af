"""Timing: CUDA-graph replay over enough weight copies to defeat the L2, the physical ceilings, and
whole decode steps (wall and host CPU per step, and the step replayed as one CUDA graph).

How one point is timed on a GPU (`time_calls`):
  1. warm-up outside the graph: every callable runs `warmup` times (Triton autotuning,
     torch.compile, cuBLAS heuristics all happen here, never inside a timed region);
  2. one eager round is timed to size the graph: the graph holds `rounds` passes over all
     weight copies so that a replay lasts at least `min_replay_s` (launch cost of the graph
     itself becomes negligible);
  3. the graph is captured, replayed for `settle_s` untimed (the first tens of milliseconds of
     replays over freshly made copies can run slow), then replayed `reps` times, each replay
     bracketed by CUDA events;
     per-call time = replay time / (rounds * copies). Median, p10 and p90 are reported.
If capture fails (a method that is not graph-safe) the same protocol runs eagerly and the
result is flagged `graph=False`.

On CPU (tests, tiny shapes through the Triton interpreter) the same API times with
time.perf_counter and no graph.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

DEFAULT_L2_BYTES = 50 * 1024 * 1024  # H100's L2, used when the device does not say


@dataclass
class Timing:
    median_s: float
    p10_s: float
    p90_s: float
    samples: int
    calls_per_sample: int
    graph: bool

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: the relative spread of the per-call time."""
        return (self.p90_s - self.p10_s) / self.median_s if self.median_s > 0 else float("nan")


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile, q in [0, 1] (numpy's default method)."""
    v = sorted(values)
    if not v:
        raise ValueError("no values")
    if len(v) == 1:
        return float(v[0])
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def summarize(per_call_s: Sequence[float], calls_per_sample: int, graph: bool) -> Timing:
    return Timing(
        median_s=float(statistics.median(per_call_s)),
        p10_s=quantile(per_call_s, 0.10),
        p90_s=quantile(per_call_s, 0.90),
        samples=len(per_call_s),
        calls_per_sample=calls_per_sample,
        graph=graph,
    )


def l2_cache_bytes(device=None) -> int:
    if not torch.cuda.is_available():
        return DEFAULT_L2_BYTES
    props = torch.cuda.get_device_properties(device if device is not None else torch.cuda.current_device())
    return int(getattr(props, "L2_cache_size", 0) or DEFAULT_L2_BYTES)


def copies_needed(weight_bytes: int, l2_bytes: int, factor: float = 3.0, max_copies: int = 1024) -> int:
    """Number of distinct weight copies whose bytes add up to at least factor x L2."""
    if weight_bytes <= 0:
        return 1
    return int(max(1, min(max_copies, math.ceil(factor * l2_bytes / weight_bytes))))


def _is_cuda(x) -> bool:
    return isinstance(x, torch.Tensor) and x.is_cuda


def time_calls(
    fns: Sequence[Callable[[torch.Tensor], object]],
    x: torch.Tensor,
    *,
    reps: int = 30,
    warmup: int = 3,
    min_replay_s: float = 1e-3,
    max_rounds: int = 200,
    use_graph: bool = True,
    settle_s: float = 0.1,
) -> Timing:
    """Time one call of fns[i](x), cycling over all fns (one per weight copy)."""
    if not fns:
        raise ValueError("no callables to time")
    if not _is_cuda(x):
        return _time_cpu(fns, x, reps=reps, warmup=warmup)
    return _time_cuda(fns, x, reps=reps, warmup=warmup, min_replay_s=min_replay_s,
                      max_rounds=max_rounds, use_graph=use_graph, settle_s=settle_s)


def _time_cpu(fns, x, *, reps: int, warmup: int) -> Timing:
    for _ in range(max(1, warmup)):
        for f in fns:
            f(x)
    per_call = []
    for _ in range(max(1, reps)):
        t0 = time.perf_counter()
        for f in fns:
            f(x)
        per_call.append((time.perf_counter() - t0) / len(fns))
    return summarize(per_call, len(fns), graph=False)


def _time_cuda(fns, x, *, reps, warmup, min_replay_s, max_rounds, use_graph, settle_s) -> Timing:
    # 1. warm-up on a side stream (what graph capture expects), outside any graph.
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(max(1, warmup)):
            for f in fns:
                f(x)
    torch.cuda.current_stream().wait_stream(side)
    torch.cuda.synchronize()

    # 2. size the graph from one eager round.
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for f in fns:
        f(x)
    end.record()
    torch.cuda.synchronize()
    round_s = max(start.elapsed_time(end) / 1e3, 1e-7)
    rounds = int(max(1, min(max_rounds, math.ceil(min_replay_s / round_s))))
    reps = max(3, min(reps, int(2.0 / (round_s * rounds))))  # at most ~2 s per point for slow methods

    def one_sample():
        for _ in range(rounds):
            for f in fns:
                f(x)

    graph = None
    if use_graph:
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                one_sample()
            graph.replay()
            torch.cuda.synchronize()
        except Exception:  # not capturable: fall back to eager timing
            graph = None
            torch.cuda.synchronize()
    captured = graph is not None
    run = graph.replay if captured else one_sample

    # settle: replay for about settle_s before timing. On the H100 the first tens of
    #    milliseconds of replays over freshly made weight copies ran up to 15% slower for some
    #    kernels (tqk's GEMVs; not cuBLAS), then stayed at the fast level: not the steady state a
    #    model decodes in (docs/perf-notes.md 17).
    for _ in range(int(min(1000, math.ceil(settle_s / (round_s * rounds))))):
        run()
    torch.cuda.synchronize()

    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for s, e in events:
        s.record()
        run()
        e.record()
    torch.cuda.synchronize()
    calls = rounds * len(fns)
    per_call = [s.elapsed_time(e) / 1e3 / calls for s, e in events]
    del graph, run
    return summarize(per_call, calls, graph=captured)


# ----------------------------------------------------------------------------- ceilings
@dataclass
class Ceilings:
    memory_bytes_per_s: float  # the best of measure_memory_bandwidth's kernels
    matmul_flops_per_s: float  # large bf16 matmul
    memory_kernel: str = ""  # which kernel and size set memory_bytes_per_s
    memory_timing: Timing | None = None
    matmul_timing: Timing | None = None
    matmul_n: int = 0

    def bound_s(self, nbytes: float, flops: float) -> tuple[float, str]:
        """The roofline bound for moving nbytes and doing flops: (seconds, 'memory'|'compute')."""
        t_mem = nbytes / self.memory_bytes_per_s if self.memory_bytes_per_s > 0 else 0.0
        t_cmp = flops / self.matmul_flops_per_s if self.matmul_flops_per_s > 0 else 0.0
        return (t_mem, "memory") if t_mem >= t_cmp else (t_cmp, "compute")


def measure_memory_bandwidth(device="cuda", sizes=(1 << 30, 2 << 30, 4 << 30),
                             reps: int = 20) -> tuple[float, str, Timing]:
    """The memory ceiling: the best bytes/s among memory-bound kernels over buffers of each size.

    Each kernel is timed with time_calls (CUDA-graph replay, median) and counts the bytes it must move:
      copy   dst.copy_(src): read + write, 2 x size;
      sum    src.sum(): the bytes read, size;
      gemv   F.linear(x [1, 4096], src as a bf16 [size / 8192, 4096] weight): the weight's bytes.
    Returns (bytes/s, "kernel size", its Timing) of the fastest. A read stream runs faster than a copy
    on HBM (no turning the bus round between reads and writes): on an H200 the copy alone gave
    2.71 TB/s while bf16 F.linear at M=1 read 4.29 TB/s, so a copy-only ceiling put bf16 at 158%.
    The best of the three, on buffers far larger than the L2, is a ceiling no weight-streaming
    kernel should pass; the sizes are several so one lucky or unlucky size does not set it.
    """
    best = (0.0, "", None)
    for nbytes in sizes:
        src = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device).normal_()
        dst = torch.empty_like(src)
        weight = src[: src.numel() // 4096 * 4096].view(-1, 4096)
        x = torch.randn(1, 4096, dtype=torch.bfloat16, device=device)
        label = f"{nbytes / 2**30:g} GiB" if nbytes >= 1 << 30 else f"{nbytes >> 20} MiB"
        kernels = (("copy", lambda _x: dst.copy_(src), 2 * nbytes),
                   ("sum", lambda _x: src.sum(), nbytes),
                   ("gemv", lambda _x: torch.nn.functional.linear(_x, weight), weight.numel() * 2))
        for name, fn, moved in kernels:
            t = time_calls([fn], x, reps=reps, warmup=2)
            if moved / t.median_s > best[0]:
                best = (moved / t.median_s, f"{name} {label}", t)
        del src, dst, weight
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()
    return best


def measure_matmul_flops(n: int = 8192, device="cuda", reps: int = 20) -> tuple[float, Timing]:
    """FLOP/s of an n x n x n bf16 matmul (cuBLAS)."""
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    t = time_calls([lambda _x: torch.mm(a, b)], a[:1], reps=reps, warmup=3)
    return 2.0 * n**3 / t.median_s, t


def measure_ceilings(device="cuda", matmul_n: int = 8192, reps: int = 20) -> Ceilings:
    bw, kernel, tb = measure_memory_bandwidth(device, reps=reps)
    fl, tm = measure_matmul_flops(matmul_n, device, reps)
    torch.cuda.empty_cache()
    return Ceilings(bw, fl, kernel, tb, tm, matmul_n)


# ----------------------------------------------------------------------------- whole decode steps
def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], n: int, device, repeats: int = 3,
               rewind: Callable[[], object] = lambda: None) -> tuple[float, float]:
    """(wall, host CPU) seconds per call of step(), each the median over `repeats` loops of n calls.

    wall: perf_counter from a synchronized start to the synchronize after the n-th call, over n.
    CPU: time.thread_time() of each call alone, started from an idle device (a synchronize before
    it, outside the timed span), summed over n calls: the host's own cost per step (Python, guards,
    CUDA-graph replay, launches). A launch into an empty queue returns at once, so no wait for the
    GPU is counted. Timed over the back-to-back wall loop instead, a graph launch can block inside
    the driver once the GPU falls behind, and that wait read as CPU time: up to 2x the host's cost
    in the H200 runs of docs/perf-notes.md (24). Thread time, not process time: compile workers and
    driver threads do not count, nor does time the thread is descheduled. step() must not wait on
    the device itself (no .item(), no copy to pageable host memory). rewind() runs, untimed, between
    the two loops: a decode step can go back n positions, so the KV cache holds n per repeat.
    """
    walls, cpus = [], []
    for _ in range(max(1, repeats)):
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            step()
        _sync(device)
        walls.append((time.perf_counter() - t0) / n)
        rewind()
        cpu = 0.0
        for _ in range(n):
            _sync(device)
            c0 = time.thread_time()
            step()
            cpu += time.thread_time() - c0
        cpus.append(cpu / n)
    return statistics.median(walls), statistics.median(cpus)


def host_readings(step: Callable[[], object], n: int, device, rewind: Callable[[], object] = lambda: None,
                  stall_s: float = 0.25, rounds: int = 3) -> dict:
    """Two more readings of the host's cost per step (seconds), to set beside time_steps' idle one:
    "queued": thread CPU time over n back-to-back steps (a launch may wait in the driver once the GPU
    falls behind, and that wait counts); "stalled": thread CPU time per step of n steps issued while
    the GPU sleeps (torch.cuda._sleep), so no launch finds the GPU ready and nothing the host does can
    be a wait for a step: only a synchronization inside step() would show, as the whole stall.
    Each is the median of `rounds` readings: one reading of a config has come out 2.2x its others on
    the H200's shared host (tqk-int8, 0.469 ms in run 3 of 2026-12-02 against 0.20-0.23 alone).
    rewind() runs before each loop: after time_steps the step stands n positions past where its
    last loop began, and a decode step must not run past its KV cache. On a CPU "stalled" is NaN."""
    queued, stalled = [], []
    for _ in range(rounds):
        _sync(device)
        rewind()
        c0 = time.thread_time()
        for _ in range(n):
            step()
        queued.append((time.thread_time() - c0) / n)
        _sync(device)
        if torch.device(device).type == "cuda":
            rewind()
            torch.cuda._sleep(int(stall_s * 2e9))  # cycles: about stall_s at the H100/H200's 1.98 GHz
            c0 = time.thread_time()
            for _ in range(n):
                step()
            stalled.append((time.thread_time() - c0) / n)
            _sync(device)
    return {"queued": statistics.median(queued), "stalled": statistics.median(stalled) if stalled else math.nan}


def interleaved(loops: dict[str, tuple[Callable[[], object], Callable[[], object]]], n: int, device,
                rounds: int = 6) -> dict[str, dict]:
    """Wall and queued host CPU per step of several step functions, their n-step loops taken in turn
    in one process: A B, then B A, round after round. A host-bound step (no CUDA graphs, or a graph's
    CPU per replay) reads up to 1.4x apart from one minute to the next on the H200's shared host, and
    uniformly so (a cProfile of two windows: every function ~40% slower in one); a ratio of loops run
    side by side cancels that, a ratio of two runs a minute apart does not. loops: name -> (step,
    rewind), rewind() run untimed before each loop, taking the step back n positions (each step has
    run n steps already, as after time_steps), so every loop decodes the same positions.
    Returns name -> {"wall", "cpu": medians in seconds, "walls", "cpus": per round}."""
    got = {k: {"walls": [], "cpus": []} for k in loops}
    names = list(loops)
    for r in range(rounds):
        for k in (names if r % 2 == 0 else names[::-1]):
            step, rewind = loops[k]
            rewind()
            _sync(device)
            t0, c0 = time.perf_counter(), time.thread_time()
            for _ in range(n):
                step()
            cpu = time.thread_time() - c0
            _sync(device)
            got[k]["walls"].append((time.perf_counter() - t0) / n)
            got[k]["cpus"].append(cpu / n)
    for v in got.values():
        v["wall"], v["cpu"] = statistics.median(v["walls"]), statistics.median(v["cpus"])
    return got


def median_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """The median of num[i] / den[i]: a ratio per round of an interleaved run, not a ratio of medians."""
    return statistics.median(a / b for a, b in zip(num, den))


def graph_floor(step: Callable[[], object], replays: int = 20, repeats: int = 5) -> float:
    """Seconds per replay of step() captured as one CUDA graph: the GPU time of a step with no host
    cost between its kernels. Warm-up on a side stream, as capture wants; then the median over
    `repeats` of `replays` back-to-back replays bracketed by CUDA events (each replay is one launch
    issued while the previous one runs, so the gaps between them are a few microseconds)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(replays):
            graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / replays)
    del graph
    return statistics.median(times)
