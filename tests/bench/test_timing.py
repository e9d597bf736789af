"""Timing helpers on CPU (the CUDA-graph path needs a GPU and is exercised by the GPU run)."""
import math
import time

import pytest
import torch

from tqk.bench import timing


def test_quantile_matches_numpy_linear():
    np = pytest.importorskip("numpy")
    vals = [5.0, 1.0, 3.0, 9.0, 7.0, 2.0]
    for q in (0.0, 0.1, 0.5, 0.9, 1.0):
        assert timing.quantile(vals, q) == pytest.approx(float(np.quantile(vals, q)))
    assert timing.quantile([4.0], 0.9) == 4.0
    with pytest.raises(ValueError):
        timing.quantile([], 0.5)


def test_summarize_and_spread():
    t = timing.summarize([1.0, 2.0, 3.0, 4.0, 5.0], calls_per_sample=7, graph=True)
    assert t.median_s == 3.0 and t.p10_s == pytest.approx(1.4) and t.p90_s == pytest.approx(4.6)
    assert t.calls_per_sample == 7 and t.samples == 5 and t.graph
    assert t.spread == pytest.approx((4.6 - 1.4) / 3.0)


def test_copies_needed_exceeds_l2():
    l2 = 50 * 2**20
    for wbytes in (1, 4096 * 4096 // 2, 4096 * 4096 * 2, 10**9):
        n = timing.copies_needed(wbytes, l2, factor=3.0)
        assert n >= 1
        assert n * wbytes >= 3 * l2 or n == 1024
        if n > 1:
            assert (n - 1) * wbytes < 3 * l2
    assert timing.copies_needed(10**9, l2) == 1
    assert timing.copies_needed(0, l2) == 1


def test_time_calls_cpu_cycles_all_copies():
    calls = []
    fns = [lambda x, i=i: calls.append(i) or x * 2 for i in range(3)]
    t = timing.time_calls(fns, torch.ones(4), reps=4, warmup=1)
    assert t.samples == 4 and t.calls_per_sample == 3 and not t.graph
    assert t.median_s > 0 and t.p10_s <= t.median_s <= t.p90_s
    assert calls == [0, 1, 2] * 5  # 1 warm-up round + 4 timed rounds, every copy each time
    with pytest.raises(ValueError):
        timing.time_calls([], torch.ones(1))


def test_ceiling_bound_picks_larger():
    c = timing.Ceilings(memory_bytes_per_s=2e12, matmul_flops_per_s=1e15)
    assert c.bound_s(2e9, 1e9) == (pytest.approx(1e-3), "memory")
    assert c.bound_s(1e3, 1e15) == (pytest.approx(1.0), "compute")


def test_l2_default_without_gpu():
    if not torch.cuda.is_available():
        assert timing.l2_cache_bytes() == timing.DEFAULT_L2_BYTES
    assert not math.isnan(timing.l2_cache_bytes())


def test_memory_bandwidth_takes_the_best_kernel_and_size():
    bw, kernel, t = timing.measure_memory_bandwidth("cpu", sizes=(1 << 20, 4 << 20), reps=2)
    name, size, unit = kernel.split()
    assert bw > 0 and name in ("copy", "sum", "gemv") and size in ("1", "4") and unit == "MiB"
    assert t.median_s > 0


def test_time_steps_wall_and_host_cpu():
    calls = []
    wall, cpu = timing.time_steps(lambda: calls.append(time.sleep(0.002)), n=5, device="cpu", repeats=3)
    assert len(calls) == 30  # a back-to-back loop for wall, one step at a time for CPU
    assert wall >= 0.002 and cpu < wall / 2  # sleeping costs wall time, not the thread's CPU time

    def spin():
        end = time.thread_time() + 0.002
        while time.thread_time() < end:
            pass
    wall, cpu = timing.time_steps(spin, n=3, device="cpu", repeats=1)
    assert cpu >= 0.002 and wall >= 0.002  # the host's own work is counted


def test_host_readings_after_time_steps_stay_inside_the_cache():
    """The model benchmark runs time_steps and then host_readings on one decode loop whose KV cache
    holds repeats * n steps past the prompt: no step may run past it (on the H200 one did, and the
    cache update's index assert fired)."""
    n, repeats, cap = 4, 3, 3 * 4
    pos, seen = [0], []

    def step():
        assert pos[0] < cap, pos[0]
        seen.append(pos[0])
        pos[0] += 1

    def rewind():
        pos[0] -= n

    timing.time_steps(step, n, "cpu", repeats, rewind=rewind)
    before = len(seen)
    got = timing.host_readings(step, n, "cpu", rewind=rewind, rounds=2)
    assert max(seen) == cap - 1 and got["queued"] > 0 and math.isnan(got["stalled"])
    assert len(seen) - before == 2 * n  # each round of readings is one loop of n steps (CPU: no stalled loop)
