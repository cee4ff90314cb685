"""Fills: following the app's orders at the broker and booking every share that fills.

An order's state only moves forward (:attr:`OrderStatus.stage`) and its filled
quantity only grows; each new share is booked into the position as it fills
(a partly filled entry is a position, with its stop; a partly filled exit
leaves a smaller one), then the order is recorded, so a crash in between leaves
the shares unbooked for the next start to find, never booked twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from loguru import logger

from app.engine import risk
from app.engine.book import Book
from app.engine.broker.base import Broker, BrokerError
from app.engine.events import OrderEvent, TradeEvent
from app.engine.orders import crash_point
from app.engine.types import Order, OrderStatus, Position, Side, Trade

_trades_log = logger.bind(trade=True)  # what lands in trades.log


class Fills:
    def __init__(self, book: Book) -> None:
        self.book = book
        # what follows a change of a position (the exits give it its stop); set by the core
        self.on_position_changed: Callable[[str], None] = lambda symbol: None
        self._failing: set[str] = set()  # orders whose last read failed: read last
        # order -> its symbol's revision at the broker when last read (where the broker keeps one)
        self._read_at: dict[str, int] = {}
        # a broker that pushes order reports (Alpaca's stream); the others are only polled
        self._pushes = type(book.broker).trade_updates is not Broker.trade_updates

    def apply_updates(self) -> int:
        """Follow the order reports the broker pushed (Alpaca's trade updates) since the last
        call; the number applied. Orders the app did not record (the user's) are left to
        reconciliation; one waiting in the router's queue is the router's to settle."""
        book, applied = self.book, 0
        for seen in book.broker.trade_updates():
            o = book.records.get_order(seen.client_order_id)
            if o is None or seen.client_order_id in book.router.queue:
                continue
            self.follow(o, seen)
            applied += 1
        return applied

    def sync(self, symbol: str | None = None) -> None:
        """Apply pushed updates, then ask the broker about every open order (or ``symbol``'s);
        act on fills and ends. Polling runs on every check even while updates are pushed: a
        connected stream can stall without a word, and a stop that ended unseen is a position
        unprotected. ``book_current`` says whether every open order was read without a failure
        this time (the app's book of its own fills is then up to date, and can be held
        against the broker's count).

        One order whose read fails does not starve the others: it is read last next time, and
        the poll gives up only when two reads in a row fail (the broker is down)."""
        book, rec = self.book, self.book.records
        if self._pushes:
            self.apply_updates()
        if not rec.has_open_orders:  # the common case in a backtest: nothing to ask about
            if symbol is None:
                book.book_current = True
            return
        if symbol is None:
            book.book_current = False
        orders = [o for o in rec.open_orders() if symbol is None or o.symbol == symbol]
        if self._failing:
            orders.sort(key=lambda o: o.client_order_id in self._failing)
        failed = misses = answered = 0
        revision = book.broker.revision
        for o in orders:
            if o.client_order_id in book.router.queue:
                continue
            rev = revision(o.symbol)
            if rev is not None and self._read_at.get(o.client_order_id) == rev:
                continue  # nothing of its symbol changed at the broker since it was last read
            try:
                b = book.broker.get_order(o.client_order_id)
            except BrokerError as exc:
                self._failing.add(o.client_order_id)
                logger.warning("Cannot poll order {}: {}", o.client_order_id, exc)
                failed, misses = failed + 1, misses + 1
                if misses >= 2:
                    book.router.connected = False
                    return
                continue
            misses, answered = 0, answered + 1
            self._failing.discard(o.client_order_id)
            if rev is not None:
                self._read_at[o.client_order_id] = rev
            book.router.connected = True  # the broker answered
            if b is None and o.status == OrderStatus.INTENT:  # an intent whose sending failed unseen
                dropped = replace(o, status=OrderStatus.CANCELED, reason=f"{o.reason}; never reached the broker")
                rec.order(dropped, book.clock.now())
                continue
            if b is not None and (b.status != o.status or b.filled_qty != o.filled_qty):  # else: no news
                self.follow(o, b)
        if failed and not answered:
            book.router.connected = False  # not one read answered: the broker is unreachable
        if symbol is None:
            book.book_current = failed == 0
            if len(self._read_at) > 2 * len(orders):  # ended orders are read no more
                self._read_at = {o.client_order_id: self._read_at[o.client_order_id]
                                 for o in orders if o.client_order_id in self._read_at}

    def follow(self, o: Order, seen: Order, protect: bool = True) -> Order:
        """Move the recorded order ``o`` to what the broker says of it (``seen``): book the shares
        filled since, record it, tell the GUI. A report older than the record (a lower stage or
        fewer shares filled: polls and stream messages can cross), or any report of an order
        that has ended, changes nothing. Returns the order as recorded now (``o`` itself when
        nothing changed); ``protect`` False leaves the position's stop to the caller."""
        # the record as it is now: ``o`` may be from a list read before a nested poll (a fill's
        # stop check asks again) moved the order on, and its shares must not be booked twice
        o = self.book.records.get_order(o.client_order_id) or o
        if seen.status == o.status and seen.filled_qty == o.filled_qty:
            return o
        if not o.status.is_open or seen.status.stage < o.status.stage or seen.filled_qty < o.filled_qty - 1e-9:
            logger.debug("Order {}: ignoring a stale report ({} {:g} filled, recorded {} {:g})",
                         o.client_order_id, seen.status.value, seen.filled_qty, o.status.value, o.filled_qty)
            return o
        b = seen.with_intent_of(o)
        more = b.filled_qty > o.filled_qty + 1e-9
        if more:
            # book first, record after: if the app dies in between, the record still
            # shows the shares unbooked and the next start books them
            self.book_fill(b, o.filled_qty, o.filled_avg_price)
            crash_point("after_fill")
        self.book.records.order(b, self.book.clock.now())
        if self.book.bus.active:
            self.book.bus.publish(OrderEvent(b))
        if more and protect:
            self.on_position_changed(b.symbol)  # the position changed: its stop follows
        return b

    def placed(self, order: Order) -> Order:
        """Report a placed order; one the broker filled on arrival is booked now, then
        recorded filled (the router keeps it open until then). One already recorded
        filled (an intent placed again, e.g. replayed after a restart) is not booked twice."""
        book = self.book
        if book.bus.active:
            book.bus.publish(OrderEvent(order))
        known = book.records.get_order(order.client_order_id)
        before = known.filled_qty if known is not None else 0.0
        if order.filled_qty > before + 1e-9:
            self.book_fill(order, before, known.filled_avg_price if known is not None else None)
            book.records.order(order, book.clock.now())
            self.on_position_changed(order.symbol)
        return order

    def book_fill(self, o: Order, before_qty: float = 0.0, before_avg: float | None = None) -> None:
        """Book the shares of ``o`` filled since ``before_qty``: a buy adds to the position (no
        more than the broker holds: the user's own shares are not the app's), a sell takes
        its shares off the app's count and records the trade."""
        qty = o.filled_qty - before_qty
        if qty <= 1e-9:
            return
        book = self.book
        total_avg = float(o.filled_avg_price or 0.0)
        price = (total_avg * o.filled_qty - float(before_avg or 0.0) * before_qty) / qty if before_qty else total_avg
        local = book.position(o.symbol)
        when = o.filled_at or book.clock.now()
        if o.side == Side.BUY:
            known, held = book.broker_holding(o.symbol)
            self._book_buy(o.symbol, qty, price, when, local, held if known else None)
            return
        if local is None:
            return
        reason = o.reason.removeprefix("exit: ")
        trade = Trade(o.symbol, qty, local.opened_at, when, local.avg_price, price,
                      (price - local.avg_price) * qty, reason)
        book.records.trade(trade)
        if book.bus.active:
            book.bus.publish(TradeEvent(trade))
        _trades_log.info("SELL {} {} @ {:.2f} ({}) P&L {:+.2f}", trade.qty, o.symbol, price, reason, trade.pnl)
        # The app's own count, not capped by the broker's: the broker's position may already
        # show fills of this order not booked yet (two partial fills seen in one check), and
        # would take them off twice. Shares sold outside the app are found by Exits.true_up.
        left = local.qty - qty
        if left > 1e-9:  # the caller, once the order is recorded, has the rest protected
            book.records.position(replace(local, qty=left))
            return
        book.records.remove_position(o.symbol)
        for other in book.sells(o.symbol):
            if other.client_order_id != o.client_order_id:  # not the fill being booked
                book.cancel(other.client_order_id)
        book.stop_orders.pop(o.symbol, None)
        book.count_round_trip()

    def _book_buy(self, symbol: str, qty: float, price: float, when: datetime, local: Position | None,
                  held: Position | None) -> None:
        settings = self.book.settings
        total = (local.qty if local is not None else 0.0) + qty
        avg = (local.avg_price * local.qty + price * qty) / total if local is not None else price
        # The app books what it bought, not the broker's count: that may hold the user's own
        # shares, or already show a fill of another order (the stop) not booked yet, which
        # would be taken off twice. Shares sold outside the app are found by Exits.true_up.
        if held is not None and abs(held.qty - total) <= 1e-9:
            avg = held.avg_price  # all of it is the app's: the broker's cost basis
        if local is None:
            p = Position(symbol, total, avg, price, when, stop_price=risk.initial_stop(avg, settings),
                         high_water=avg)
        else:  # more of the same entry filled: the stop follows the average until it trails
            stop = local.stop_price if local.trailing_active else risk.initial_stop(avg, settings)
            p = replace(local, qty=total, avg_price=avg, stop_price=stop, high_water=max(local.high_water, avg))
        self.book.records.position(p)
        _trades_log.info("BUY {} {} @ {:.2f} stop {:.2f}", qty, symbol, price, p.stop_price)
