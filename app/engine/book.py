"""The book: the portfolio-wide state of the execution core, and the facts drawn from it.

One object, typed, that the core's parts share: what the app holds and has
working (through the :class:`Recorder`), the latest prices, each symbol's
protective stop, the exits still due, the user's own holdings and orders, the
trading day, the account. The parts that act on it (:mod:`app.engine.fills`,
:mod:`app.engine.exits`, :mod:`app.engine.entries`) are each given the book,
and nothing else is shared between them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

from loguru import logger

from app.engine import risk
from app.engine.broker.base import Broker, BrokerError
from app.engine.clock import NY, Clock, MarketCalendar
from app.engine.events import EventBus, OrderEvent, PortfolioEvent
from app.engine.orders import OrderRouter
from app.engine.records import Recorder
from app.engine.settings import Settings
from app.engine.types import Account, DayState, Order, OrderStatus, OrderType, Position, Side, timeframe_of

EXITS_DUE_KEY = "exits.due"  # symbol -> why, for exits still to send

ENTRY_TYPES = (OrderType.MARKET, OrderType.LIMIT)  # a buy of these opens a position (a limit from the ticket)


class Book:
    def __init__(self, settings: Settings, clock: Clock, broker: Broker, records: Recorder, bus: EventBus,
                 calendar: MarketCalendar | None, router: OrderRouter) -> None:
        self.settings = settings
        self.clock = clock
        self.broker = broker
        self.records = records
        self.bus = bus
        self.calendar = calendar  # None: no session rules (24h market, no end-of-day flatten)
        self.router = router
        self.plain = False  # textbook backtests: whole cash per trade, no stops or limits
        self.last_prices: dict[str, float] = {}
        self.last_bar_end: dict[str, datetime] = {}  # per symbol: when its feed is due again
        self.stop_orders: dict[str, str] = {}  # symbol -> client order id of its working stop
        self.exits_due: dict[str, str] = {}  # symbol -> why: an exit asked for that could not go out yet
        self.foreign_orders: list[Order] = []  # the user's own orders at the broker: never touched
        self.foreign_positions: dict[str, Position] = {}  # shares the app did not buy, until adopted
        self.book_current = False  # every open order read without a failure at the last poll
        self.day = DayState()
        self._day: date | None = None
        self._day_span: tuple[datetime, datetime] | None = None  # the New York day, in UTC
        self._account: Account | None = None

    # ------------------------------------------------------------- the bar
    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """New settings; the bar's length is read once here, not on every bar."""
        self._settings = settings
        tf = timeframe_of(settings.timeframe)
        self.intraday: bool = tf.intraday
        self.bar_delta: timedelta = tf.delta

    # ------------------------------------------------------ what is held
    def position(self, symbol: str) -> Position | None:
        return self.records.get_position(symbol)

    def held(self, symbol: str) -> float:
        p = self.records.get_position(symbol)
        return p.qty if p is not None else 0.0

    def broker_holding(self, symbol: str) -> tuple[bool, Position | None]:
        """(True, the broker's position or None when flat), or (False, None) when the broker
        cannot be asked: "unknown" must never read as "flat"."""
        try:
            return True, self.broker.position(symbol)
        except BrokerError:
            return False, None

    def marked_positions(self) -> tuple[Position, ...]:
        """Positions at the latest prices; marked stale while the broker is unreachable
        (they are then the last known state, not the broker's word)."""
        stale = not self.router.connected
        return tuple(replace(p, last_price=self.last_prices.get(p.symbol, p.last_price), stale=stale)
                     for p in self.records.positions())

    def sells(self, symbol: str, kind: OrderType | None = None) -> list[Order]:
        """The app's open sell orders for ``symbol`` (of one kind, where given), oldest first."""
        return [o for o in self.records.open_orders() if o.symbol == symbol and o.side == Side.SELL
                and (kind is None or o.order_type == kind)]

    def exit_working(self, symbol: str, orders: list[Order] | None = None) -> bool:
        """A market sell is working or queued: it holds the shares itself. ``orders``: the
        symbol's open orders when the caller has read them already (a hot path)."""
        sells = (self.sells(symbol, OrderType.MARKET) if orders is None else
                 [o for o in orders if o.side == Side.SELL and o.order_type == OrderType.MARKET])
        return bool(sells) or any(
            q.order.symbol == symbol and q.order.side == Side.SELL and q.order.order_type == OrderType.MARKET
            for q in self.router.queue.values())

    def broker_stop_covers(self, p: Position) -> bool:
        """A working broker stop covers every share at (or above) the position's stop."""
        return self.broker.supports_stop_orders and any(
            o.status != OrderStatus.INTENT  # acknowledged by the broker, not only recorded
            and abs(o.qty - o.filled_qty - p.qty) <= 1e-9 and (o.stop_price or 0.0) >= (p.stop_price or 0.0) - 0.01
            for o in self.sells(p.symbol, OrderType.STOP))

    def working_entries(self, excluding: str = "") -> dict[str, float]:
        """Shares still to come from entries that are working: accepted or partly filled at
        the broker, or queued to be sent. They are exposure already (a second entry was once
        sent while the first had not filled)."""
        out: dict[str, float] = {}
        orders = [*self.records.open_orders(), *(q.order for q in self.router.queue.values())]
        seen: set[str] = set()
        for o in orders:
            if (o.side == Side.BUY and o.order_type in ENTRY_TYPES and o.client_order_id not in seen
                    and o.client_order_id != excluding):
                seen.add(o.client_order_id)
                out[o.symbol] = out.get(o.symbol, 0.0) + max(o.qty - o.filled_qty, 0.0)
        return {s: q for s, q in out.items() if q > 0}

    def committed(self, symbol: str) -> float:
        """Shares held plus shares on their way from working entries."""
        return self.held(symbol) + self.working_entries().get(symbol, 0.0)

    # ------------------------------------------------------------- risk
    def refresh_account(self) -> Account | None:
        try:
            self._account = self.broker.account()
        except BrokerError as exc:
            logger.warning("Cannot read the account: {}", exc)
        return self._account

    def risk_context(self, symbol: str, side: Side, excluding: str = "") -> risk.RiskContext:
        """The facts the risk rules judge by, now; ``excluding`` names an entry being
        re-validated, which must not count against itself."""
        acct = self.refresh_account() or Account(0.0, 0.0, 0.0, 0.0)
        now = self.clock.now()
        market_open, minutes_left = True, None
        if self.calendar is not None:  # daily bars too: no order goes out while the market is closed
            session = self.calendar.session_at(now)
            market_open = session is not None
            minutes_left = (session.close - now).total_seconds() / 60 if session and self.intraday else None
        price = self.last_prices.get(symbol, math.nan)
        held = {p.symbol: p for p in self.marked_positions()}
        working_cost = 0.0
        for sym, qty in self.working_entries(excluding).items():  # a working entry is exposure already
            mark = self.last_prices.get(sym, price)
            working_cost += qty * mark
            p = held.get(sym)
            held[sym] = replace(p, qty=p.qty + qty) if p else Position(sym, qty, mark, mark, now)
        return risk.RiskContext(
            symbol=symbol, side=side, price=price,
            equity=acct.equity, buying_power=acct.buying_power, positions=tuple(held.values()),
            day_start_equity=self.day.start_equity,
            round_trips_today=self.day.round_trips,
            market_open=market_open, minutes_to_close=minutes_left,
            data_stale=self.data_stale(symbol), breaker_tripped=self.day.breaker, working_cost=working_cost,
            record_failing=self.records.failing or self.records.lost,
        )

    def data_stale(self, symbol: str | None = None) -> bool:
        """Whether a feed is late (two bars) while the market is open: ``symbol``'s, or any.
        Late is counted from this session's open at the earliest: yesterday's last bar is not
        late at 09:31, when the day's first bar has not had time to close (a red STALE once
        showed at every start and through the first bar)."""
        if self.calendar is None or not self.intraday:
            return False
        now = self.clock.now()
        session = self.calendar.session_at(now)
        if session is None:
            return False
        limit = 2 * self.bar_delta
        if symbol is not None:
            end = self.last_bar_end.get(symbol)
            return end is not None and now - max(end, session.open) > limit
        return any(now - max(end, session.open) > limit for end in self.last_bar_end.values())

    def next_open(self) -> datetime | None:
        """When a daily-bar entry decided while the market is closed may go out: the next
        session's open. None when it need not wait (intraday, no calendar, or open now)."""
        if self.calendar is None or self.intraday:
            return None
        now = self.clock.now()
        if self.calendar.is_open(now):
            return None
        return self.calendar.next_session(now).open

    # ---------------------------------------------------------- the day
    def roll_day(self) -> None:
        now = self.clock.now()
        span = self._day_span
        if span is not None and span[0] <= now < span[1]:  # the same day: the common case, kept cheap
            if self.day.start_equity is None:
                self._learn_baseline()
            return
        day = now.astimezone(NY).date()
        self._day_span = (datetime.combine(day, clock_time(0), NY).astimezone(UTC),
                          datetime.combine(day + timedelta(days=1), clock_time(0), NY).astimezone(UTC))
        if day == self._day:
            return
        self._day = day
        self.records.prune(now - timedelta(days=self.settings.record_retention_days))  # once a day
        saved = self.records.state_get(f"day.{day.isoformat()}")
        if isinstance(saved, dict) and saved:
            self.day = DayState.from_dict(saved)
            return
        self.day = DayState()
        self._learn_baseline()

    def _learn_baseline(self) -> None:
        """The day's loss is measured from the broker's equity at the previous close
        (Alpaca's ``last_equity``), so losses before the app started count. While the
        broker cannot say, the baseline stays unknown and entries are refused; it is
        never 0, which would switch the breaker off."""
        acct = self.refresh_account()
        baseline = acct.day_start_equity if acct is not None else 0.0
        if not baseline > 0:
            return
        self.day = replace(self.day, start_equity=baseline)
        self.save_day()

    def save_day(self) -> None:
        if self._day is not None:
            self.records.state_set(f"day.{self._day.isoformat()}", self.day.to_dict())

    def count_round_trip(self) -> None:
        self.day = replace(self.day, round_trips=self.day.round_trips + 1)
        self.save_day()

    def account_snapshot(self) -> Account | None:
        acct = self._account
        if acct is None:
            return None
        return replace(acct, day_start_equity=self.day.baseline(acct.equity))

    # ------------------------------------------------------------ acting
    def cancel(self, client_order_id: str) -> bool:
        """Cancel through the router and tell the GUI, so no order shows open when it is not."""
        ok = self.router.cancel(client_order_id)
        o = self.records.get_order(client_order_id)
        if ok and o is not None and self.bus.active:
            self.bus.publish(OrderEvent(o))
        return ok

    def restore_exits_due(self) -> None:
        saved = self.records.state_get(EXITS_DUE_KEY)
        if isinstance(saved, dict):  # exits asked for before a restart still go out
            self.exits_due.update({str(k): str(v) for k, v in saved.items()})

    def set_due(self, symbol: str, reason: str | None) -> None:
        """Note (or clear) an exit that must still go out; saved, so a restart goes on with it."""
        if self.exits_due.get(symbol) == reason:
            return
        if reason is None:
            self.exits_due.pop(symbol, None)
        else:
            self.exits_due[symbol] = reason
        self.records.state_set(EXITS_DUE_KEY, dict(self.exits_due))

    def publish_portfolio(self) -> None:
        if not self.bus.active:
            return
        self.refresh_account()
        acct = self.account_snapshot()
        if acct is None:
            return
        positions = self.marked_positions()
        expo = risk.exposure(positions) / acct.equity if acct.equity > 0 else 0.0
        self.bus.publish(PortfolioEvent(acct, positions, expo, self.day.round_trips,
                                        tuple(self.foreign_positions.values())))
