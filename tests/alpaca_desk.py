"""A trading desk over the real Alpaca adapter: the bot, alpaca-py's real client and
the loopback Alpaca server, on a simulated clock inside a real NYSE session.

Fills happen only when a test says the market traded (``trade``), so a test can
hold an order accepted-but-unfilled, fill part of it, let a cancel hang in
``pending_cancel`` or make Alpaca refuse an exit, exactly as the real API can.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from alpaca_server import AlpacaServer
from desk import BAR, MORNING, SYMBOL, FixedModel

from app.engine.bot import TradingBot
from app.engine.broker.alpaca import AlpacaBroker
from app.engine.clock import MarketCalendar, SimClock
from app.engine.data.sources import AlpacaDataSource
from app.engine.events import Event, EventBus, SignalEvent
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings
from app.engine.types import Bar, BrokerKind, Position, timeframe_of

__all__ = ["BAR", "MORNING", "SYMBOL", "AlpacaDesk", "FixedModel", "Pushed", "holding", "streaming"]


class AlpacaDesk:
    def __init__(self, server: AlpacaServer, *, start: datetime = MORNING, timeframe: str = "5m",
                 calendar: MarketCalendar | None = None, autostart: bool = True, **settings: object) -> None:
        self.server = server
        settings.setdefault("mode", "auto")
        self.settings = Settings(timeframe=timeframe, **settings)  # type: ignore[arg-type]
        self.clock = SimClock(start)
        self.broker = AlpacaBroker(server.api_keys(), self.clock, kind=BrokerKind.PAPER, url_override=server.url,
                                   timeout_s=2.0, cancel_wait_s=0.0, sleep=lambda s: None)
        self.model = FixedModel()
        self.records = MemoryRecorder()
        self.events: list[Event] = []
        bus = EventBus()
        bus.subscribe(self.events.append)
        self.bot = TradingBot(self.settings, self.clock, self.broker, self.model, self.records, bus,
                              calendar or MarketCalendar(), "alpaca", sleep=lambda s: None)
        self.bot.core.entries.latest_price = AlpacaDataSource(server.api_keys(), url_override=server.url).latest_price
        self.bar_delta = timeframe_of(timeframe).delta
        if autostart:
            self.bot.start()

    def close_bar(self, price: float, p_up: float = 0.5, start: datetime | None = None) -> None:
        """The bar that began one bar ago closes now at ``price``; the model says ``p_up``."""
        now = self.clock.now()
        begin = start if start is not None else now - self.bar_delta
        self.model.p_up = p_up
        self.server.set_price(SYMBOL, price)
        self.bot.on_bar_close(Bar(SYMBOL, begin, price, price, price, price, 10_000.0))

    def next_bar(self, price: float, p_up: float = 0.5) -> None:
        self.clock.advance(self.bar_delta)
        self.close_bar(price, p_up)

    def trade(self, price: float, seconds: float = 30) -> None:
        """The market trades at ``price``: Alpaca fills what that reaches; the bot's stop check runs."""
        self.clock.advance(timedelta(seconds=seconds))
        self.server.fill_open_orders(price, SYMBOL)
        self.server.set_price(SYMBOL, price)
        self.bot.on_price(SYMBOL, price)

    def check(self, seconds: float = 30) -> None:
        """A stop check with no new trade (the price is the last one)."""
        self.clock.advance(timedelta(seconds=seconds))
        self.bot.on_price(SYMBOL, self.server.prices[SYMBOL])

    # ------------------------------------------------------------ what Alpaca holds
    def orders(self, side: str | None = None, type_: str | None = None, open_only: bool = True) -> list[dict]:
        with self.server.lock:
            rows = [dict(o) for o in self.server.orders.values()]
        return [o for o in rows if (side is None or o["side"] == side) and (type_ is None or o["type"] == type_)
                and (not open_only or o["status"] in ("new", "accepted", "partially_filled", "pending_cancel",
                                                      "pending_new", "held"))]

    def held(self) -> float:
        with self.server.lock:
            return self.server.positions.get(SYMBOL, {"qty": 0.0})["qty"]

    def cover(self) -> float:
        """Shares covered by the app's working sells: stops, and exits on their way out."""
        return sum(float(o["qty"]) - float(o["filled_qty"]) for o in self.orders("sell")
                   if o["client_order_id"].startswith("ait-"))

    def stop_cover(self) -> float:
        """Shares covered by working sell stops at Alpaca."""
        return sum(float(o["qty"]) - float(o["filled_qty"]) for o in self.orders("sell", "stop"))

    @property
    def position(self) -> Position | None:
        return next((p for p in self.records.positions() if p.symbol == SYMBOL), None)

    def signal_details(self) -> list[tuple[str, str]]:
        return [(e.status.value, e.detail) for e in self.events if isinstance(e, SignalEvent)]


def holding(server: AlpacaServer, **settings: object) -> AlpacaDesk:
    """A desk holding PLTR bought at 50, its broker stop working."""
    server.auto_fill = True
    desk = AlpacaDesk(server, **settings)
    desk.close_bar(50.0, p_up=0.95)
    desk.check()
    assert desk.held() > 0 and desk.stop_cover() == desk.held()
    server.auto_fill = False
    return desk


class Pushed:
    """Counts the trade updates the broker was told of, so a test can wait for them."""

    def __init__(self) -> None:
        self.count = 0
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait(self, at_least: int, timeout: float = 10.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: self.count >= at_least, timeout), \
                f"only {self.count} of {at_least} updates came"


def streaming(desk: AlpacaDesk) -> Pushed:
    """The desk's broker follows the loopback server's trade-updates websocket too (close the
    broker before the server stops); returns the count of updates pushed to it."""
    stream = desk.server.start_stream()
    desk.broker.start_stream(stream.url)
    pushed = Pushed()
    desk.broker.on_trade_update(pushed)
    assert stream.wait_listening(), "the trade-updates stream never connected"
    return pushed
