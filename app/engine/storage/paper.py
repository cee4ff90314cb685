"""The simulated broker's persistent paper account (cash, positions, open orders).

The paper account is the broker of the demo: if it were lost with a refused database write,
a restart would find positions and orders the "broker" never had. So a save the database
refuses goes to a file next to it (written whole, synced, then renamed over the last one),
and the next start takes the account from there, once it is sure the file was kept for
this database.
"""

from __future__ import annotations

import json
import os
from dataclasses import fields
from datetime import datetime
from pathlib import Path
from typing import Any

from loguru import logger

from app.engine.storage.db import Storage, StorageError, check_regular
from app.engine.storage.models import SimPositionRow, StateRow
from app.engine.types import Order, OrderStatus, OrderType, Position, Side

_ORDER_FIELDS = fields(Order)
_CASH = "paper.cash"
_ORDERS = "paper.open_orders"


Account = tuple[float, dict[str, Position], dict[str, Order]]


class SqlPaperBook:
    def __init__(self, storage: Storage, backup: Path | None = None) -> None:
        self._s = storage
        self.backup = backup  # where a save the database refused goes (None: nowhere)
        self.notice = ""  # what loading the backup found, for the user
        self._backed_up = False  # the backup file holds a copy newer than the database's

    def load(self) -> Account | None:
        kept = self._load_backup()
        if kept is None:
            return self._load_db()
        self._backed_up = True
        if self.save(*kept):  # into the database again, the file removed (or kept, if it still refuses)
            logger.error("The database still refuses the paper account: it stays in {}", self.backup)
        return kept

    def _load_backup(self) -> Account | None:
        if self.backup is None:
            return None
        check_regular(self.backup, "the paper account")
        if not self.backup.exists():
            return None
        try:
            saved = json.loads(self.backup.read_text())
            if saved.get("db") != self._s.identity:
                aside = self.backup.with_suffix(".other-record.json")
                os.replace(self.backup, aside)
                self.notice = (f"{self.backup.name} was kept for another trading record, not "
                               f"{self._s.path.name} as it is now: not used (kept as {aside.name})")
                logger.error(self.notice)
                return None
            positions = {d["symbol"]: Position(d["symbol"], float(d["qty"]), float(d["avg_price"]),
                                               float(d["avg_price"]), datetime.fromisoformat(d["opened_at"]))
                         for d in saved["positions"]}
            orders = {o.client_order_id: o for o in map(_order_from, saved["orders"])}
            account = float(saved["cash"]), positions, orders
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"{self.backup} holds the paper account the database could not take, but it cannot "
                               f"be read ({exc}). Restore it, or move it aside to go on from the database's "
                               "older copy of the account.") from None
        logger.warning("The paper account was taken from {} (the database had refused it)", self.backup)
        return account

    def _load_db(self) -> Account | None:
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

    def save(self, cash: float, positions: dict[str, Position], orders: dict[str, Order]) -> str:
        """To the database: returns "". One that refuses it: to the backup file, and returns
        where it went. That failing too: raised."""
        try:
            self._save_db(cash, positions, orders)
        except Exception as exc:
            if self.backup is None:
                raise
            self._save_backup(cash, positions, orders)
            self._backed_up = True
            return f"the database refused it ({exc}); kept in {self.backup}"
        if self._backed_up and self.backup is not None:
            self.backup.unlink(missing_ok=True)  # the database took it again: the file is older now
            self._backed_up = False
        return ""

    def _save_backup(self, cash: float, positions: dict[str, Position], orders: dict[str, Order]) -> None:
        assert self.backup is not None
        check_regular(self.backup, "the paper account")
        body = json.dumps({"db": self._s.identity, "cash": cash, "orders": [_order_to(o) for o in orders.values()],
                           "positions": [{"symbol": p.symbol, "qty": p.qty, "avg_price": p.avg_price,
                                          "opened_at": p.opened_at.isoformat()} for p in positions.values()]})
        part = self.backup.with_suffix(".part")
        with part.open("w") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, self.backup)

    def _save_db(self, cash: float, positions: dict[str, Position], orders: dict[str, Order]) -> None:
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
