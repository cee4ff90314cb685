"""Alpaca's orders in the engine's words: one place that reads alpaca-py's ``Order`` model,
for the REST adapter (:mod:`app.engine.broker.alpaca`) and the trade-updates stream
(:mod:`app.engine.broker.alpaca_stream`) alike."""

from __future__ import annotations

from typing import Any

from alpaca.trading.enums import OrderSide
from alpaca.trading.models import Order as AlpacaOrder
from loguru import logger

from app.engine.types import Order, OrderStatus, OrderType, Side

# Alpaca's order states (https://docs.alpaca.markets/docs/orders-at-alpaca, "Order Lifecycle")
# that have no state of their own here, and the one they behave as
_ALIASES = {
    "accepted_for_bidding": OrderStatus.PENDING_NEW, "pending_review": OrderStatus.PENDING_NEW,
    "held": OrderStatus.ACCEPTED,  # a leg waiting for its trigger (e.g. a bracket's stop)
    "stopped": OrderStatus.NEW,  # guaranteed a price, still working
    "suspended": OrderStatus.ACCEPTED,  # not eligible for trading now, still working later
}
_STOP_TYPES = frozenset({"stop", "stop_limit", "trailing_stop"})


def to_order_status(alpaca_status: str, filled_qty: float, qty: float) -> OrderStatus:
    """Alpaca's state as the engine's: most are the same word. An order ended after some
    shares filled keeps its ending (canceled, expired, replaced) with ``filled_qty`` > 0: the
    engine books shares from the filled quantity. "calculated" (done for the day, settlement
    pending) is filled when every share filled, else done for the day. An unknown word is
    taken as working, and said, so an order is never dropped on a new state's account."""
    s = alpaca_status.lower()
    if s == "calculated":
        return OrderStatus.FILLED if filled_qty >= qty > 0 else OrderStatus.DONE_FOR_DAY
    if s in _ALIASES:
        return _ALIASES[s]
    try:
        status = OrderStatus(s)
    except ValueError:
        logger.warning("Unknown Alpaca order status {!r}: treating the order as working", alpaca_status)
        return OrderStatus.ACCEPTED
    return OrderStatus.ACCEPTED if status is OrderStatus.INTENT else status


def round_stop(price: float) -> float:
    """Alpaca rejects sub-penny prices (two decimals at $1 and up, four below)."""
    return round(price, 2 if price >= 1.0 else 4)


def num(value: Any, default: float = 0.0) -> float:
    """Alpaca sends numbers as strings, and ``None`` for absent ones."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def to_order(a: AlpacaOrder) -> Order:
    """An order as Alpaca reports it (REST answer or stream update), in the engine's type."""
    filled_qty = num(a.filled_qty)
    kind = getattr(a.type or a.order_type, "value", "market")
    avg = num(a.filled_avg_price)
    return Order(
        client_order_id=a.client_order_id,
        symbol=a.symbol or "",
        side=Side.BUY if a.side == OrderSide.BUY else Side.SELL,
        qty=num(a.qty),
        order_type=OrderType.STOP if kind in _STOP_TYPES else OrderType.LIMIT if kind == "limit" else OrderType.MARKET,
        status=to_order_status(a.status.value, filled_qty, num(a.qty)),
        created_at=a.created_at,
        stop_price=num(a.stop_price) if a.stop_price is not None else None,
        limit_price=num(a.limit_price) if kind == "limit" and a.limit_price is not None else None,
        filled_qty=filled_qty,
        filled_avg_price=avg if avg > 0 else None,
        filled_at=a.filled_at,
        broker_order_id=str(a.id),
    )
