"""The rules fallback model: a transparent trend signal, never silent about its inputs."""

from __future__ import annotations

import numpy as np
import pytest

from app.engine.strategy.rules import RulesModel


def noisy(trend: float, n: int = 60, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 20.0 * np.exp(np.cumsum(trend + rng.normal(0, 0.002, n)))


def test_needs_enough_history() -> None:
    m = RulesModel()
    assert m.predict(noisy(0.0, n=20)) is None
    assert m.predict(noisy(0.0, n=21)) is not None


def test_direction_follows_the_trend() -> None:
    m = RulesModel()
    up, down = m.predict(noisy(0.002)), m.predict(noisy(-0.002))
    assert up is not None and down is not None
    assert up.p_up > 0.7 and down.p_up < 0.3
    assert up.confidence == pytest.approx(up.p_up) and down.confidence == pytest.approx(1 - down.p_up)
    assert "above" in up.reasons[0] and "below" in down.reasons[0]


def test_a_flat_market_is_a_coin_flip_and_probabilities_stay_inside_bounds() -> None:
    m = RulesModel()
    flat = m.predict(np.full(40, 20.0))
    assert flat is not None and flat.p_up == pytest.approx(0.5)
    steady = m.predict(20.0 * np.exp(np.arange(40) * 0.01))  # a smooth rally: capped, never 1.0
    assert steady is not None and steady.p_up == 0.99
    crash = m.predict(np.concatenate([np.full(30, 20.0), np.full(10, 5.0)]))
    assert crash is not None and 0.01 <= crash.p_up < 0.5


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError):
        RulesModel(fast=20, slow=10)


def test_a_smooth_decline_gives_the_floor_probability() -> None:
    out = RulesModel().predict(20.0 * np.exp(-np.arange(40) * 0.01))
    assert out is not None and out.p_up == 0.01
