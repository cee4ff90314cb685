"""Reconciliation: at start and after a reconnect the broker is the truth.

Every difference between the database and the broker is logged and fixed,
and returned as a line the GUI can show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from loguru import logger

from app.engine.book import Book
from app.engine.broker.base import BrokerError
from app.engine.orders import is_own
from app.engine.types import Order, OrderStatus, OrderType, Position, Side

Follow = Callable[[Order, Order], Order]  # move a recorded order to the broker's word, booking its fills


def reconcile(book: Book, follow: Follow, keep_protected: Callable[[str], None]) -> list[str]:
    """Fix the book to the broker's word; ``follow`` moves an order on and books the shares
    that filled while away, ``keep_protected`` gives each position its stop. Returns what was
    found, one line each."""
    try:
        return _reconcile(book, follow, keep_protected)
    except BrokerError as exc:
        book.router.connected = False
        msg = f"Reconciliation postponed: broker unreachable ({exc}); positions shown are the last known"
        logger.warning(msg)
        return [msg]


def _reconcile(book: Book, follow: Follow, keep_protected: Callable[[str], None]) -> list[str]:
    lines: list[str] = []
    rec, broker, now = book.records, book.broker, book.clock.now()

    # 1. Orders we recorded as intended or sent: what became of them? (The stops
    # known first, so that booking a fill replaces its stop instead of adding one.)
    for o in rec.open_orders():
        if o.order_type == OrderType.STOP and o.side == Side.SELL:
            book.stop_orders.setdefault(o.symbol, o.client_order_id)
    for o in rec.open_orders():
        if o.client_order_id in book.router.queue:
            continue  # placed since the start and waiting for the broker: not a leftover
        b = broker.get_order(o.client_order_id)
        if b is None:
            if o.status == OrderStatus.INTENT:
                rec.order(replace(o, status=OrderStatus.CANCELED,
                                  reason=o.reason + "; never reached the broker before shutdown"), now)
                lines.append(f"order {o.client_order_id} never reached the broker: dropped")
            else:
                rec.order(replace(o, status=OrderStatus.CANCELED, reason=o.reason + "; unknown to broker"), now)
                lines.append(f"order {o.client_order_id} unknown to the broker: marked canceled")
            continue
        moved = follow(o, b)  # fills booked; each position is protected in step 3, once all is known
        if (moved.status, moved.filled_qty) != (o.status, o.filled_qty):
            lines.append(f"order {o.client_order_id}: {o.status.value} -> {moved.status.value}")

    for sym, coid in list(book.stop_orders.items()):  # a stop that ended is no protection
        stop = rec.get_order(coid)
        if stop is None or not stop.status.is_open:
            del book.stop_orders[sym]

    # 2. Orders at the broker we have no record of: the app's own (a record lost) are taken
    #    back; anyone else's are the user's, shown and left alone.
    book.foreign_orders.clear()
    for b in broker.open_orders():
        if rec.get_order(b.client_order_id) is None:
            if not is_own(b.client_order_id):
                book.foreign_orders.append(b)
                lines.append(f"order {b.client_order_id} at the broker was not placed by the app: left alone")
                continue
            if b.side == Side.BUY and b.filled_qty > 0:  # partly filled while the record was lost: its shares
                rec.order(replace(b, filled_qty=0.0, filled_avg_price=None, filled_at=None), now)  # are booked
                taken = rec.get_order(b.client_order_id)  # as fills, so they are the app's and get their stop
                if taken is not None:
                    follow(taken, b)
            else:
                rec.order(b, now)
            lines.append(f"order {b.client_order_id} of the app found at the broker: taken back")
        if b.order_type == OrderType.STOP and b.side == Side.SELL and b.status.is_open:
            book.stop_orders[b.symbol] = b.client_order_id

    # 3. Positions: the app manages only the shares it bought. Fewer at the broker: they
    #    were sold meanwhile; more, or a holding it never opened: the user's, left alone.
    held = {p.symbol: p for p in broker.positions()}
    local = {p.symbol: p for p in rec.positions()}
    book.foreign_positions.clear()
    selling = {o.symbol for o in rec.open_orders() if o.side == Side.SELL}
    selling |= {q.order.symbol for q in book.router.queue.values() if q.order.side == Side.SELL}
    for sym in local:
        if sym not in held and sym not in selling:  # an own sell still unbooked: its fill closes it
            rec.remove_position(sym)
            lines.append(f"{sym}: closed at the broker while away; local position removed")
    for sym, there in held.items():
        if sym in selling and sym in local:
            continue  # the app's own sell is on its way: its fill, once booked, settles the count
        mine = local.get(sym)
        own_stop = next((o for o in rec.open_orders() if o.symbol == sym and o.side == Side.SELL
                         and o.order_type == OrderType.STOP and is_own(o.client_order_id)), None)
        if mine is None and own_stop is not None:  # the record was lost, the app's own stop was not
            qty = min(there.qty, own_stop.qty - own_stop.filled_qty)
            mine = Position(sym, qty, there.avg_price, there.last_price, there.opened_at,
                            stop_price=own_stop.stop_price, high_water=there.avg_price)
            lines.append(f"{sym}: {qty:g} shares covered by the app's own stop {own_stop.client_order_id}: "
                         "taken back")
            if there.qty > qty + 1e-9:
                book.foreign_positions[sym] = replace(there, qty=there.qty - qty)
        if mine is None:
            book.foreign_positions[sym] = there
            lines.append(f"{sym}: {there.qty:g} shares at the broker were not bought by the app: left alone "
                         "(adopt them to have them managed)")
            continue
        if there.qty < mine.qty - 1e-9:
            lines.append(f"{sym}: quantity {mine.qty:g} -> {there.qty:g} (sold at the broker while away)")
            mine = replace(mine, qty=there.qty)
        elif there.qty > mine.qty + 1e-9:
            book.foreign_positions[sym] = replace(there, qty=there.qty - mine.qty)
            lines.append(f"{sym}: the broker holds {there.qty:g}, the app bought {mine.qty:g}; "
                         f"the other {there.qty - mine.qty:g} are left alone")
        elif abs(mine.avg_price - there.avg_price) > 1e-6:
            mine = replace(mine, avg_price=there.avg_price)
        rec.position(replace(mine, last_price=there.last_price))
        book.last_prices.setdefault(sym, there.last_price)
        keep_protected(sym)
    for line in lines:
        logger.warning("Reconcile: {}", line)
    book.router.connected = True
    return lines
