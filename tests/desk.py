"""A trading desk for engine tests: the real bot over a real SimClock and
SimulatedBroker, fed bar closes and ticks the way a replay feeds it; only the
model is a stub whose P(up) each test chooses."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
from conftest import utc

from app.engine.bot import TradingBot
from app.engine.broker.base import Broker, BrokerError
from app.engine.broker.simulated import PaperBook, SimulatedBroker
from app.engine.clock import MarketCalendar, SimClock
from app.engine.events import AlertEvent, Event, EventBus, SignalEvent, StatusEvent
from app.engine.records import MemoryRecorder, Recorder
from app.engine.settings import Settings
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Account, Bar, Order, OrderType, Position, Side, TradingMode

SYMBOL = "PLTR"
BAR = timedelta(minutes=5)
MORNING = utc(2025, 3, 4, 15, 0)  # 10:00 in New York, a Tuesday


class FixedModel(SignalModel):
    name = "fixed"

    def __init__(self) -> None:
        self.p_up = 0.5

    def predict(self, closes: np.ndarray) -> ModelOutput:
        return ModelOutput(self.p_up, (("fixed", self.p_up),), ("chosen by the test",), "fixed-v1")


class FlakyBroker(Broker):
    """The simulated broker behind a connection that drops the next N submits,
    or rejects them for good."""

    supports_stop_orders = True

    def __init__(self, inner: SimulatedBroker) -> None:
        self.inner = inner
        self.drop_submits = 0
        self.reject_with = ""
        self.calls: Counter[str] = Counter()

    def submit(self, order: Order) -> Order:
        self.calls["submit"] += 1
        if self.drop_submits > 0:
            self.drop_submits -= 1
            raise BrokerError("connection reset by peer", transient=True)
        if self.reject_with:
            raise BrokerError(self.reject_with, transient=False)
        return self.inner.submit(order)

    def account(self) -> Account:
        return self.inner.account()

    def positions(self) -> list[Position]:
        return self.inner.positions()

    def open_orders(self) -> list[Order]:
        return self.inner.open_orders()

    def get_order(self, client_order_id: str) -> Order | None:
        return self.inner.get_order(client_order_id)

    def cancel(self, client_order_id: str) -> None:
        self.inner.cancel(client_order_id)


class NoStopOrdersBroker(SimulatedBroker):
    """A broker without native stop orders: the bot must watch the stop itself."""

    supports_stop_orders = False


class Desk:
    """A bot over a simulated broker. ``records`` and ``book`` default to memory;
    pass an SQL recorder and paper book to test what survives a restart."""

    def __init__(self, mode: str = "auto", *, start: datetime = MORNING,
                 calendar: MarketCalendar | None = None,
                 wrap: Callable[[SimulatedBroker], Broker] | None = None,
                 sim: type[SimulatedBroker] = SimulatedBroker, records: Recorder | None = None,
                 book: PaperBook | None = None, autostart: bool = True, **settings: object) -> None:
        self.settings = Settings(mode=mode, **settings)  # type: ignore[arg-type]
        self.clock = SimClock(start)
        self.sim = sim(self.clock, 100_000.0, book=book)
        self.broker = wrap(self.sim) if wrap else self.sim
        self.model = FixedModel()
        self.records = records if records is not None else MemoryRecorder()
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.sleeps: list[float] = []
        self.bot = TradingBot(self.settings, self.clock, self.broker, self.model, self.records, bus,
                              calendar, sleep=self.sleeps.append)
        if autostart:
            self.bot.start()

    def close_bar(self, price: float, p_up: float = 0.5, symbol: str = SYMBOL) -> None:
        """The bar now forming closes at ``price``; the model then says ``p_up``."""
        now = self.clock.now()
        self.bar(now.replace(minute=now.minute - now.minute % 5, second=0, microsecond=0), price, p_up, symbol)

    def bar(self, start: datetime, price: float, p_up: float = 0.5, symbol: str = SYMBOL) -> None:
        """The bar that began at ``start`` is delivered now (late, if the clock is past its end)."""
        self.model.p_up = p_up
        self.clock.set(max(self.clock.now(), start + BAR))
        self.sim.on_price(symbol, price, self.clock.now())
        self.bot.on_bar_close(Bar(symbol, start, price, price, price, price, 1_000.0))

    def tick(self, price: float, seconds: float = 30) -> None:
        now = self.clock.advance(timedelta(seconds=seconds))
        self.sim.on_price(SYMBOL, price, now)
        self.bot.on_price(SYMBOL, price)

    def buy(self, price: float = 20.0) -> Position:
        """Open a position as auto mode would; the mode is restored afterwards."""
        mode = self.bot.mode
        self.bot.set_mode(TradingMode.AUTO)
        self.close_bar(price, 0.95)
        self.tick(price)
        self.bot.set_mode(mode)
        assert self.position is not None
        return self.position

    @property
    def flaky(self) -> FlakyBroker:
        assert isinstance(self.broker, FlakyBroker)
        return self.broker

    @property
    def position(self) -> Position | None:
        return next((p for p in self.records.positions() if p.symbol == SYMBOL), None)

    def broker_orders(self, side: Side, kind: OrderType = OrderType.MARKET) -> list[Order]:
        return [o for o in self.sim.open_orders() if o.side == side and o.order_type == kind]

    def sold(self) -> list[float]:
        return [f.price for f in self.sim.fills if f.side == Side.SELL]

    def signal_events(self) -> list[tuple[str, str]]:
        return [(e.status, e.detail) for e in self.events if isinstance(e, SignalEvent)]

    def alerts(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, AlertEvent)]

    def last_status(self) -> StatusEvent:
        return [e for e in self.events if isinstance(e, StatusEvent)][-1]
