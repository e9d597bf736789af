"""cProfile of a decode step for the device scripts (default_profile, replay_profile, replay_pair): the
loops profiled the same way everywhere, and the top of the table printed the same way."""
import cProfile
import io
import pstats

import torch


def profile_steps(step, n: int, rounds: int = 1, before=lambda: None) -> pstats.Stats:
    """`rounds` loops of n calls of step() under one profile; before() runs unprofiled ahead of each loop
    (a rewind), and the device is idle at each loop's start."""
    prof = cProfile.Profile()
    for _ in range(rounds):
        before()
        torch.cuda.synchronize()
        prof.enable()
        for _ in range(n):
            step()
        prof.disable()
    torch.cuda.synchronize()
    return pstats.Stats(prof)


def top(stats: pstats.Stats, count: int = 16, width: int = 175) -> str:
    """The `count` functions of most own time, a line each cut at `width` (pstats' header lines left out)."""
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats("tottime").print_stats(count)
    return "\n".join(ln[:width] for ln in out.getvalue().splitlines()
                     if ln.strip() and not ln.startswith(("   Ordered", "   List")))
