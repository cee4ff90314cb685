"""Exits and fills: the half of the bot that protects and books positions.

Stops (broker-side and local), trailing stops, end-of-day flatten, the daily
loss breaker, and booking fills into positions and trades. None of it waits
for approval, in any mode. Mixed into :class:`app.engine.bot.TradingBot`,
whose state (records, router, broker, settings, clock, bus) it uses.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

from loguru import logger

from app.engine import risk
from app.engine.broker.base import Broker, BrokerError
from app.engine.clock import NY, Clock, MarketCalendar
from app.engine.events import AlertEvent, EventBus, OrderEvent, TradeEvent
from app.engine.orders import OrderRouter, crash_point
from app.engine.records import Recorder
from app.engine.settings import Settings
from app.engine.types import Account, DayState, Order, OrderStatus, OrderType, Position, Side, Trade

_trades_log = logger.bind(trade=True)  # what lands in trades.log


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
    day: DayState

    if TYPE_CHECKING:
        @property
        def intraday(self) -> bool: ...
        def flatten_all(self, reason: str = "flatten all") -> list[str]: ...
        def _placed(self, order: Order) -> Order: ...
        def _revalidate_exit(self, order: Order) -> Order | None: ...
        def _refresh_account(self) -> Account | None: ...
        def _save_day(self) -> None: ...
        def _broker_position(self, symbol: str) -> Position | None: ...

    # -------------------------------------------------------------- exits
    def _protect(self, symbol: str, price: float) -> None:
        """Trailing stops, stop exits, end of day and the circuit breaker."""
        if self.plain:
            return
        self._breaker_check()
        if self._eod_due():
            if self.records.positions():
                self.flatten_all("end of day")
            return
        p = next((p for p in self.records.positions() if p.symbol == symbol), None)
        if p is None:
            return
        moved = risk.update_trailing(p, price, self.settings)
        if moved != p:
            self.records.position(moved)
            if moved.stop_price != p.stop_price:
                self.place_stop(moved)
        reason = risk.exit_reason(moved, price, self.settings)
        if reason:
            self._exit(symbol, reason)

    def _exit(self, symbol: str, reason: str, signal_id: str = "") -> str:
        p = next((p for p in self.records.positions() if p.symbol == symbol), None)
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
                return f"{symbol}: exit waits until stop {stop.client_order_id} is canceled (or has filled)"
        self.stop_orders.pop(symbol, None)
        now = self.clock.now()
        coid = f"{symbol}-exit-{now:%Y%m%dT%H%M%S}"
        order = Order(coid, symbol, Side.SELL, decision.qty, OrderType.MARKET, OrderStatus.NEW, now,
                      reason=f"exit: {reason}", signal_id=signal_id)
        placed = self._placed(self.router.place(order, revalidate=self._revalidate_exit))  # retried until sent
        return f"{symbol}: sell {decision.qty:g} ({reason}) {placed.status.value}"

    def place_stop(self, p: Position) -> None:
        if self.plain or not self.broker.supports_stop_orders or p.stop_price is None:
            return
        old = self.stop_orders.pop(p.symbol, None)
        if old:
            self._cancel(old)
        kind = "trailing stop" if p.trailing_active else "stop loss"
        coid = f"{p.symbol}-stop-{self.clock.now():%Y%m%dT%H%M%S}-{p.stop_price:.2f}"
        order = Order(coid, p.symbol, Side.SELL, p.qty, OrderType.STOP, OrderStatus.NEW,
                      self.clock.now(), stop_price=p.stop_price, reason=f"exit: {kind}")
        placed = self._placed(self.router.place(order))
        if placed.status.is_open:
            self.stop_orders[p.symbol] = coid

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
        """Ask the broker about every open order; act on fills and cancels."""
        if not self.records.has_open_orders:
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
            if b is None or (b.status == o.status and b.filled_qty == o.filled_qty):
                continue
            b = b.with_intent_of(o)
            if b.status == OrderStatus.FILLED:
                # book first, record "filled" after: if the app dies in between, the
                # order is still open in the record and the next start books it again
                self.on_filled(b)
                crash_point("after_fill")
            self.records.order(b, self.clock.now())
            if self.bus.active:
                self.bus.publish(OrderEvent(b))

    def on_filled(self, o: Order) -> None:
        price = float(o.filled_avg_price or 0.0)
        held = self._broker_position(o.symbol)
        local = next((p for p in self.records.positions() if p.symbol == o.symbol), None)
        if o.side == Side.BUY:
            qty = held.qty if held else o.filled_qty
            avg = held.avg_price if held else price
            p = Position(o.symbol, qty, avg, price, o.filled_at or self.clock.now(),
                         stop_price=risk.initial_stop(avg, self.settings), high_water=avg)
            self.records.position(p)
            _trades_log.info("BUY {} {} @ {:.2f} stop {:.2f}", qty, o.symbol, price, p.stop_price)
            self.place_stop(p)
            return
        if local is None:
            return
        if self.stop_orders.get(o.symbol) == o.client_order_id:
            self.stop_orders.pop(o.symbol)
        reason = o.reason.removeprefix("exit: ")
        trade = Trade(o.symbol, o.filled_qty, local.opened_at, o.filled_at or self.clock.now(),
                      local.avg_price, price, (price - local.avg_price) * o.filled_qty, reason)
        self.records.trade(trade)
        if self.bus.active:
            self.bus.publish(TradeEvent(trade))
        _trades_log.info("SELL {} {} @ {:.2f} ({}) P&L {:+.2f}", trade.qty, o.symbol,
                                     price, reason, trade.pnl)
        if held is None or held.qty <= 0:
            self.records.remove_position(o.symbol)
            for other in self.records.open_orders():
                if (other.symbol == o.symbol and other.side == Side.SELL
                        and other.client_order_id != o.client_order_id):  # not the fill being booked
                    self._cancel(other.client_order_id)
            self.stop_orders.pop(o.symbol, None)
            self.day = replace(self.day, round_trips=self.day.round_trips + 1)
            self._save_day()
        else:
            self.records.position(replace(local, qty=held.qty))

