"""Stale data: when bars stop coming during market hours the bot says so, opens
nothing, and what it holds stays protected by the broker's own stop order."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pytest
from conftest import utc

from app.engine.bot import TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import MarketCalendar, SimClock
from app.engine.events import Event, EventBus, SignalEvent, StatusEvent
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar, OrderType, Side

SYMBOL = "PLTR"
BAR = timedelta(minutes=5)
OPEN_BAR = utc(2025, 3, 4, 15, 0)  # 10:00 in New York, a Tuesday


class FixedModel(SignalModel):
    name = "fixed"

    def __init__(self) -> None:
        self.p_up = 0.5

    def predict(self, closes: np.ndarray) -> ModelOutput:
        return ModelOutput(self.p_up, (("fixed", self.p_up),), ("chosen by the test",), "fixed-v1")


class Desk:
    def __init__(self, mode: str, calendar: MarketCalendar) -> None:
        self.clock = SimClock(OPEN_BAR)
        self.sim = SimulatedBroker(self.clock, 100_000.0)
        self.model = FixedModel()
        self.records = MemoryRecorder()
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.bot = TradingBot(Settings(mode=mode), self.clock, self.sim, self.model, self.records, bus,
                              calendar, sleep=lambda s: None)
        self.bot.start()

    def bar(self, start: datetime, price: float, p_up: float = 0.5) -> None:
        """The bar that began at ``start`` is delivered now (late, if the clock is past its end)."""
        self.model.p_up = p_up
        self.clock.set(max(self.clock.now(), start + BAR))
        self.sim.on_price(SYMBOL, price, self.clock.now())
        self.bot.on_bar_close(Bar(SYMBOL, start, price, price, price, price, 1_000.0))

    def tick(self, price: float, seconds: float = 30) -> None:
        now = self.clock.advance(timedelta(seconds=seconds))
        self.sim.on_price(SYMBOL, price, now)
        self.bot.on_price(SYMBOL, price)

    def signals(self) -> list[tuple[str, str]]:
        return [(e.status, e.detail) for e in self.events if isinstance(e, SignalEvent)]

    def last_status(self) -> StatusEvent:
        return [e for e in self.events if isinstance(e, StatusEvent)][-1]


@pytest.fixture(scope="module")
def nyse() -> MarketCalendar:
    return MarketCalendar()


@pytest.mark.parametrize("mode, p_up", [("auto", 0.95), ("hybrid", 0.75)])
def test_no_entry_on_stale_data(nyse: MarketCalendar, mode: str, p_up: float) -> None:
    desk = Desk(mode, nyse)
    desk.bar(OPEN_BAR, 20.0)
    desk.bar(OPEN_BAR + BAR, 20.0)
    assert not desk.bot.data_stale()
    last_end = OPEN_BAR + 2 * BAR
    for _ in range(20):  # ten minutes of prices and no bar: not stale yet
        desk.tick(20.0)
    assert desk.clock.now() == last_end + 2 * BAR and not desk.bot.data_stale()
    desk.tick(20.0, seconds=1)  # more than two bar intervals since the last bar ended
    stale = desk.bot.data_stale()
    status = desk.bot.status()
    print(f"\nstale ({mode}): {desk.clock.now() - last_end} after the last bar: data_stale={stale}, "
          f"status.data_stale={status.data_stale}, StatusEvent.data_stale={desk.last_status().status.data_stale}")
    assert stale and status.data_stale and desk.last_status().status.data_stale

    for _ in range(10):  # the feed stays down for sixteen minutes in all
        desk.tick(20.0)
    # then it catches up: the first missed bar ended eleven minutes ago
    desk.bar(last_end, 20.0, p_up=p_up)
    refused = [d for s, d in desk.signals() if s == "refused"]
    assert refused and "stale" in refused[-1], desk.signals()
    assert not any(s in ("executed", "pending") for s, _ in desk.signals())
    assert desk.sim.open_orders() == [] and desk.records.positions() == []
    assert desk.bot.pending == {}

    desk.bar(last_end + BAR, 20.0)  # the rest of the backlog: fresh again, trading resumes
    desk.bar(last_end + 2 * BAR, 20.0)
    assert not desk.bot.data_stale()
    desk.bar(last_end + 3 * BAR, 20.0, p_up=p_up)
    assert [s for s, _ in desk.signals()][-1] == ("executed" if mode == "auto" else "pending")


def test_a_held_position_stays_protected_by_the_brokers_stop_while_data_is_stale(nyse: MarketCalendar) -> None:
    desk = Desk("auto", nyse)
    desk.bar(OPEN_BAR, 20.0, p_up=0.95)
    desk.tick(20.0)  # bought at 20, stop at 19.40 sent to the broker
    (pos,) = desk.records.positions()
    desk.bar(OPEN_BAR + BAR, 20.1)
    desk.clock.advance(timedelta(minutes=30))  # the feed stalls for half an hour
    assert desk.bot.data_stale() and desk.bot.status().data_stale
    desk.bot.on_price(SYMBOL, 20.05)  # quotes still come; bars don't
    (stop,) = [o for o in desk.sim.open_orders() if o.order_type == OrderType.STOP]
    assert stop.side == Side.SELL and stop.qty == pos.qty and stop.stop_price == pytest.approx(19.4)

    # the market falls through the stop; the broker sells without the bot's help
    fills = desk.sim.on_price(SYMBOL, 19.3, desk.clock.advance(timedelta(seconds=5)))
    print(f"\nstale: the broker's stop sold {fills[0].qty:g} @ {fills[0].price:.2f} with data stale")
    assert [(f.side, f.qty, f.price) for f in fills] == [(Side.SELL, pos.qty, 19.3)]
    desk.bot.on_price(SYMBOL, 19.3)  # the bot learns of it on its next poll
    assert desk.records.positions() == [] and desk.records.trades[-1].exit_reason == "stop loss"


def test_not_stale_outside_market_hours(nyse: MarketCalendar) -> None:
    desk = Desk("auto", nyse)
    desk.bar(utc(2025, 3, 4, 20, 55), 20.0)  # the last bar of the day ends at 16:00
    desk.clock.set(utc(2025, 3, 4, 23, 0))
    assert not desk.bot.data_stale()
    desk.clock.set(utc(2025, 3, 5, 14, 45))  # 09:45 next day, no bar since yesterday: stale
    assert desk.bot.data_stale()
