"""The simulated broker's persistent paper account (cash, positions, open orders)."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any

from app.engine.storage.db import Storage
from app.engine.storage.models import SimPositionRow, StateRow
from app.engine.types import Order, OrderStatus, OrderType, Position, Side

_ORDER_FIELDS = fields(Order)
_CASH = "paper.cash"
_ORDERS = "paper.open_orders"


class SqlPaperBook:
    def __init__(self, storage: Storage) -> None:
        self._s = storage

    def load(self) -> tuple[float, dict[str, Position], dict[str, Order]] | None:
        import json

        cash_row = StateRow.get_or_none(StateRow.key == _CASH)
        if cash_row is None:
            return None
        positions = {
            r.symbol: Position(r.symbol, r.qty, r.avg_price, r.avg_price, r.opened_at)
            for r in SimPositionRow.select()
        }
        orders_row = StateRow.get_or_none(StateRow.key == _ORDERS)
        orders = {}
        for d in json.loads(orders_row.value) if orders_row else []:
            o = _order_from(d)
            orders[o.client_order_id] = o
        return float(json.loads(cash_row.value)), positions, orders

    def save(self, cash: float, positions: dict[str, Position], orders: dict[str, Order]) -> None:
        import json

        # Finished orders are the engine's record now; the book keeps open ones and the
        # latest finished ones (the broker bounds them) so a resubmitted id is still
        # recognised. No slice here: an old open stop must never be cut from the book.
        kept = [_order_to(o) for o in orders.values()]
        with self._s.atomic():
            StateRow.insert(key=_CASH, value=json.dumps(cash)).on_conflict_replace().execute()
            StateRow.insert(key=_ORDERS, value=json.dumps(kept)).on_conflict_replace().execute()
            SimPositionRow.delete().execute()
            for p in positions.values():
                SimPositionRow.insert(symbol=p.symbol, qty=p.qty, avg_price=p.avg_price,
                                      opened_at=p.opened_at).execute()


def _order_to(o: Order) -> dict[str, Any]:
    d = {f.name: getattr(o, f.name) for f in _ORDER_FIELDS}  # asdict deep-copies: 20x slower, saved often
    for k in ("created_at", "filled_at"):
        d[k] = d[k].isoformat() if d[k] else None
    d["side"], d["order_type"], d["status"] = o.side.value, o.order_type.value, o.status.value
    return d


def _order_from(d: dict[str, Any]) -> Order:
    d = dict(d)
    d["side"], d["order_type"], d["status"] = Side(d["side"]), OrderType(d["order_type"]), OrderStatus(d["status"])
    for k in ("created_at", "filled_at"):
        d[k] = datetime.fromisoformat(d[k]) if d[k] else None
    return Order(**d)
