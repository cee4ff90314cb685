"""Exits and fills: the half of the bot that protects and books positions.

Stops (broker-side and local), trailing stops, end-of-day flatten, the daily
loss breaker, and booking fills into positions and trades. None of it waits
for approval, in any mode. Mixed into :class:`app.engine.bot.TradingBot`,
whose state (records, router, broker, settings, clock, bus) it uses.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger

from app.engine import risk
from app.engine.broker.base import Broker, BrokerError
from app.engine.clock import NY, Clock, MarketCalendar
from app.engine.events import AlertEvent, EventBus, OrderEvent, TradeEvent
from app.engine.orders import OrderRouter, crash_point, is_own
from app.engine.records import Recorder
from app.engine.settings import Settings
from app.engine.types import Account, DayState, Order, OrderStatus, OrderType, Position, Side, Trade

_trades_log = logger.bind(trade=True)  # what lands in trades.log
EXITS_DUE_KEY = "exits.due"  # symbol -> why, for exits still to send


class ExitsAndFills:
    # state and methods provided by TradingBot (and its other half, SignalsAndEntries)
    records: Recorder
    router: OrderRouter
    broker: Broker
    settings: Settings
    clock: Clock
    bus: EventBus
    calendar: MarketCalendar | None
    plain: bool
    stop_orders: dict[str, str]
    exits_due: dict[str, str]
    book_current: bool
    last_prices: dict[str, float]
    foreign_positions: dict[str, Position]
    day: DayState

    if TYPE_CHECKING:
        @property
        def intraday(self) -> bool: ...
        def flatten_all(self, reason: str = "flatten all") -> list[str]: ...
        def _placed(self, order: Order) -> Order: ...
        def _revalidate_exit(self, order: Order) -> Order | None: ...
        def _refresh_account(self) -> Account | None: ...
        def _save_day(self) -> None: ...
        def _broker_holding(self, symbol: str) -> tuple[bool, Position | None]: ...
        def _publish_portfolio(self) -> None: ...

    # -------------------------------------------------------------- exits
    def _protect_all(self) -> None:
        """The circuit breaker, the end-of-day flatten, then each position's stops."""
        if self.plain:
            return
        self._breaker_check()
        if self._eod_due():
            entries = [o for o in self.records.open_orders() if o.side == Side.BUY]
            if self.records.positions() or entries or any(q.order.side == Side.BUY for q in self.router.queue.values()):
                self.flatten_all("end of day")  # a working entry too: filled after the close it would sleep naked
            return
        for symbol, why in list(self.exits_due.items()):  # an exit asked for, waiting on a cancel: again
            self._exit(symbol, why)
        for p in self.records.positions():
            price = self.last_prices.get(p.symbol)
            if price is not None:
                self._protect(p.symbol, price)

    def _protect(self, symbol: str, price: float) -> None:
        """One position: trailing stop, stop exit or take profit, and its broker stop."""
        p = next((p for p in self.records.positions() if p.symbol == symbol), None)
        if p is None:
            return
        moved = risk.update_trailing(p, price, self.settings)
        if moved != p:
            self.records.position(moved)
        reason = risk.exit_reason(moved, price, self.settings)
        if reason and not (reason != "take profit" and self._broker_stop_covers(moved)):
            self._exit(symbol, reason)
        else:  # no exit due, or the broker's own stop has triggered and is selling: let it
            self.keep_protected(symbol)

    def _exit(self, symbol: str, reason: str, signal_id: str = "") -> str:
        """Sell the app's shares of ``symbol`` at market. Its stop is cancelled first (it holds
        the shares); while that cancel is pending the exit stays due and is tried again on
        every check, and no stop is put back meanwhile."""
        p = self._true_up(symbol)
        if p is None:
            self._due(symbol, None)
        working = [o for o in self.records.open_orders()
                   if o.symbol == symbol and o.side == Side.SELL and o.order_type == OrderType.MARKET]
        if working or any(q.order.symbol == symbol and q.order.side == Side.SELL
                          for q in self.router.queue.values()):
            return f"{symbol}: an exit is already working"
        decision = risk.check_exit(p, p.qty if p else 0.0)
        if not decision.accepted or p is None:
            return f"{symbol}: {decision.reason}"
        for stop in [o for o in self.records.open_orders()
                     if o.symbol == symbol and o.side == Side.SELL and o.order_type == OrderType.STOP]:
            # the stop holds the shares: a sell sent beside it would be refused
            if not self._cancel(stop.client_order_id):
                self._due(symbol, reason)
                return f"{symbol}: exit waits until stop {stop.client_order_id} is canceled (or has filled)"
        self._due(symbol, None)
        self.stop_orders.pop(symbol, None)
        now = self.clock.now()
        coid = self.router.new_id(symbol, "exit")
        order = Order(coid, symbol, Side.SELL, decision.qty, OrderType.MARKET, OrderStatus.NEW, now,
                      reason=f"exit: {reason}", signal_id=signal_id)
        placed = self._placed(self.router.place(order, revalidate=self._revalidate_exit))  # retried until sent
        if placed.status == OrderStatus.REJECTED:
            self._due(symbol, None)
            self.keep_protected(symbol)  # refused for good: the shares get their stop back at once
            return f"{symbol}: sell {decision.qty:g} ({reason}) rejected: {placed.reason}"
        return f"{symbol}: sell {decision.qty:g} ({reason}) {placed.status.value}"

    def keep_protected(self, symbol: str) -> None:
        """Every share held is covered by one working broker stop of its size at the
        position's stop price. Checked on every price and after every fill, never assumed:
        a stop that ended (expired, cancelled at the broker, refused) is placed again; one of
        the wrong size or price is moved with the broker's replace; a stop is never left for
        shares no longer held. A working exit holds the shares itself, so it waits."""
        if self.plain or not self.broker.supports_stop_orders:
            return
        p = self._true_up(symbol)
        stops = [o for o in self.records.open_orders()
                 if o.symbol == symbol and o.side == Side.SELL and o.order_type == OrderType.STOP]
        if p is None or p.qty <= 0:
            for stop in stops:
                self._cancel(stop.client_order_id)
            self.stop_orders.pop(symbol, None)
            return
        if p.stop_price is None or self._exit_working(symbol) or symbol in self.exits_due:
            return
        entries = [o for o in self.records.open_orders() if o.symbol == symbol and o.side == Side.BUY]
        if entries:  # a partly filled entry blocks its own stop (Alpaca refuses it as a wash trade):
            for entry in entries:  # what filled is a position now; the rest of the entry is cut
                self._cancel(entry.client_order_id)
            self.sync_orders()  # books what filled up to the cut, and protects it
            if not any(o.symbol == symbol and o.side == Side.BUY for o in self.records.open_orders()):
                self.keep_protected(symbol)
            return  # a cut still pending: the next check protects
        for extra in stops[:-1]:  # older ones (a replaced stop not yet confirmed ended): the newest works
            self._cancel(extra.client_order_id)
        current = stops[-1] if stops else None
        if current is None:
            placed = self._placed(self.router.place(self._stop_order(p)))
            if placed.status.is_open:
                self.stop_orders[symbol] = placed.client_order_id
            return
        self.stop_orders[symbol] = current.client_order_id
        covers = current.qty - current.filled_qty
        if abs(covers - p.qty) > 1e-9 or abs((current.stop_price or 0.0) - p.stop_price) >= 0.01:
            moved = self.router.replace(current, self._stop_order(p))
            if moved is not None:
                self.stop_orders[symbol] = moved.client_order_id
                if self.bus.active:
                    self.bus.publish(OrderEvent(moved))

    def _due(self, symbol: str, reason: str | None) -> None:
        """Note (or clear) an exit that must still go out; saved, so a restart goes on with it."""
        if self.exits_due.get(symbol) == reason:
            return
        if reason is None:
            self.exits_due.pop(symbol, None)
        else:
            self.exits_due[symbol] = reason
        self.records.state_set(EXITS_DUE_KEY, dict(self.exits_due))

    def _true_up(self, symbol: str) -> Position | None:
        """The app's position, no larger than what the broker holds. Shares gone while none of
        the app's sells worked (the user sold them, or cancelled the stop and sold) are gone:
        a stop or exit sized for them would sell short on a margin account."""
        p = next((p for p in self.records.positions() if p.symbol == symbol), None)
        if p is None:
            return p
        if not self.book_current and any(
                o.symbol == symbol and o.side == Side.SELL for o in self.records.open_orders()):
            return p  # the app's own sell may have filled unseen: its fill is booked by the next poll
        known, there = self._broker_holding(symbol)
        held = (there.qty if there is not None else 0.0) if known else p.qty
        if held >= p.qty - 1e-9:
            return p
        logger.warning("{}: the broker holds {:g} of the app's {:g} shares; the rest were sold outside the app",
                       symbol, max(held, 0.0), p.qty)
        if held <= 1e-9:
            self.records.remove_position(symbol)
            self.stop_orders.pop(symbol, None)
            self._due(symbol, None)
            return None
        smaller = replace(p, qty=held)
        self.records.position(smaller)
        return smaller

    def _broker_stop_covers(self, p: Position) -> bool:
        """A working broker stop covers every share at (or above) the position's stop."""
        return self.broker.supports_stop_orders and any(
            o.symbol == p.symbol and o.side == Side.SELL and o.order_type == OrderType.STOP
            and abs(o.qty - o.filled_qty - p.qty) <= 1e-9 and (o.stop_price or 0.0) >= (p.stop_price or 0.0) - 0.01
            for o in self.records.open_orders())

    def adopt(self, symbol: str) -> str:
        """The user hands the app shares it did not buy: from now on they have a broker stop
        (below the market: the configured distance under the lower of cost and price), trail,
        and are closed at the end of the day and by flatten-all like the app's own."""
        known, there = self._broker_holding(symbol)
        if not known:
            return f"{symbol}: the broker cannot be asked now; try again"
        if there is None or there.qty <= 0:
            return f"{symbol}: nothing held at the broker to adopt"
        try:  # shares the user's own resting sells hold stay the user's: the app takes the rest
            theirs = sum(o.qty - o.filled_qty for o in self.broker.open_orders()
                         if o.symbol == symbol and o.side == Side.SELL and not is_own(o.client_order_id))
        except BrokerError:
            return f"{symbol}: the broker cannot be asked now; try again"
        qty = there.qty - theirs
        if qty <= 1e-9:
            return f"{symbol}: every share is held by your own open sell orders; nothing to adopt"
        price = self.last_prices.get(symbol) or there.last_price
        self.last_prices[symbol] = price
        stop = round(min(there.avg_price, price) * (1 - self.settings.stop_loss_pct), 4)
        mine = next((p for p in self.records.positions() if p.symbol == symbol), None)
        p = (replace(mine, qty=qty) if mine is not None else
             Position(symbol, qty, there.avg_price, price, self.clock.now(), stop_price=stop,
                      high_water=max(there.avg_price, price)))
        self.records.position(p)
        self.foreign_positions.pop(symbol, None)
        logger.warning("{}: {:g} shares adopted by the user's choice; stop {:.2f}", symbol, qty, p.stop_price)
        self.keep_protected(symbol)
        self._publish_portfolio()
        left = f" ({theirs:g} held by your own open sells stay yours)" if theirs > 0 else ""
        return f"{symbol}: {qty:g} shares adopted, stop {p.stop_price:.2f}{left}"

    def _stop_order(self, p: Position) -> Order:
        kind = "trailing stop" if p.trailing_active else "stop loss"
        return Order(self.router.new_id(p.symbol, "stop"), p.symbol, Side.SELL, p.qty, OrderType.STOP,
                     OrderStatus.NEW, self.clock.now(), stop_price=p.stop_price, reason=f"exit: {kind}")

    def _exit_working(self, symbol: str) -> bool:
        return any(o.symbol == symbol and o.side == Side.SELL and o.order_type == OrderType.MARKET
                   for o in [*self.records.open_orders(), *(q.order for q in self.router.queue.values())])

    def _cancel(self, client_order_id: str) -> bool:
        """Cancel through the router and tell the GUI, so no order shows open when it is not."""
        ok = self.router.cancel(client_order_id)
        o = self.records.get_order(client_order_id)
        if ok and o is not None and self.bus.active:
            self.bus.publish(OrderEvent(o))
        return ok

    def _eod_due(self) -> bool:
        if not (self.intraday and self.settings.eod_flatten and self.calendar):
            return False
        now = self.clock.now()
        session = self.calendar.session(now.astimezone(NY).date())
        if session is None:
            return False
        cutoff = session.close - timedelta(minutes=self.settings.flatten_minutes_before_close)
        return cutoff <= now < session.close + timedelta(hours=4)

    def _breaker_check(self) -> None:
        """Trip the daily-loss circuit breaker once the limit is reached."""
        if self.day.breaker:
            return
        acct = self._refresh_account()
        if acct is None:
            return
        start = self.day.baseline(acct.equity)
        if not risk.breaker_should_trip(acct.equity, start, self.settings.daily_loss_limit):
            return
        self.day = replace(self.day, breaker=True)
        self._save_day()
        msg = (f"Daily loss limit reached: equity {acct.equity:,.2f} is "
               f"{acct.equity / start - 1:.2%} on the day. No new entries today.")
        logger.warning(msg)
        self.bus.publish(AlertEvent("error", msg))
        if self.settings.flatten_on_circuit_breaker:
            self.flatten_all("circuit breaker")

    # --------------------------------------------------------------- fills
    def sync_orders(self) -> None:
        """Ask the broker about every open order; act on fills and cancels. ``book_current``
        says whether every one of them was read without a failure this time (the app's book of
        its own fills is then up to date, and can be held against the broker's count)."""
        self.book_current = False
        if not self.records.has_open_orders:
            self.book_current = True
            return
        for o in self.records.open_orders():
            if o.client_order_id in self.router.queue:
                continue
            try:
                b = self.broker.get_order(o.client_order_id)
            except BrokerError as exc:
                self.router.connected = False
                logger.warning("Cannot poll order {}: {}", o.client_order_id, exc)
                return
            self.router.connected = True  # the broker answered
            if b is None and o.status == OrderStatus.NEW:  # an intent whose sending failed unseen
                dropped = replace(o, status=OrderStatus.CANCELED, reason=f"{o.reason}; never reached the broker")
                self.records.order(dropped, self.clock.now())
                continue
            if b is None or (b.status == o.status and b.filled_qty == o.filled_qty):
                continue
            b = b.with_intent_of(o)
            if b.filled_qty > o.filled_qty + 1e-9:
                # book first, record after: if the app dies in between, the record still
                # shows the shares unbooked and the next start books them
                self.book_fill(b, o.filled_qty, o.filled_avg_price)
                crash_point("after_fill")
            self.records.order(b, self.clock.now())
            if self.bus.active:
                self.bus.publish(OrderEvent(b))
            if b.filled_qty > o.filled_qty + 1e-9:
                self.keep_protected(b.symbol)  # the position changed: its stop follows
        self.book_current = True

    def book_fill(self, o: Order, before_qty: float = 0.0, before_avg: float | None = None) -> None:
        """Book the shares of ``o`` filled since ``before_qty``: a partial fill is booked as it
        happens (a partly filled entry is a position, with its stop; a partly filled exit
        leaves a smaller one). The broker's position is the truth for what is held; when it
        cannot be read, the local book is moved by the fill, never deleted."""
        qty = o.filled_qty - before_qty
        if qty <= 1e-9:
            return
        total_avg = float(o.filled_avg_price or 0.0)
        price = (total_avg * o.filled_qty - float(before_avg or 0.0) * before_qty) / qty if before_qty else total_avg
        known, held = self._broker_holding(o.symbol)
        local = next((p for p in self.records.positions() if p.symbol == o.symbol), None)
        when = o.filled_at or self.clock.now()
        if o.side == Side.BUY:
            self._book_buy(o.symbol, qty, price, when, local, held if known else None)
            return
        if local is None:
            return
        reason = o.reason.removeprefix("exit: ")
        trade = Trade(o.symbol, qty, local.opened_at, when, local.avg_price, price,
                      (price - local.avg_price) * qty, reason)
        self.records.trade(trade)
        if self.bus.active:
            self.bus.publish(TradeEvent(trade))
        _trades_log.info("SELL {} {} @ {:.2f} ({}) P&L {:+.2f}", trade.qty, o.symbol, price, reason, trade.pnl)
        left = local.qty - qty  # the app's own shares; the broker's count caps it (sold elsewhere too)
        if known:
            left = min(left, held.qty if held is not None else 0.0)
        if left > 1e-9:  # the caller, once the order is recorded, has the rest protected
            self.records.position(replace(local, qty=left))
            return
        self.records.remove_position(o.symbol)
        for other in self.records.open_orders():
            if (other.symbol == o.symbol and other.side == Side.SELL
                    and other.client_order_id != o.client_order_id):  # not the fill being booked
                self._cancel(other.client_order_id)
        self.stop_orders.pop(o.symbol, None)
        self.day = replace(self.day, round_trips=self.day.round_trips + 1)
        self._save_day()

    def _book_buy(self, symbol: str, qty: float, price: float, when: datetime, local: Position | None,
                  held: Position | None) -> None:
        total = (local.qty if local is not None else 0.0) + qty
        avg = (local.avg_price * local.qty + price * qty) / total if local is not None else price
        if held is not None:  # the broker may hold the user's own shares too: the app books what it bought
            if abs(held.qty - total) <= 1e-9:
                avg = held.avg_price  # all of it is the app's: the broker's cost basis
            total = min(total, held.qty)
        if local is None:
            p = Position(symbol, total, avg, price, when, stop_price=risk.initial_stop(avg, self.settings),
                         high_water=avg)
        else:  # more of the same entry filled: the stop follows the average until it trails
            stop = local.stop_price if local.trailing_active else risk.initial_stop(avg, self.settings)
            p = replace(local, qty=total, avg_price=avg, stop_price=stop, high_water=max(local.high_water, avg))
        self.records.position(p)
        _trades_log.info("BUY {} {} @ {:.2f} stop {:.2f}", qty, symbol, price, p.stop_price)
