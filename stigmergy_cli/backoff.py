"""Capped exponential backoff with jitter, for every wait after something refused.

Rate-limited executors, an unreachable pool and a remote target that moved all wait the same
way: twice as long after each refusal in a row, never longer than a cap, and spread by a
random factor so that agents refused together do not come back together.
"""

from __future__ import annotations

import random


def delay(streak: int, first: float, cap: float, *, spread: float = 0.2) -> float:
    """Seconds to wait after the `streak`-th refusal in a row (1 for the first)."""
    capped: float = min(cap, first * 2 ** max(0, streak - 1))
    return capped * random.uniform(1 - spread, 1 + spread)  # noqa: S311 - jitter, not security
