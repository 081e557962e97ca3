"""Shared by the benchmarks: medians of interleaved repetitions (machine noise hits every variant alike)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def timed(runs: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Median seconds of each run over ``repeats`` interleaved rounds, after one warm-up call each."""
    for run in runs.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
