"""Signals and entries: the half of the bot that decides whether a model's call
becomes an order.

A signal is routed by the trading mode (execute, ask for approval, or ignore);
an approval or a queued entry is re-validated against price and risk before it
is sent, and every outcome (executed, pending, refused, expired, rejected) is
recorded. Mixed into :class:`app.engine.bot.TradingBot`, whose state (records,
router, broker, settings, clock, bus, policy) it uses; the exits and stops live
in :mod:`app.engine.exits`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger

from app.engine import risk
from app.engine.clock import NY, Clock, MarketCalendar
from app.engine.events import EventBus, OrderEvent, SignalEvent
from app.engine.modes import Decision, ExecutionPolicy
from app.engine.orders import OWN_PREFIX, OrderRouter
from app.engine.records import Recorder
from app.engine.settings import Settings
from app.engine.strategy.base import ModelOutput
from app.engine.types import Bar, Order, OrderStatus, OrderType, Side, SignalStatus, TradingMode, TradingSignal


class SignalsAndEntries:
    # state and methods provided by TradingBot (and its other half, ExitsAndFills)
    records: Recorder
    router: OrderRouter
    settings: Settings
    clock: Clock
    calendar: MarketCalendar | None
    bus: EventBus
    mode: TradingMode
    policy: ExecutionPolicy
    plain: bool
    pending: dict[str, TradingSignal]
    latest_price: Callable[[str], float | None] | None
    _bar_delta: timedelta
    last_prices: dict[str, float]

    if TYPE_CHECKING:
        def _held(self, symbol: str) -> float: ...
        def keep_protected(self, symbol: str) -> None: ...
        @property
        def intraday(self) -> bool: ...
        def _risk_context(self, symbol: str, side: Side, excluding: str = "") -> risk.RiskContext: ...
        def _exit(self, symbol: str, reason: str, signal_id: str = "") -> str: ...
        def book_fill(self, o: Order, before_qty: float = 0.0, before_avg: float | None = None) -> None: ...

    # ---------------------------------------------------------- approvals
    def approve(self, signal_id: str) -> str:
        sig = self.pending.pop(signal_id, None)
        if sig is None:
            return "that signal is no longer pending"
        now = self.clock.now()
        if now >= sig.expires_at:
            self._signal_done(sig, SignalStatus.EXPIRED, "expired before it was approved")
            return "expired"  # what the approval panel says
        price = self._latest(sig.symbol) or self.last_prices.get(sig.symbol, sig.price)
        self.last_prices[sig.symbol] = price  # the entry is sized at it too
        move = abs(price / sig.price - 1.0)
        if move > self.settings.max_price_move_pct:
            why = f"price moved {move:.2%} since the signal (limit {self.settings.max_price_move_pct:.2%})"
            self._signal_done(sig, SignalStatus.REFUSED, why)
            return why
        return self._execute(sig, approved=True)

    def _latest(self, symbol: str) -> float | None:
        """The latest trade, asked for now (an approval may come up to a stop check after the
        last price the engine saw); None where no source of it is wired or it cannot answer."""
        if self.latest_price is None:
            return None
        try:
            price = self.latest_price(symbol)
        except Exception as exc:  # noqa: BLE001 - no fresher price: the last one seen is used
            logger.debug("No latest trade for {}: {}", symbol, exc)
            return None
        return price if price is not None and math.isfinite(price) and price > 0 else None

    def reject(self, signal_id: str) -> None:
        sig = self.pending.pop(signal_id, None)
        if sig is not None:
            self._signal_done(sig, SignalStatus.REJECTED, "rejected by the user")

    # ------------------------------------------------------------ signals
    def _make_signal(self, bar: Bar, out: ModelOutput, now: datetime) -> TradingSignal:
        side = Side.BUY if out.p_up > 0.5 else Side.SELL
        expires = bar.time + 2 * self._bar_delta  # the end of the next bar
        sid = f"{bar.symbol}-{bar.time:%Y%m%dT%H%M}-{side.value}"
        return TradingSignal(bar.symbol, side, round(out.confidence, 4), bar.close, now, expires,
                             out.reasons, out.votes, sid)

    def _route(self, sig: TradingSignal) -> None:
        held = self._held(sig.symbol)
        if sig.side == Side.SELL and held <= 0:  # the app trades long only: a SELL closes, never opens
            self.records.signal(sig, SignalStatus.SKIPPED, "SELL with nothing held (long-only)", sig.time)
            return
        if sig.side == Side.BUY and self._committed(sig.symbol) > 0:
            why = "already holding" if held > 0 else "an entry is already working"
            self.records.signal(sig, SignalStatus.SKIPPED, why, sig.time)
            return
        decision = self.policy.decide(sig.confidence)
        if decision == Decision.IGNORE:
            self.records.signal(sig, SignalStatus.BELOW_THRESHOLD, f"confidence {sig.confidence:.2f}", sig.time)
            logger.debug("Signal {} below threshold ({:.2f})", sig.signal_id, sig.confidence)
        elif decision == Decision.DROP:
            why = f"{self.mode.value} mode executes only >= {self.policy.auto:.2f}"
            self._signal_done(sig, SignalStatus.DROPPED, why)
        elif decision == Decision.ASK:
            if sig.side == Side.BUY:  # never ask about an entry the risk rules already forbid
                check = risk.check_entry(self._entry_context(sig.symbol, sig.side), self.settings)
                if not check.accepted:
                    self._signal_done(sig, SignalStatus.REFUSED, check.reason)
                    return
            self.pending[sig.signal_id] = sig
            self.records.signal(sig, SignalStatus.PENDING, "waiting for approval", sig.time)
            self.bus.publish(SignalEvent(sig, SignalStatus.PENDING, "waiting for approval"))
        else:
            self._execute(sig, approved=False)

    def _execute(self, sig: TradingSignal, approved: bool) -> str:
        if sig.side == Side.SELL:
            if self._held(sig.symbol) <= 0:
                self._signal_done(sig, SignalStatus.REFUSED, "nothing held to sell")
                return "nothing held to sell"
            result = self._exit(sig.symbol, "exit on SELL signal", signal_id=sig.signal_id)
            self._signal_done(sig, SignalStatus.EXECUTED, result)
            return result
        ctx = self._entry_context(sig.symbol, sig.side)
        decision = risk.check_plain(ctx, self.settings) if self.plain else risk.check_entry(ctx, self.settings)
        if not decision.accepted:
            self._signal_done(sig, SignalStatus.REFUSED, decision.reason)
            return decision.reason
        order = Order(f"{OWN_PREFIX}{sig.signal_id}-entry", sig.symbol, Side.BUY, decision.qty, OrderType.MARKET,
                      OrderStatus.NEW, self.clock.now(), reason="entry", signal_id=sig.signal_id)
        opens = None if self.plain else self.next_open()
        if opens is not None:  # a daily bar decided at night: the entry waits for the open, re-checked then
            assert self.calendar is not None
            until = self.calendar.next_session(opens).close
            placed = self.router.hold(order, opens, until, self._revalidate)
            when = f"at the open, {opens.astimezone(NY):%a %H:%M} New York"
        else:
            placed = self._placed(self.router.place(order, expires_at=sig.expires_at, revalidate=self._revalidate))
            when = placed.status.value
        status = SignalStatus.EXECUTED if placed.status != OrderStatus.REJECTED else SignalStatus.REFUSED
        detail = f"{'approved; ' if approved else ''}buy {decision.qty:g} ({when})"
        self._signal_done(sig, status, detail)
        return detail

    def _entry_context(self, symbol: str, side: Side) -> risk.RiskContext:
        """The risk facts for a new entry; for one that will wait for the open (daily bars at
        night), judged as it will be then: everything but the closed market counts now, and
        the whole check runs again before it is sent."""
        ctx = self._risk_context(symbol, side)
        if not self.plain and self.next_open() is not None:
            return replace(ctx, market_open=True, minutes_to_close=None)
        return ctx

    def _working_entries(self, excluding: str = "") -> dict[str, float]:
        """Shares still to come from entries that are working: accepted or partly filled at
        the broker, or queued to be sent. They are exposure already (issue: a second entry
        was sent while the first had not filled)."""
        out: dict[str, float] = {}
        orders = [*self.records.open_orders(), *(q.order for q in self.router.queue.values())]
        seen: set[str] = set()
        for o in orders:
            if (o.side == Side.BUY and o.order_type == OrderType.MARKET and o.client_order_id not in seen
                    and o.client_order_id != excluding):
                seen.add(o.client_order_id)
                out[o.symbol] = out.get(o.symbol, 0.0) + max(o.qty - o.filled_qty, 0.0)
        return {s: q for s, q in out.items() if q > 0}

    def _committed(self, symbol: str) -> float:
        """Shares held plus shares on their way from working entries."""
        return self._held(symbol) + self._working_entries().get(symbol, 0.0)

    def next_open(self) -> datetime | None:
        """When a daily-bar entry decided while the market is closed may go out: the next
        session's open. None when it need not wait (intraday, no calendar, or open now)."""
        if self.calendar is None or self.intraday:
            return None
        now = self.clock.now()
        if self.calendar.is_open(now):
            return None
        return self.calendar.next_session(now).open

    def _revalidate(self, order: Order) -> Order | None:
        """A queued entry, before another attempt: still allowed, and how big now?"""
        d = risk.check_entry(self._risk_context(order.symbol, order.side, order.client_order_id), self.settings)
        return replace(order, qty=d.qty) if d.accepted else None

    def _placed(self, order: Order) -> Order:
        """Report a placed order; one the broker filled on arrival is booked now, then
        recorded filled (the router keeps it open until then). One already recorded
        filled (an intent placed again, e.g. replayed after a restart) is not booked twice."""
        if self.bus.active:
            self.bus.publish(OrderEvent(order))
        known = self.records.get_order(order.client_order_id)
        before = known.filled_qty if known is not None else 0.0
        if order.filled_qty > before + 1e-9:
            self.book_fill(order, before, known.filled_avg_price if known is not None else None)
            self.records.order(order, self.clock.now())
            self.keep_protected(order.symbol)
        return order

    def _revalidate_exit(self, order: Order) -> Order | None:
        """A queued exit, before another attempt: sell no more than is still held."""
        held = self._held(order.symbol)
        return replace(order, qty=min(order.qty, held)) if held > 0 else None

    def _signal_done(self, sig: TradingSignal, status: SignalStatus, detail: str) -> None:
        self.records.signal(sig, status, detail, self.clock.now())
        if self.bus.active:
            self.bus.publish(SignalEvent(sig, status, detail))

    def _expire_pending(self) -> None:
        if not self.pending:  # the common case: nothing waits for approval
            return
        now = self.clock.now()
        for sid, sig in list(self.pending.items()):
            if now >= sig.expires_at:
                del self.pending[sid]
                self._signal_done(sig, SignalStatus.EXPIRED, "not approved before the next bar")

