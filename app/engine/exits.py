"""Exits: every share held has its broker stop, and leaves when a rule says so.

Stops (broker-side and local), trailing stops, exits at market, the daily loss
breaker's trip, the end-of-day cut-off, and taking over ("adopting") shares the
user hands to the app. None of it waits for approval, in any mode.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

from loguru import logger

from app.engine import risk
from app.engine.book import Book
from app.engine.broker.base import BrokerError
from app.engine.clock import NY
from app.engine.events import AlertEvent, OrderEvent
from app.engine.fills import Fills
from app.engine.orders import is_own
from app.engine.types import Order, OrderStatus, OrderType, Position, Side


class Exits:
    def __init__(self, book: Book, fills: Fills) -> None:
        self.book = book
        self.fills = fills
        fills.on_position_changed = self.keep_protected
        self._refused: dict[str, str] = {}  # symbol -> the exit refusal last told to the user
        self._verified: dict[str, tuple[object, ...]] = {}  # symbol -> the state last found covered

    # ------------------------------------------------------------ checks
    def protect_positions(self) -> None:
        """Exits still due go out again (one waited on a cancel); each position gets its
        trailing stop, its stop or take-profit exit, and its broker stop."""
        book = self.book
        for symbol, why in list(book.exits_due.items()):
            self.exit(symbol, why)
        for p in book.records.positions():
            price = book.last_prices.get(p.symbol)
            if price is not None:
                self._protect(p.symbol, price)

    def _protect(self, symbol: str, price: float) -> None:
        book = self.book
        p = book.position(symbol)
        if p is None:
            return
        moved = risk.update_trailing(p, price, book.settings)
        if moved != p:
            book.records.position(moved)
        reason = risk.exit_reason(moved, price, book.settings)
        if reason and not (reason != "take profit" and book.broker_stop_covers(moved)):
            self.exit(symbol, reason)
        else:  # no exit due, or the broker's own stop has triggered and is selling: let it
            self.keep_protected(symbol)

    def breaker_trips(self) -> bool:
        """Trip the daily-loss circuit breaker once the limit is reached; True when it trips now."""
        book = self.book
        if book.day.breaker:
            return False
        acct = book.refresh_account()
        if acct is None:
            return False
        start = book.day.baseline(acct.equity)
        if not risk.breaker_should_trip(acct.equity, start, book.settings.daily_loss_limit):
            return False
        book.day = replace(book.day, breaker=True)
        book.save_day()
        msg = (f"Daily loss limit reached: equity {acct.equity:,.2f} is "
               f"{acct.equity / start - 1:.2%} on the day. No new entries today.")
        logger.warning(msg)
        book.bus.publish(AlertEvent("error", msg))
        return True

    def eod_due(self) -> bool:
        book = self.book
        if not (book.intraday and book.settings.eod_flatten and book.calendar):
            return False
        now = book.clock.now()
        session = book.calendar.session(now.astimezone(NY).date())
        if session is None:
            return False
        cutoff = session.close - timedelta(minutes=book.settings.flatten_minutes_before_close)
        return cutoff <= now < session.close + timedelta(hours=4)

    # -------------------------------------------------------------- exits
    def exit(self, symbol: str, reason: str, signal_id: str = "") -> str:
        """Sell the app's shares of ``symbol`` at market. Its stop is cancelled first (it holds
        the shares); while that cancel is pending the exit stays due and is tried again on
        every check, and no stop is put back meanwhile."""
        book = self.book
        p = self.true_up(symbol)
        if p is None:
            book.set_due(symbol, None)
        if book.exit_working(symbol):
            return f"{symbol}: an exit is already working"
        decision = risk.check_exit(p, p.qty if p else 0.0)
        if not decision.accepted or p is None:
            return f"{symbol}: {decision.reason}"
        for stop in book.sells(symbol, OrderType.STOP):
            # the stop holds the shares: a sell sent beside it would be refused
            if not book.cancel(stop.client_order_id):
                book.set_due(symbol, reason)
                return f"{symbol}: exit waits until stop {stop.client_order_id} is canceled (or has filled)"
        book.set_due(symbol, None)
        book.stop_orders.pop(symbol, None)
        coid = book.router.new_id(symbol, "exit")
        order = Order(coid, symbol, Side.SELL, decision.qty, OrderType.MARKET, OrderStatus.INTENT,
                      book.clock.now(), reason=f"exit: {reason}", signal_id=signal_id)
        placed = self.fills.placed(book.router.place(order, revalidate=self.revalidate_exit))  # retried until sent
        if placed.status == OrderStatus.REJECTED:
            book.set_due(symbol, None)
            self.keep_protected(symbol)  # refused for good: the shares get their stop back at once
            said = f"{symbol}: the broker refused the exit ({reason}): {placed.reason}"
            if self._refused.get(symbol) != said:  # once, not on every check that tries again
                self._refused[symbol] = said
                book.bus.publish(AlertEvent("error", f"{said}. The shares keep their stop; an open order "
                                                     "of yours on the other side (a wash trade) is the usual cause"))
            return f"{symbol}: sell {decision.qty:g} ({reason}) rejected: {placed.reason}"
        self._refused.pop(symbol, None)
        return f"{symbol}: sell {decision.qty:g} ({reason}) {placed.status.label}"

    def revalidate_exit(self, order: Order) -> Order | None:
        """A queued exit, before another attempt: sell no more than is still held."""
        held = self.book.held(order.symbol)
        return replace(order, qty=min(order.qty, held)) if held > 0 else None

    def keep_protected(self, symbol: str) -> None:
        """Every share held is covered by one working broker stop of its size at the
        position's stop price. Checked on every price and after every fill, never assumed:
        a stop that ended (expired, cancelled at the broker, refused) is placed again; one of
        the wrong size or price is moved with the broker's replace; a stop is never left for
        shares no longer held. A working exit holds the shares itself, so it waits.

        Where the broker promises to say when anything changed (:meth:`Broker.revision`: a
        backtest's), a check that found the shares exactly covered is not repeated until
        something it reads has changed: the symbol's orders at the broker and in the record, the position's
        size or stop."""
        book = self.book
        if book.plain or not book.broker.supports_stop_orders:
            return
        state = self._state_of(symbol)
        if state is not None and self._verified.get(symbol) == state:
            return
        self._keep_protected(symbol)
        state = self._state_of(symbol)
        if state is not None and self._covered(symbol):
            self._verified[symbol] = state
        else:
            self._verified.pop(symbol, None)

    def _state_of(self, symbol: str) -> tuple[object, ...] | None:
        """What the check reads, in a form that tells whether any of it changed; None where the
        broker cannot say (every check then runs in full)."""
        book = self.book
        rev = book.broker.revision(symbol)
        if rev is None or book.router.queue or not book.router.connected:
            return None
        p = book.records.get_position(symbol)
        return (rev, book.records.revisions.get(symbol, 0), book.book_current, symbol in book.exits_due,
                None if p is None else (p.qty, p.stop_price), book.stop_orders.get(symbol))

    def _covered(self, symbol: str) -> bool:
        """Exactly what the check aims at: flat with no stop, or one acknowledged stop of the
        position's size at its stop price."""
        p = self.book.position(symbol)
        stops = self.book.sells(symbol, OrderType.STOP)
        if p is None or p.qty <= 0 or p.stop_price is None:
            return p is None and not stops
        return len(stops) == 1 and stops[0].status != OrderStatus.INTENT and (
            abs(stops[0].qty - stops[0].filled_qty - p.qty) <= 1e-9
            and abs((stops[0].stop_price or 0.0) - p.stop_price) < 0.01)

    def _keep_protected(self, symbol: str) -> None:
        book = self.book
        p = self.true_up(symbol)
        mine = [o for o in book.records.open_orders() if o.symbol == symbol]  # read once: a hot path
        queue = book.router.queue
        # a stop recorded but never confirmed sent (its sending failed unseen) is no stop: it
        # must not make the real one look like an extra; the next poll drops it
        stops = [o for o in mine if o.side == Side.SELL and o.order_type == OrderType.STOP
                 and (o.status != OrderStatus.INTENT or o.client_order_id in queue)]
        if p is None or p.qty <= 0:
            for stop in stops:
                book.cancel(stop.client_order_id)
            book.stop_orders.pop(symbol, None)
            return
        if p.stop_price is None or symbol in book.exits_due or book.exit_working(symbol, mine):
            return
        # a partly filled entry blocks its own stop (a wash trade to Alpaca): what filled is a
        # position, the rest is cut
        if self._entry_working(symbol, mine):
            for entry in self._entries(symbol):
                book.cancel(entry.client_order_id)
            self.fills.sync(symbol)  # books what filled up to the cut
            if self._entry_working(symbol):
                return  # the cut could not be asked for (the broker is down): the next check again
            # cut, or being cut (pending_cancel: no longer in the market's way): the stop goes now,
            # sized on what the fills booked meanwhile (and any stop they placed already)
            self.keep_protected(symbol)
            return
        for extra in stops[:-1]:  # older ones (a replaced stop not yet confirmed ended): the newest works
            book.cancel(extra.client_order_id)
        current = stops[-1] if stops else None
        if current is None:
            placed = self.fills.placed(book.router.place(self._stop_order(p)))
            if placed.status.is_open:
                book.stop_orders[symbol] = placed.client_order_id
            return
        book.stop_orders[symbol] = current.client_order_id
        covers = current.qty - current.filled_qty
        if abs(covers - p.qty) > 1e-9 or abs((current.stop_price or 0.0) - p.stop_price) >= 0.01:
            moved = book.router.replace(current, self._stop_order(p))
            if moved is not None:
                book.stop_orders[symbol] = moved.client_order_id
                if book.bus.active:
                    book.bus.publish(OrderEvent(moved))

    def _entries(self, symbol: str, orders: list[Order] | None = None) -> list[Order]:
        """``symbol``'s open buys; ``orders``: its open orders when read already."""
        if orders is None:
            orders = [o for o in self.book.records.open_orders() if o.symbol == symbol]
        return [o for o in orders if o.side == Side.BUY]

    def _entry_working(self, symbol: str, orders: list[Order] | None = None) -> bool:
        """An entry still in the market (not being cancelled) for ``symbol``."""
        return any(o.status != OrderStatus.PENDING_CANCEL for o in self._entries(symbol, orders))

    def true_up(self, symbol: str, recheck: bool = True) -> Position | None:
        """The app's position, no larger than what the broker holds. Shares gone while none of
        the app's sells worked (the user sold them, or cancelled the stop and sold) are gone:
        a stop or exit sized for them would sell short on a margin account."""
        book = self.book
        p = book.position(symbol)
        if p is None:
            return p
        if not book.book_current and book.sells(symbol):
            return p  # the app's own sell may have filled unseen: its fill is booked by the next poll
        known, there = book.broker_holding(symbol)
        held = (there.qty if there is not None else 0.0) if known else p.qty
        if held >= p.qty - 1e-9:
            return p
        if any(o.status == OrderStatus.INTENT or o.client_order_id in book.router.queue for o in book.sells(symbol)):
            return p  # an own sell whose sending is not confirmed (an answer lost) may be what sold them
        if recheck and book.sells(symbol):
            # the app's own sell may have filled since the poll (a stop executing now): its fill
            # is booked first, as a trade, before any share is taken for sold elsewhere
            self.fills.sync(symbol)
            return self.true_up(symbol, recheck=False)  # what is still missing was sold elsewhere
        logger.warning("{}: the broker holds {:g} of the app's {:g} shares; the rest were sold outside the app",
                       symbol, max(held, 0.0), p.qty)
        if held <= 1e-9:
            book.records.remove_position(symbol)
            book.stop_orders.pop(symbol, None)
            book.set_due(symbol, None)
            return None
        smaller = replace(p, qty=held)
        book.records.position(smaller)
        return smaller

    def _stop_order(self, p: Position) -> Order:
        book = self.book
        kind = "trailing stop" if p.trailing_active else "stop loss"
        return Order(book.router.new_id(p.symbol, "stop"), p.symbol, Side.SELL, p.qty, OrderType.STOP,
                     OrderStatus.INTENT, book.clock.now(), stop_price=p.stop_price, reason=f"exit: {kind}")

    # ----------------------------------------------------------- the user's hand
    def move_stop(self, symbol: str, stop: float, looser_ok: bool = False) -> str:
        """The user moves a position's stop (dragged on the chart). Re-validated here: a long's
        stop must be below the market (at or above it, the stop would sell at once), and one
        below the initial stop (entry less ``stop_loss_pct``) only with ``looser_ok``, the user's
        confirmation. The broker's stop follows at once (replaced, as a trailing stop is); the
        trailing rule may raise it again later, never lower it."""
        book = self.book
        p = book.position(symbol)
        if p is None or p.qty <= 0:
            return f"{symbol}: nothing held, no stop to move"
        price = book.last_prices.get(symbol)
        if not (math.isfinite(stop) and stop > 0):
            return f"{symbol}: refused: a stop must be a price above 0"
        if price is None or stop >= price:
            return (f"{symbol}: refused: a stop at {stop:,.2f} is not below the market"
                    + (f" ({price:,.2f}): it would sell at once" if price is not None else " (no price yet)"))
        floor = risk.initial_stop(p.avg_price, book.settings)
        if stop < floor - 1e-9 and not looser_ok:
            return (f"{symbol}: refused: {stop:,.2f} is looser than the initial stop {floor:,.2f} "
                    f"({book.settings.stop_loss_pct:.1%} below the entry at {p.avg_price:,.2f}); confirm to move it "
                    "there")
        old = p.stop_price
        book.records.position(replace(p, stop_price=round(stop, 2)))
        self.keep_protected(symbol)
        return f"{symbol}: stop moved from {old:,.2f} to {stop:,.2f}" if old else f"{symbol}: stop set at {stop:,.2f}"

    # ----------------------------------------------------------- adopting
    def adopt(self, symbol: str) -> str:
        """The user hands the app shares it did not buy: from now on they have a broker stop
        (below the market: the configured distance under the lower of cost and price), trail,
        and are closed at the end of the day and by flatten-all like the app's own."""
        book = self.book
        known, there = book.broker_holding(symbol)
        if not known:
            return f"{symbol}: the broker cannot be asked now; try again"
        if there is None or there.qty <= 0:
            return f"{symbol}: nothing held at the broker to adopt"
        try:  # shares the user's own resting sells hold stay the user's: the app takes the rest
            theirs = sum(o.qty - o.filled_qty for o in book.broker.open_orders()
                         if o.symbol == symbol and o.side == Side.SELL and not is_own(o.client_order_id))
        except BrokerError:
            return f"{symbol}: the broker cannot be asked now; try again"
        qty = there.qty - theirs
        if qty <= 1e-9:
            return f"{symbol}: every share is held by your own open sell orders; nothing to adopt"
        price = book.last_prices.get(symbol) or there.last_price
        book.last_prices[symbol] = price
        stop = round(min(there.avg_price, price) * (1 - book.settings.stop_loss_pct), 4)
        mine = book.position(symbol)
        p = (replace(mine, qty=qty) if mine is not None else
             Position(symbol, qty, there.avg_price, price, book.clock.now(), stop_price=stop,
                      high_water=max(there.avg_price, price)))
        book.records.position(p)
        book.foreign_positions.pop(symbol, None)
        logger.warning("{}: {:g} shares adopted by the user's choice; stop {:.2f}", symbol, qty, p.stop_price)
        self.keep_protected(symbol)
        book.publish_portfolio()
        left = f" ({theirs:g} held by your own open sells stay yours)" if theirs > 0 else ""
        return f"{symbol}: {qty:g} shares adopted, stop {p.stop_price:.2f}{left}"
