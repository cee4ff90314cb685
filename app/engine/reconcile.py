"""Reconciliation: at start and after a reconnect the broker is the truth.

Every difference between the database and the broker is logged and fixed,
and returned as a line the GUI can show.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from loguru import logger

from app.engine import risk
from app.engine.broker.base import Broker, BrokerError
from app.engine.clock import Clock
from app.engine.orders import OrderRouter
from app.engine.records import Recorder
from app.engine.settings import Settings
from app.engine.types import Order, OrderStatus, OrderType, Position, Side


class Reconciled(Protocol):
    """What reconciliation reads and fixes: the trading bot, seen through its public state."""

    records: Recorder
    broker: Broker
    clock: Clock
    router: OrderRouter
    settings: Settings
    stop_orders: dict[str, str]  # symbol -> client order id of its working stop
    last_prices: dict[str, float]

    def book_fill(self, o: Order, before_qty: float = 0.0, before_avg: float | None = None) -> None: ...

    def keep_protected(self, symbol: str) -> None: ...


def reconcile(bot: Reconciled) -> list[str]:
    try:
        return _reconcile(bot)
    except BrokerError as exc:
        bot.router.connected = False
        msg = f"Reconciliation postponed: broker unreachable ({exc}); positions shown are the last known"
        logger.warning(msg)
        return [msg]


def _reconcile(bot: Reconciled) -> list[str]:
    lines: list[str] = []
    rec, broker, now = bot.records, bot.broker, bot.clock.now()

    # 1. Orders we recorded as intended or sent: what became of them? (The stops
    # known first, so that booking a fill replaces its stop instead of adding one.)
    for o in rec.open_orders():
        if o.order_type == OrderType.STOP and o.side == Side.SELL:
            bot.stop_orders.setdefault(o.symbol, o.client_order_id)
    for o in rec.open_orders():
        if o.client_order_id in bot.router.queue:
            continue  # placed since the start and waiting for the broker: not a leftover
        b = broker.get_order(o.client_order_id)
        if b is None:
            if o.status == OrderStatus.NEW:
                rec.order(replace(o, status=OrderStatus.CANCELED,
                                  reason=o.reason + "; never reached the broker before shutdown"), now)
                lines.append(f"order {o.client_order_id} never reached the broker: dropped")
            else:
                rec.order(replace(o, status=OrderStatus.CANCELED, reason=o.reason + "; unknown to broker"), now)
                lines.append(f"order {o.client_order_id} unknown to the broker: marked canceled")
            continue
        if b.status != o.status or b.filled_qty != o.filled_qty:
            b = b.with_intent_of(o)
            if b.filled_qty > o.filled_qty + 1e-9:  # booked before it is recorded (see TradingBot.sync_orders)
                bot.book_fill(b, o.filled_qty, o.filled_avg_price)
            rec.order(b, now)
            lines.append(f"order {o.client_order_id}: {o.status.value} -> {b.status.value}")

    for sym, coid in list(bot.stop_orders.items()):  # a stop that ended is no protection
        stop = rec.get_order(coid)
        if stop is None or not stop.status.is_open:
            del bot.stop_orders[sym]

    # 2. Orders at the broker we have no record of: adopt them.
    known = {o.client_order_id for o in rec.open_orders()}
    for b in broker.open_orders():
        if rec.get_order(b.client_order_id) is None:
            rec.order(b, now)
            lines.append(f"adopted open order {b.client_order_id} found at the broker")
        if b.order_type == OrderType.STOP and b.side == Side.SELL and b.status.is_open:
            bot.stop_orders[b.symbol] = b.client_order_id
        known.add(b.client_order_id)

    # 3. Positions: the broker's quantities win; stops are kept or created.
    held = {p.symbol: p for p in broker.positions()}
    local = {p.symbol: p for p in rec.positions()}
    for sym in local:
        if sym not in held:
            rec.remove_position(sym)
            lines.append(f"{sym}: closed at the broker while away; local position removed")
    for sym, there in held.items():
        mine = local.get(sym)
        if mine is None:
            mine = Position(sym, there.qty, there.avg_price, there.last_price, there.opened_at,
                            stop_price=risk.initial_stop(there.avg_price, bot.settings), high_water=there.avg_price)
            lines.append(f"{sym}: position of {there.qty:g} found at the broker; adopted with a stop")
        elif abs(mine.qty - there.qty) > 1e-9 or abs(mine.avg_price - there.avg_price) > 1e-6:
            lines.append(f"{sym}: quantity {mine.qty:g} -> {there.qty:g} (broker)")
            mine = replace(mine, qty=there.qty, avg_price=there.avg_price)
        rec.position(replace(mine, last_price=there.last_price))
        bot.last_prices.setdefault(sym, there.last_price)
        bot.keep_protected(sym)
    for line in lines:
        logger.warning("Reconcile: {}", line)
    bot.router.connected = True
    return lines


def rec_position(bot: Reconciled, symbol: str) -> Position:
    return next(p for p in bot.records.positions() if p.symbol == symbol)
