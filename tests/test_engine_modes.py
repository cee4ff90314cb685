"""Trading modes: what happens to a signal of a given confidence, seen from the
outside (an order at the broker, a signal waiting for the user, or nothing)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from conftest import utc

from app.engine.bot import TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import SimClock
from app.engine.events import EventBus, SignalEvent
from app.engine.modes import Decision, policy_for
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar, OrderStatus, Side, TradingMode

SYMBOL = "PLTR"


class FixedModel(SignalModel):
    """A model whose P(up) the test chooses."""

    name = "fixed"

    def __init__(self, p_up: float) -> None:
        self.p_up = p_up

    def predict(self, closes: np.ndarray) -> ModelOutput:
        return ModelOutput(self.p_up, (("fixed", self.p_up),), ("chosen by the test",), "fixed-v1")


def run_one_bar(mode: str, p_up: float) -> tuple[TradingBot, SimulatedBroker, list[SignalEvent]]:
    """One bar closes at $20 with the model at ``p_up``; then the market ticks once."""
    clock = SimClock(utc(2025, 3, 4, 15, 0))
    broker = SimulatedBroker(clock, 100_000.0)
    events: list[SignalEvent] = []
    bus = EventBus()
    bus.subscribe(lambda e: events.append(e) if isinstance(e, SignalEvent) else None)
    bot = TradingBot(Settings(mode=mode), clock, broker, FixedModel(p_up), MemoryRecorder(), bus,
                     sleep=lambda s: None)
    bot.start()
    bar = Bar(SYMBOL, clock.now(), 20.0, 20.0, 20.0, 20.0, 1_000.0)
    clock.advance(timedelta(minutes=5))
    broker.on_price(SYMBOL, 20.0, clock.now())
    bot.on_bar_close(bar)
    clock.advance(timedelta(seconds=30))
    broker.on_price(SYMBOL, 20.0, clock.now())
    bot.on_price(SYMBOL, 20.0)
    return bot, broker, events


def outcome(bot: TradingBot, broker: SimulatedBroker) -> str:
    buys = [f for f in broker.fills if f.side == Side.BUY]
    if buys:
        assert len(buys) == 1 and bot.records.positions()
        return "traded"
    assert not bot.records.positions()
    assert not [o for o in bot.records.orders.values() if o.status != OrderStatus.CANCELED]
    return "asked" if bot.pending else "nothing"


@pytest.mark.parametrize(
    ("mode", "p_up", "expected"),
    [
        ("auto", 0.95, "traded"),
        ("auto", 0.80, "traded"),
        ("auto", 0.79, "nothing"),
        ("auto", 0.70, "nothing"),
        ("hybrid", 0.80, "traded"),
        ("hybrid", 0.90, "traded"),
        ("hybrid", 0.7999, "asked"),
        ("hybrid", 0.70, "asked"),
        ("manual", 0.99, "asked"),
        ("manual", 0.80, "asked"),
        ("manual", 0.70, "asked"),
        ("auto", 0.6999, "nothing"),
        ("hybrid", 0.69, "nothing"),
        ("manual", 0.65, "nothing"),
        ("manual", 0.50, "nothing"),
    ],
)
def test_what_a_buy_signal_of_each_confidence_does_in_each_mode(mode: str, p_up: float,
                                                                 expected: str) -> None:
    bot, broker, events = run_one_bar(mode, p_up)
    assert outcome(bot, broker) == expected
    statuses = [e.status for e in events]
    if expected == "asked":
        assert statuses == ["pending"]
    elif expected == "traded":
        assert statuses == ["executed"]
    elif p_up >= 0.70:
        assert statuses == ["dropped"]  # auto mode logs a 0.70-0.80 signal it will not take
    else:
        assert statuses == []  # below the approval threshold: never shown, never traded


def test_below_the_threshold_is_recorded_but_never_traded() -> None:
    bot, broker, _ = run_one_bar("manual", 0.60)
    (sig, status, _detail), = bot.records.signals.values()
    assert status == "below threshold" and sig.confidence == 0.60
    assert broker.open_orders() == [] and broker.fills == []


def test_a_confident_sell_signal_counts_its_confidence_from_p_down() -> None:
    # P(up) 0.10 is a 0.90-confidence SELL; with nothing held (long-only) it does nothing
    bot, broker, _ = run_one_bar("auto", 0.10)
    (sig, status, _detail), = bot.records.signals.values()
    assert sig.side == Side.SELL and sig.confidence == 0.90 and status == "skipped"
    assert broker.fills == [] and not bot.pending


@pytest.mark.parametrize(
    ("mode", "table"),
    [
        (TradingMode.AUTO, [Decision.IGNORE, Decision.DROP, Decision.EXECUTE, Decision.EXECUTE]),
        (TradingMode.HYBRID, [Decision.IGNORE, Decision.ASK, Decision.EXECUTE, Decision.EXECUTE]),
        (TradingMode.MANUAL, [Decision.IGNORE, Decision.ASK, Decision.ASK, Decision.ASK]),
    ],
)
def test_policy_table(mode: TradingMode, table: list[Decision]) -> None:
    policy = policy_for(mode, Settings())
    assert [policy.decide(c) for c in (0.69, 0.75, 0.80, 0.99)] == table


def test_thresholds_follow_the_settings() -> None:
    s = Settings(auto_threshold=0.9, approval_threshold=0.6)
    assert policy_for(TradingMode.HYBRID, s).decide(0.85) == Decision.ASK
    assert policy_for(TradingMode.AUTO, s).decide(0.9) == Decision.EXECUTE
    assert policy_for(TradingMode.MANUAL, s).decide(0.61) == Decision.ASK


def test_switching_mode_takes_effect_on_the_next_signal() -> None:
    bot, broker, _ = run_one_bar("manual", 0.95)
    assert bot.pending and broker.fills == []
    bot.reject(next(iter(bot.pending)))
    bot.set_mode(TradingMode.AUTO)
    assert bot.status().mode == TradingMode.AUTO
    clock = bot.clock
    assert isinstance(clock, SimClock)
    bar = Bar(SYMBOL, clock.now(), 20.0, 20.0, 20.0, 20.0, 1_000.0)
    clock.advance(timedelta(minutes=5))
    bot.on_bar_close(bar)
    clock.advance(timedelta(seconds=30))
    broker.on_price(SYMBOL, 20.0, clock.now())
    bot.on_price(SYMBOL, 20.0)
    assert [f.side for f in broker.fills] == [Side.BUY]
