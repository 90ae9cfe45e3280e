from __future__ import annotations

import pytest

from stigmergy_cli import decay
from stigmergy_cli.config import PressureConfig


def test_exponential_halves_every_half_life() -> None:
    cfg = PressureConfig(strategy="exponential", half_life=100)
    assert decay.decayed(1.0, 0, cfg) == 1.0
    assert decay.decayed(1.0, 100, cfg) == pytest.approx(0.5)
    assert decay.decayed(1.0, 300, cfg) == pytest.approx(0.125)
    assert decay.decayed(-0.4, 100, cfg) == pytest.approx(-0.2)


def test_linear_and_step_stop_at_zero_from_either_side() -> None:
    linear = PressureConfig(strategy="linear", rate=0.01)
    assert decay.decayed(1.0, 50, linear) == pytest.approx(0.5)
    assert decay.decayed(1.0, 500, linear) == 0.0
    assert decay.decayed(-1.0, 50, linear) == pytest.approx(-0.5)
    step = PressureConfig(strategy="step", step=0.25, step_interval=10)
    assert decay.decayed(1.0, 9.9, step) == 1.0
    assert decay.decayed(1.0, 10, step) == pytest.approx(0.75)
    assert decay.decayed(1.0, 1000, step) == 0.0


def test_stochastic_is_reproducible_per_seed_and_key() -> None:
    cfg = PressureConfig(strategy="stochastic", half_life=100, jitter=0.5, seed=7)
    a = decay.decayed(1.0, 100, cfg, key="task-a")
    assert a == decay.decayed(1.0, 100, cfg, key="task-a")
    assert a != decay.decayed(1.0, 100, cfg, key="task-b")
    assert 0.25 < a < 0.75


def test_a_clock_stepping_back_does_not_grow_pressure() -> None:
    cfg = PressureConfig()
    assert decay.pressure_now(0.5, 1000.0, 900.0, cfg) == 0.5
    assert decay.pressure_now(0.5, None, 900.0, cfg) == 0.5


def test_score_is_priority_over_100_plus_pressure() -> None:
    assert decay.score(80, 0.1) == pytest.approx(0.9)
