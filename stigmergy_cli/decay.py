"""Pure functions: how deposited pressure fades, and a task's score.

Pressure is stored as (amount, time deposited) and evaluated lazily at `now`, so no background
pass is needed for correctness; `stigmergy decay` only tidies what has faded below epsilon.
"""

from __future__ import annotations

import math

from stigmergy_cli.config import PressureConfig


def _jitter(seed: int, key: str) -> float:
    """A reproducible number in [-1, 1) for this seed and signal."""
    import hashlib  # only the stochastic strategy needs it

    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**63 - 1.0


def decayed(amount: float, elapsed: float, cfg: PressureConfig, key: str = "") -> float:
    """What is left of `amount` after `elapsed` seconds under the configured strategy."""
    if amount == 0.0:
        return 0.0
    elapsed = max(0.0, elapsed)  # a clock that stepped back must not grow pressure
    strategy = cfg.strategy
    if strategy == "exponential":
        return amount * math.pow(0.5, elapsed / cfg.half_life)
    if strategy == "stochastic":
        half_life = cfg.half_life * (1.0 + cfg.jitter * _jitter(cfg.seed, key))
        return amount * math.pow(0.5, elapsed / max(half_life, 1e-9))
    if strategy == "linear":
        left = abs(amount) - cfg.rate * elapsed
    elif strategy == "step":
        left = abs(amount) - cfg.step * math.floor(elapsed / cfg.step_interval)
    else:  # config validation keeps this unreachable
        raise ValueError(f"unknown decay strategy {strategy!r}")
    return math.copysign(max(0.0, left), amount)


def pressure_now(
    amount: float, deposited_at: float | None, now: float, cfg: PressureConfig, key: str = ""
) -> float:
    """Current pressure of a deposit made at `deposited_at` (None: no decay has started)."""
    if deposited_at is None:
        return amount
    return decayed(amount, now - deposited_at, cfg, key)


def score(priority: int, pressure: float) -> float:
    """A task's score: priority/100 plus its current pressure."""
    return priority / 100.0 + pressure


def deposit(
    amount: float,
    deposited_at: float | None,
    signal: float,
    now: float,
    cfg: PressureConfig,
    key: str = "",
) -> float:
    """The pressure after adding `signal` at `now` to what is left of an earlier deposit."""
    return pressure_now(amount, deposited_at, now, cfg, key) + signal
