"""Entries: whether a signal becomes an order.

A signal is routed by the trading mode (execute, ask for approval, or ignore);
an approval or a queued entry is re-validated against price and risk before it
is sent, and every outcome (executed, pending, refused, expired, rejected) is
recorded. A SELL signal closes a holding through :class:`app.engine.exits.Exits`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from loguru import logger

from app.engine import risk
from app.engine.book import Book
from app.engine.clock import NY
from app.engine.events import AlertEvent, SignalEvent
from app.engine.exits import Exits
from app.engine.fills import Fills
from app.engine.modes import Decision, policy_for
from app.engine.orders import OWN_PREFIX
from app.engine.types import (
    Order,
    OrderStatus,
    OrderType,
    Side,
    SignalStatus,
    TradingMode,
    TradingSignal,
    round_to_tick,
)

LIMIT_FLOOR = 0.5  # a buy limit under this share of the last price is refused: it would not fill today


class Entries:
    def __init__(self, book: Book, fills: Fills, exits: Exits, mode: TradingMode) -> None:
        self.book = book
        self.fills = fills
        self.exits = exits
        self.mode = mode
        self.policy = policy_for(mode, book.settings)
        self.pending: dict[str, TradingSignal] = {}  # waiting for the user's approval, by signal id
        # the latest trade, asked for at approval (the data source's, where one is wired)
        self.latest_price: Callable[[str], float | None] | None = None
        self._manual = 0  # the ticket's orders so far: two in one second (a paused demo) get two ids

    def set_mode(self, mode: TradingMode) -> None:
        self.mode = mode
        self.policy = policy_for(mode, self.book.settings)

    # ---------------------------------------------------------- approvals
    def approve(self, signal_id: str) -> str:
        sig = self.pending.pop(signal_id, None)
        if sig is None:
            return "that signal is no longer pending"
        book = self.book
        if book.clock.now() >= sig.expires_at:
            self._done(sig, SignalStatus.EXPIRED, "expired before it was approved")
            return "expired"  # what the approval panel says
        price = self._latest(sig.symbol) or book.last_prices.get(sig.symbol, sig.price)
        book.last_prices[sig.symbol] = price  # the entry is sized at it too
        move = abs(price / sig.price - 1.0)
        if move > book.settings.max_price_move_pct:
            why = f"price moved {move:.2%} since the signal (limit {book.settings.max_price_move_pct:.2%})"
            self._done(sig, SignalStatus.REFUSED, why)
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
            self._done(sig, SignalStatus.REJECTED, "rejected by the user")

    def expire_pending(self) -> None:
        if not self.pending:  # the common case: nothing waits for approval
            return
        now = self.book.clock.now()
        for sid, sig in list(self.pending.items()):
            if now >= sig.expires_at:
                del self.pending[sid]
                self._done(sig, SignalStatus.EXPIRED, "not approved before the next bar")

    def withdraw_all(self, reason: str) -> None:
        """Every approval still waiting is withdrawn (flatten-all, the end of the day)."""
        for sid in list(self.pending):
            self._done(self.pending.pop(sid), SignalStatus.EXPIRED, reason)

    # ------------------------------------------------------------ the user's own orders
    def manual(self, symbol: str, side: Side, qty: float | None = None, amount: float | None = None,
               limit: float | None = None) -> str:
        """An order from the order ticket: a buy of ``qty`` shares (or ``amount`` dollars' worth at
        the last price, or at ``limit``), at market or, with ``limit``, a limit buy that fills at
        that price or better; or a market sell of the holding. The same risk rules judge it as
        any signal's entry (market hours, breaker, stale data, positions, sizes, buying power); a
        buy larger than they would size is refused with both numbers, never trimmed in silence.
        A working limit buy is exposure like any entry, and is cancelled as soon as the risk rules
        stop new entries (see :meth:`cancel_stale_limits`). The bought shares get their broker stop
        from the risk settings like every position. Recorded as a signal ("manual order") with what became
        of it. There are no limit sells: the shares are held for their broker stop, and a limit
        sell could only wait beside it by leaving them uncovered."""
        book = self.book
        now = book.clock.now()
        price = book.last_prices.get(symbol)
        if price is None or not (math.isfinite(price) and price > 0):
            return f"{symbol}: no price yet, so no order (wait for the first bar)"
        self._manual += 1
        sig = TradingSignal(symbol, side, 1.0, price, now, now + book.bar_delta, ("manual order",), (),
                            f"{symbol}-{now:%Y%m%dT%H%M%S}-{side.value}-manual{self._manual}")
        if limit is not None:
            if math.isfinite(limit) and limit > 0:
                limit = round_to_tick(limit, side)  # what the broker is sent is what is judged and shown
            why = self._bad_limit(side, limit, price)
            if why:
                self._done(sig, SignalStatus.REFUSED, f"manual order refused: {why}")
                return f"{symbol}: refused: {why}"
        if side == Side.SELL:
            if book.held(symbol) <= 0:
                self._done(sig, SignalStatus.REFUSED, "manual sell: nothing held")
                return f"{symbol}: nothing held to sell"
            if book.calendar is not None and not book.calendar.is_open(now):
                why = ("the market is closed: a market sell would wait at the broker until the open, and its "
                       "stop would be cancelled for it; the position keeps its broker stop (sell after the open)")
                self._done(sig, SignalStatus.REFUSED, f"manual sell refused: {why}")
                return f"{symbol}: refused: {why}"
            result = self.exits.exit(symbol, "manual sell", signal_id=sig.signal_id)
            self._done(sig, SignalStatus.EXECUTED, result)
            return result
        want = float(qty) if qty is not None else (amount or 0.0) / (limit or price)
        want = want if book.settings.fractional else float(math.floor(want + 1e-9))
        if not (math.isfinite(want) and want > 0):
            why = "less than one share" if amount else "a quantity above 0 is needed"
            self._done(sig, SignalStatus.REFUSED, f"manual buy: {why}")
            return f"{symbol}: refused: {why}"
        if book.committed(symbol) > 0:
            why = "already holding" if book.held(symbol) > 0 else "an entry is already working"
            self._done(sig, SignalStatus.REFUSED, f"manual buy: {why}")
            return f"{symbol}: refused: {why}"
        ctx = book.risk_context(symbol, Side.BUY)
        decision = risk.check_entry(ctx, book.settings)
        if not decision.accepted:
            self._done(sig, SignalStatus.REFUSED, f"manual buy refused: {decision.reason}")
            return f"{symbol}: refused by the risk rules: {decision.reason}"
        if want > decision.qty + 1e-9:
            why = (f"{_shares(want)} shares is more than the {_shares(decision.qty)} the risk rules allow at "
                   f"{price:,.2f} "
                   f"({book.settings.risk_per_trade:.1%} of equity at risk over a {book.settings.stop_loss_pct:.1%} "
                   f"stop, at most {book.settings.max_position_pct:.0%} of equity in one position)")
            self._done(sig, SignalStatus.REFUSED, f"manual buy refused: {why}")
            return f"{symbol}: refused: {why}"
        kind = OrderType.MARKET if limit is None else OrderType.LIMIT
        order = Order(f"{OWN_PREFIX}{sig.signal_id}-entry", symbol, Side.BUY, want, kind,
                      OrderStatus.INTENT, now, reason="manual entry", signal_id=sig.signal_id, limit_price=limit)
        placed = self.fills.placed(book.router.place(order, expires_at=sig.expires_at, revalidate=self.revalidate))
        status = SignalStatus.EXECUTED if placed.status != OrderStatus.REJECTED else SignalStatus.REFUSED
        at = "" if limit is None else f" limit {limit:,.{2 if limit >= 1 else 4}f}"
        detail = f"manual buy {_shares(want)}{at} ({placed.status.label})"
        if placed.status == OrderStatus.REJECTED:  # the broker's own words: what the user has to change
            detail = f"manual buy {_shares(want)}{at} refused by the broker: {placed.reason or 'no reason given'}"
        self._done(sig, status, detail)
        return f"{symbol}: {detail}"

    def _bad_limit(self, side: Side, limit: float, price: float) -> str:
        """Why a limit price cannot be sent, in the user's words; "" when it can."""
        if side == Side.SELL:
            return ("no limit sells: the shares are held for their broker stop, and a limit sell would have to "
                    "wait beside it uncovered; sell at market, or move the stop")
        if not (math.isfinite(limit) and limit > 0):
            return "a limit price above 0 is needed"
        if limit < price * LIMIT_FLOOR:
            return (f"a buy limit of {limit:,.4f} is under half the last price {price:,.2f}: it would not fill "
                    "today, and would hold this symbol's entry and a position slot until the close")
        most = price * (1 + self.book.settings.max_price_move_pct)
        if limit > most:
            return (f"a buy limit of {limit:,.2f} is more than {self.book.settings.max_price_move_pct:.1%} above the "
                    f"last price {price:,.2f}: it would fill at the market (send a market order)")
        return ""

    def cancel_stale_limits(self) -> list[str]:
        """Working limit buys are cancelled as soon as the risk rules would refuse the entry they
        make (the close near, the market closed, the circuit breaker, a record that cannot be
        written, stale data, the day's round trips): a fill then would open what the rules no
        longer allow. Their size was judged when they were sent. Returns what was cancelled."""
        book = self.book
        out = []
        for o in book.records.open_orders():
            if o.side != Side.BUY or o.order_type != OrderType.LIMIT:
                continue
            held = book.held(o.symbol)
            ctx = book.risk_context(o.symbol, Side.BUY, o.client_order_id)
            if held > 0:  # partly filled: judged as the entry it still is, not as a second one
                ctx = replace(ctx, positions=tuple(p for p in ctx.positions if p.symbol != o.symbol))
            why = risk.entry_refusal(ctx, book.settings)
            if why and book.cancel(o.client_order_id):
                out.append(o.client_order_id)
                msg = f"{o.symbol}: limit buy {o.client_order_id} cancelled: {why}"
                logger.warning(msg)
                if book.bus.active:
                    book.bus.publish(AlertEvent("warning", msg))
        return out

    # ------------------------------------------------------------ signals
    def submit(self, sig: TradingSignal) -> None:
        """A signal from a symbol's pipeline: executed, asked about, or recorded as why not."""
        book = self.book
        held = book.held(sig.symbol)
        if sig.side == Side.SELL and held <= 0:  # the app trades long only: a SELL closes, never opens
            book.records.signal(sig, SignalStatus.SKIPPED, "SELL with nothing held (long-only)", sig.time)
            return
        if sig.side == Side.BUY and book.committed(sig.symbol) > 0:
            why = "already holding" if held > 0 else "an entry is already working"
            book.records.signal(sig, SignalStatus.SKIPPED, why, sig.time)
            return
        if sig.side == Side.BUY and sig.expected_bps is not None and not sig.expected_bps > 0:
            why = f"expected return after costs {sig.expected_bps:+.1f} bps: no trade at or below 0"
            book.records.signal(sig, SignalStatus.SKIPPED, why, sig.time)
            return
        decision = self.policy.decide(sig.confidence)
        if decision == Decision.IGNORE:
            book.records.signal(sig, SignalStatus.BELOW_THRESHOLD, f"confidence {sig.confidence:.2f}", sig.time)
            logger.debug("Signal {} below threshold ({:.2f})", sig.signal_id, sig.confidence)
        elif decision == Decision.DROP:
            self._done(sig, SignalStatus.DROPPED, f"{self.mode.value} mode executes only >= {self.policy.auto:.2f}")
        elif decision == Decision.ASK:
            if sig.side == Side.BUY:  # never ask about an entry the risk rules already forbid
                check = risk.check_entry(self._entry_context(sig.symbol), book.settings)
                if not check.accepted:
                    self._done(sig, SignalStatus.REFUSED, check.reason)
                    return
            self.pending[sig.signal_id] = sig
            book.records.signal(sig, SignalStatus.PENDING, "waiting for approval", sig.time)
            book.bus.publish(SignalEvent(sig, SignalStatus.PENDING, "waiting for approval"))
        else:
            self._execute(sig, approved=False)

    def _execute(self, sig: TradingSignal, approved: bool) -> str:
        book = self.book
        if sig.side == Side.SELL:
            if book.held(sig.symbol) <= 0:
                self._done(sig, SignalStatus.REFUSED, "nothing held to sell")
                return "nothing held to sell"
            result = self.exits.exit(sig.symbol, "exit on SELL signal", signal_id=sig.signal_id)
            self._done(sig, SignalStatus.EXECUTED, result)
            return result
        ctx = self._entry_context(sig.symbol)
        decision = risk.check_plain(ctx, book.settings) if book.plain else risk.check_entry(ctx, book.settings)
        if not decision.accepted:
            self._done(sig, SignalStatus.REFUSED, decision.reason)
            return decision.reason
        order = Order(f"{OWN_PREFIX}{sig.signal_id}-entry", sig.symbol, Side.BUY, decision.qty, OrderType.MARKET,
                      OrderStatus.INTENT, book.clock.now(), reason="entry", signal_id=sig.signal_id)
        opens = None if book.plain else book.next_open()
        if opens is not None:  # a daily bar decided at night: the entry waits for the open, re-checked then
            assert book.calendar is not None
            until = book.calendar.next_session(opens).close
            placed = book.router.hold(order, opens, until, self.revalidate)
            when = f"at the open, {opens.astimezone(NY):%a %H:%M} New York"
        else:
            placed = self.fills.placed(book.router.place(order, expires_at=sig.expires_at,
                                                         revalidate=self.revalidate))
            when = placed.status.label
        status = SignalStatus.EXECUTED if placed.status != OrderStatus.REJECTED else SignalStatus.REFUSED
        detail = f"{'approved; ' if approved else ''}buy {decision.qty:g} ({when})"
        self._done(sig, status, detail)
        return detail

    def _entry_context(self, symbol: str) -> risk.RiskContext:
        """The risk facts for a new entry; for one that will wait for the open (daily bars at
        night), judged as it will be then: everything but the closed market counts now, and
        the whole check runs again before it is sent."""
        book = self.book
        ctx = book.risk_context(symbol, Side.BUY)
        if not book.plain and book.next_open() is not None:
            return replace(ctx, market_open=True, minutes_to_close=None)
        return ctx

    def revalidate(self, order: Order) -> Order | None:
        """A queued entry, before another attempt: still allowed, and how big now?"""
        ctx = self.book.risk_context(order.symbol, order.side, order.client_order_id)
        d = risk.check_entry(ctx, self.book.settings)
        if not d.accepted:
            return None
        # the user's own order is never made bigger than asked: only smaller, where the rules say so
        return replace(order, qty=min(order.qty, d.qty) if order.reason == "manual entry" else d.qty)

    def _done(self, sig: TradingSignal, status: SignalStatus, detail: str) -> None:
        self.book.records.signal(sig, status, detail, self.book.clock.now())
        if self.book.bus.active:
            self.book.bus.publish(SignalEvent(sig, status, detail))


def _shares(qty: float) -> str:
    """A number of shares as people write it: 10,000,000 (not 1e+07), 12.5 where fractional."""
    return f"{qty:,.0f}" if qty == int(qty) else f"{qty:,.4f}".rstrip("0")
