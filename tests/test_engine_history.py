"""The live cycle's fast paths: what a backtest's speed rests on must not change
what the bot sees or decides."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest
from conftest import utc
from hypothesis import given, settings
from hypothesis import strategies as st

from app.engine.bot import TradingBot
from app.engine.broker.base import Broker
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import NY, SimClock
from app.engine.events import EventBus
from app.engine.history import History
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings
from app.engine.strategy.sma_cross import SmaCrossModel
from app.engine.types import Bar, Order, OrderStatus, OrderType, Side

T0 = utc(2024, 3, 8, 15, 0)


def _bars(closes: list[float], start=T0, step=timedelta(minutes=1)) -> list[Bar]:
    return [Bar("TEST", start + i * step, c, c, c, c, 100.0) for i, c in enumerate(closes)]


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 12), closes=st.lists(st.floats(1, 1e4), min_size=1, max_size=80))
def test_history_holds_exactly_the_last_closes_and_bars(size: int, closes: list[float]) -> None:
    hist = History(size)
    for i, bar in enumerate(_bars(closes)):
        hist.append(bar)
        want = closes[max(0, i + 1 - size) : i + 1]
        assert hist.closes().tolist() == want
        assert [b.close for b in hist.bars] == want and len(hist) == len(want)


def test_a_model_cannot_write_into_the_history() -> None:
    hist = History(3)
    for bar in _bars([1.0, 2.0, 3.0, 4.0]):
        hist.append(bar)
    with pytest.raises(ValueError):
        hist.closes()[0] = 99.0
    assert hist.closes().tolist() == [2.0, 3.0, 4.0]


def test_the_vectorised_sma_cross_says_what_the_live_one_says_on_every_bar() -> None:
    rng = np.random.default_rng(7)
    closes = (50 * np.exp(np.cumsum(rng.normal(0, 0.004, 3000)))).tolist()
    closes[500:540] = [42.0] * 40  # flat stretches: the averages tie exactly
    bars = _bars(closes)
    live = SmaCrossModel()
    batch = live.precompute(bars)
    answers = [batch.predict(np.empty(0), bars[: i + 1]) for i in range(len(bars))]
    assert answers == [live.predict(np.asarray(closes[: i + 1])) for i in range(len(bars))]
    assert answers[: live.min_bars - 1] == [None] * (live.min_bars - 1)
    kinds = {a.p_up for a in answers if a is not None}
    assert kinds == {0.0, 0.5, 1.0}


def test_a_precomputed_answer_is_found_by_bar_time_in_any_order() -> None:
    from app.engine.strategy.precomputed import PrecomputedModel

    bars = _bars([10.0, 11.0, 12.0, 13.0])
    model = PrecomputedModel.from_probabilities("m", [b.time for b in bars], [0.1, float("nan"), 0.9, 0.6], "v")
    ask = lambda i: model.predict(np.empty(0), bars[: i + 1])  # noqa: E731
    assert [ask(i).p_up if ask(i) else None for i in (0, 2, 3)] == [0.1, 0.9, 0.6]
    assert ask(1) is None, "no finite P(up): no answer"
    assert ask(3).p_up == 0.6 and ask(0).p_up == 0.1  # replayed, repeated, out of order
    other = _bars([10.0], start=T0 + timedelta(days=1))
    assert model.predict(np.empty(0), other) is None and model.predict(np.empty(0), []) is None
    assert model.answered() == 3


def test_precomputed_and_live_sma_cross_make_the_same_backtest() -> None:
    from app.engine.backtest.config import BacktestConfig
    from app.engine.backtest.runner import run_backtest

    rng = np.random.default_rng(3)
    closes = (50 * np.exp(np.cumsum(rng.normal(0, 0.004, 2000)))).tolist()
    bars = _bars(closes)
    cfg = BacktestConfig(symbol="TEST", timeframe="1m", cash=100_000, plain=True)
    batch, live = run_backtest(bars, cfg), run_backtest(bars, cfg, model=SmaCrossModel())
    assert len(batch.trades) > 10
    assert batch.trades == live.trades
    assert batch.equity.tolist() == live.equity.tolist()


def _bot(clock: SimClock) -> tuple[TradingBot, SimulatedBroker]:
    broker = SimulatedBroker(clock, 100_000)
    bot = TradingBot(Settings(), clock, broker, SmaCrossModel(), MemoryRecorder(), EventBus())
    return bot, broker


@pytest.mark.parametrize("last_minute, next_midnight", [
    (utc(2024, 3, 11, 3, 59), utc(2024, 3, 11, 4, 0)),  # 10 March, 23 hours long (clocks go forward)
    (utc(2024, 11, 4, 4, 59), utc(2024, 11, 4, 5, 0)),  # 3 November, 25 hours long (clocks go back)
    (utc(2024, 7, 2, 3, 59), utc(2024, 7, 2, 4, 0)),
])
def test_the_trading_day_turns_at_new_york_midnight(last_minute, next_midnight) -> None:
    clock = SimClock(last_minute - timedelta(hours=20))
    bot, _ = _bot(clock)
    bot.start()
    bot.core.book.day = replace(bot.core.day, round_trips=3)
    clock.set(last_minute)
    bot.on_price("TEST", 20.0)
    assert bot.status().round_trips_today == 3
    clock.set(next_midnight)
    bot.on_price("TEST", 20.0)
    assert bot.status().round_trips_today == 0


def test_a_naive_time_is_refused_by_the_simulated_clock() -> None:
    clock = SimClock(T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(T0.replace(tzinfo=None))
    clock.set(T0.astimezone(NY))
    assert clock.now() == T0 and clock.now().utcoffset() == timedelta(0)


def test_one_position_lookup_agrees_with_the_list() -> None:
    clock = SimClock(T0)
    broker = SimulatedBroker(clock, 100_000)
    broker.on_price("TEST", 20.0, T0)
    broker.submit(Order("b1", "TEST", Side.BUY, 10, OrderType.MARKET, OrderStatus.INTENT, T0))
    broker.on_price("TEST", 21.0, T0)
    assert broker.position("TEST") == broker.positions()[0]
    assert broker.position("TEST").last_price == 21.0
    assert broker.position("OTHER") is None
    assert Broker.position(broker, "TEST") == broker.position("TEST")  # the port's default: a scan


def test_the_bus_knows_whether_anyone_listens() -> None:
    bus, seen = EventBus(), []
    assert not bus.active
    bus.subscribe(seen.append)
    assert bus.active
    bus.unsubscribe(seen.append)
    assert not bus.active
