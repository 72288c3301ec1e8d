"""How the benchmarks time calls: the fastest of interleaved, calibrated runs.

Each call's run is calibrated to last about ``seconds``. The runs are
interleaved (one round visits every call, and the first call of a round
rotates), so drift in the machine's speed hits every contender alike. The
fastest run counts: it is the one least disturbed, since noise only ever adds
time (timeit's rule).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

_WARM_UP = 20  # calls before calibrating: connections, caches and code paths are warm


def per_call(call: Callable[[], Any], count: int) -> float:
    """Seconds per call over ``count`` calls of ``call``."""
    start = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - start) / count


def fastest_interleaved(calls: dict[str, Callable[[], Any]], *, seconds: float,
                        repeats: int) -> dict[str, float]:
    """Seconds per call of each of ``calls``: the fastest of ``repeats`` interleaved runs."""
    counts = {}
    for name, call in calls.items():
        per_call(call, _WARM_UP)
        counts[name] = max(_WARM_UP, int(seconds / max(per_call(call, _WARM_UP), 1e-9)))
    names = list(calls)
    best = {name: float("inf") for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            best[name] = min(best[name], per_call(calls[name], counts[name]))
    return best
