"""How the benchmarks time a difference of a few µs: the median of paired blocks.

Two fastest-of-N figures taken seconds apart each carry the machine's drift of that
moment; their difference can be off by more than a small overhead itself (on a 2-core
VM, several µs in a 60-90 µs request). Here the two calls are timed back to back, block
after block, which one first at random, and the figure is the median of the blocks'
differences: drift over a block hits both sides alike, and a block that a stray process
or a garbage collection disturbed moves the median little (the approach of pyperf's
paired comparisons).
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Callable


def median_difference(base: Callable[[int], float], other: Callable[[int], float], *,
                      count: int, blocks: int, seed: int = 0) -> tuple[float, float, float]:
    """Seconds per call by which ``other`` exceeds ``base``: the median, first and third
    quartiles of the difference over ``blocks`` blocks (at least 4). In each block ``base``
    and ``other`` each make ``count`` calls and return their seconds per call."""
    order = random.Random(seed)
    differences = []
    for _ in range(max(blocks, 4)):
        if order.random() < 0.5:
            first = base(count)
            differences.append(other(count) - first)
        else:
            first = other(count)
            differences.append(first - base(count))
    low, middle, high = statistics.quantiles(differences, n=4)
    return middle, low, high
