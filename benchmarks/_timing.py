"""Timing shared by the benchmark scripts (``python benchmarks/bench_*.py`` puts this folder on ``sys.path``)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_rounds(fns: dict[str, Callable[[], object]], repeats: int, min_time: float = 0.2,
                stat: Callable = statistics.median, warmup: bool = True) -> dict[str, float]:
    """``stat`` (default: median) over ``repeats`` rounds of the seconds per call of each function.

    The rounds alternate between the functions (each round calls every function for ``min_time / repeats``
    seconds), so a machine whose load changes during the run disturbs all of them alike and their ratios stay
    meaningful. ``warmup`` calls each function once first (compilation, caches).
    """
    if warmup:
        for fn in fns.values():
            fn()
    rounds: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n, t0 = 0, time.perf_counter()
            while True:
                fn()
                n += 1
                if time.perf_counter() - t0 >= min_time / repeats:
                    break
            rounds[name].append((time.perf_counter() - t0) / n)
    return {name: stat(r) for name, r in rounds.items()}


def timeit(fn: Callable[[], object], repeats: int, min_time: float = 0.2) -> float:
    """Median seconds per call of ``fn`` (see :func:`time_rounds`)."""
    return time_rounds({"fn": fn}, repeats, min_time)["fn"]
