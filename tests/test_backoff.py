"""The one backoff: doubling per refusal in a row, capped, spread by jitter."""

from __future__ import annotations

import pytest

from stigmergy_cli import backoff


@pytest.mark.parametrize(
    ("streak", "low", "high"),
    [(1, 0.8, 1.2), (2, 1.6, 2.4), (3, 3.2, 4.8), (10, 4.0, 6.0)],  # capped at 5 from streak 4
)
def test_the_wait_doubles_up_to_the_cap_with_jitter(streak: int, low: float, high: float) -> None:
    waits = [backoff.delay(streak, 1.0, 5.0) for _ in range(200)]
    assert all(low <= w <= high for w in waits)
    assert max(waits) - min(waits) > 0  # spread out: agents refused together part ways


def test_the_spread_is_the_callers() -> None:
    waits = [backoff.delay(1, 2.0, 10.0, spread=0.5) for _ in range(200)]
    assert all(1.0 <= w <= 3.0 for w in waits)
