"""Repositories: the only code that turns rows into dataclasses and back."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, cast

import peewee as pw

from app.engine.storage.db import Storage
from app.engine.storage.models import (
    BarRow,
    CommandRow,
    OrderRow,
    PositionRow,
    PredictionRow,
    SignalRow,
    StateRow,
    TradeRow,
)
from app.engine.types import Bar, Order, OrderStatus, OrderType, Position, Side, SignalStatus, Trade, TradingSignal

UTC = UTC
_CHUNK = 500  # rows per INSERT; SQLite's variable limit is 32766 (9 columns a row)


class BarRepository:
    def __init__(self, storage: Storage) -> None:
        self._s = storage

    def upsert(self, bars: Iterable[Bar], timeframe: str, source: str = "") -> int:
        """Insert or replace bars keyed by (symbol, timeframe, start); returns the count."""
        rows = [
            {
                "symbol": b.symbol,
                "timeframe": timeframe,
                "ts": int(b.time.timestamp()),
                "open": b.open,
                "high": b.high,
                "low": b.low,
                "close": b.close,
                "volume": b.volume,
                "source": source,
            }
            for b in bars
        ]
        self.upsert_rows(rows)
        return len(rows)

    def upsert_rows(self, rows: list[dict[str, Any]]) -> None:
        with self._s.atomic():
            for i in range(0, len(rows), _CHUNK):
                BarRow.insert_many(rows[i : i + _CHUNK]).on_conflict_replace().execute()

    def load(self, symbol: str, timeframe: str, start: datetime | None = None,
             end: datetime | None = None, limit: int | None = None) -> list[Bar]:
        q = BarRow.select().where((BarRow.symbol == symbol) & (BarRow.timeframe == timeframe))
        if start is not None:
            q = q.where(BarRow.ts >= int(start.timestamp()))
        if end is not None:
            q = q.where(BarRow.ts < int(end.timestamp()))
        if limit is not None:
            q = q.order_by(BarRow.ts.desc()).limit(limit)
            rows = cast("list[tuple[Any, ...]]", list(q.tuples()))[::-1]  # the stubs type rows as models
        else:
            rows = cast("list[tuple[Any, ...]]", list(q.order_by(BarRow.ts).tuples()))
        return [
            Bar(r[0], datetime.fromtimestamp(r[2], UTC), r[3], r[4], r[5], r[6], r[7]) for r in rows
        ]

    def load_frame(self, symbol: str, timeframe: str, start: datetime | None = None,
                   end: datetime | None = None) -> Any:
        """Bars as the data layer's canonical pandas frame, fast enough for 100k rows.

        Goes through one raw cursor instead of building a model object per row:
        the chart and the trainer load whole histories, and peewee's per-row
        objects would cost seconds. ``end`` is exclusive.
        """
        import numpy as np
        import pandas as pd

        sql = ("SELECT ts, open, high, low, close, volume FROM bar "
               "WHERE symbol = ? AND timeframe = ?")
        params: list[Any] = [symbol, timeframe]
        if start is not None:
            sql += " AND ts >= ?"
            params.append(int(start.timestamp()))
        if end is not None:
            sql += " AND ts < ?"
            params.append(int(end.timestamp()))
        rows = self._s.db.execute_sql(sql + " ORDER BY ts", params).fetchall()
        arr = np.array(rows, dtype="float64").reshape(-1, 6)
        idx = pd.DatetimeIndex(pd.to_datetime(arr[:, 0].astype("int64"), unit="s", utc=True),
                               name="time").as_unit("ns")
        cols = ("open", "high", "low", "close", "volume")
        return pd.DataFrame({c: arr[:, i + 1] for i, c in enumerate(cols)}, index=idx)

    def upsert_frame(self, symbol: str, timeframe: str, frame: Any, source: str = "") -> int:
        """Insert or replace a canonical OHLCV frame in one transaction; returns the count.

        ``executemany`` on a prepared statement is the fast path for a large
        import (100k bars in well under a second); the key (symbol, timeframe,
        start) makes importing the same bars twice store them once.
        """
        if len(frame) == 0:
            return 0
        secs = frame.index.as_unit("ns").asi8 // 1_000_000_000
        cols = [frame[c].to_numpy(dtype="float64").tolist()
                for c in ("open", "high", "low", "close", "volume")]
        rows = [(symbol, timeframe, int(t), o, h, lo, c, v, source)
                for t, o, h, lo, c, v in zip(secs.tolist(), *cols, strict=True)]
        sql = ("INSERT OR REPLACE INTO bar (symbol, timeframe, ts, open, high, low, close, "
               "volume, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
        with self._s.atomic():
            self._s.db.cursor().executemany(sql, rows)
        return len(rows)

    def series(self) -> list[tuple[str, str, int]]:
        """What the cache holds: (symbol, timeframe, bar count) for each series."""
        rows = self._s.db.execute_sql(
            "SELECT symbol, timeframe, COUNT(*) FROM bar GROUP BY symbol, timeframe "
            "ORDER BY symbol, timeframe").fetchall()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def first_time(self, symbol: str, timeframe: str) -> datetime | None:
        ts = (
            BarRow.select(pw.fn.MIN(BarRow.ts))
            .where((BarRow.symbol == symbol) & (BarRow.timeframe == timeframe))
            .scalar()
        )
        return datetime.fromtimestamp(ts, UTC) if ts is not None else None

    def count(self, symbol: str, timeframe: str) -> int:
        return (
            BarRow.select()
            .where((BarRow.symbol == symbol) & (BarRow.timeframe == timeframe))
            .count()
        )

    def last_time(self, symbol: str, timeframe: str) -> datetime | None:
        ts = (
            BarRow.select(pw.fn.MAX(BarRow.ts))
            .where((BarRow.symbol == symbol) & (BarRow.timeframe == timeframe))
            .scalar()
        )
        return datetime.fromtimestamp(ts, UTC) if ts is not None else None


class SignalRepository:
    def __init__(self, storage: Storage) -> None:
        self._s = storage

    def save(self, sig: TradingSignal, status: SignalStatus, decision: str = "",
             decided_at: datetime | None = None) -> None:
        row = {
            "signal_id": sig.signal_id,
            "symbol": sig.symbol,
            "side": sig.side.value,
            "confidence": sig.confidence,
            "price": sig.price,
            "time": sig.time,
            "expires_at": sig.expires_at,
            "reasons": json.dumps(list(sig.reasons)),
            "status": status.value,
            "decision": decision,
            "decided_at": decided_at,
        }
        SignalRow.insert(row).on_conflict(
            conflict_target=[SignalRow.signal_id],
            update={SignalRow.status: status.value, SignalRow.decision: decision,
                    SignalRow.decided_at: decided_at},
        ).execute()

    def prune(self, before: datetime) -> int:
        """Delete the signals made before ``before`` (one still waiting for the user stays)."""
        return int(SignalRow.delete().where((SignalRow.time < before)
                                            & (SignalRow.status != SignalStatus.PENDING.value)).execute())

    def recent(self, limit: int = 200) -> list[dict[str, Any]]:
        q = SignalRow.select().order_by(SignalRow.time.desc()).limit(limit)
        return [
            {"signal_id": r.signal_id, "symbol": r.symbol, "side": r.side, "confidence": r.confidence,
             "price": r.price, "time": r.time, "status": r.status, "decision": r.decision}
            for r in q
        ]


# every state an order can still fill in, and "submitted", which records older than the
# full state machine wrote for any working order
_OPEN_STATUSES = [s.value for s in OrderStatus if s.is_open] + ["submitted"]


class OrderRepository:
    def __init__(self, storage: Storage) -> None:
        self._s = storage

    def save(self, order: Order, now: datetime) -> None:
        data = {
            "client_order_id": order.client_order_id,
            "broker_order_id": order.broker_order_id,
            "symbol": order.symbol,
            "side": order.side.value,
            "qty": order.qty,
            "order_type": order.order_type.value,
            "stop_price": order.stop_price,
            "limit_price": order.limit_price,
            "status": order.status.value,
            "filled_qty": order.filled_qty,
            "filled_avg_price": order.filled_avg_price,
            "filled_at": order.filled_at,
            "created_at": order.created_at,
            "updated_at": now,
            "reason": order.reason,
            "signal_id": order.signal_id,
        }
        update = {k: v for k, v in data.items() if k not in ("client_order_id", "created_at")}
        OrderRow.insert(data).on_conflict(
            conflict_target=[OrderRow.client_order_id],
            update={getattr(OrderRow, k): v for k, v in update.items()},
        ).execute()

    def get(self, client_order_id: str) -> Order | None:
        row = OrderRow.get_or_none(OrderRow.client_order_id == client_order_id)
        return _order(row) if row else None

    def open_orders(self) -> list[Order]:
        q = OrderRow.select().where(OrderRow.status.in_(_OPEN_STATUSES))
        return [_order(r) for r in q]

    def recent(self, limit: int = 500) -> list[Order]:
        q = OrderRow.select().order_by(OrderRow.created_at.desc()).limit(limit)
        return [_order(r) for r in q]

    def since(self, start: datetime, limit: int = 2_000) -> list[Order]:
        """Orders placed from ``start`` on, and every order still open, oldest first."""
        q = (OrderRow.select().where((OrderRow.created_at >= start) | OrderRow.status.in_(_OPEN_STATUSES))
             .order_by(OrderRow.created_at.desc()).limit(limit))
        return [_order(r) for r in reversed(list(q))]

    def count(self) -> int:
        return OrderRow.select().count()


def _order(r: OrderRow) -> Order:
    return Order(
        client_order_id=r.client_order_id,
        symbol=r.symbol,
        side=Side(r.side),
        qty=r.qty,
        order_type=OrderType(r.order_type),
        status=OrderStatus(r.status),
        created_at=r.created_at,
        stop_price=r.stop_price,
        limit_price=r.limit_price,
        filled_qty=r.filled_qty,
        filled_avg_price=r.filled_avg_price,
        filled_at=r.filled_at,
        broker_order_id=r.broker_order_id,
        reason=r.reason,
        signal_id=r.signal_id,
    )


class TradeRepository:
    def __init__(self, storage: Storage) -> None:
        self._s = storage

    def save(self, t: Trade) -> None:
        TradeRow.insert(
            symbol=t.symbol, qty=t.qty, entry_time=t.entry_time, exit_time=t.exit_time,
            entry_price=t.entry_price, exit_price=t.exit_price, pnl=t.pnl, exit_reason=t.exit_reason,
        ).on_conflict_ignore().execute()

    def all(self) -> list[Trade]:
        return [_trade(r) for r in TradeRow.select().order_by(TradeRow.exit_time)]

    def since(self, start: datetime, limit: int = 2_000) -> list[Trade]:
        """Trades closed from ``start`` on, oldest first."""
        q = TradeRow.select().where(TradeRow.exit_time >= start).order_by(TradeRow.exit_time.desc()).limit(limit)
        return [_trade(r) for r in reversed(list(q))]

    def first_time(self) -> datetime | None:
        r = TradeRow.select(pw.fn.MIN(TradeRow.exit_time)).scalar()
        return datetime.fromisoformat(r) if r else None


def _trade(r: TradeRow) -> Trade:
    return Trade(r.symbol, r.qty, r.entry_time, r.exit_time, r.entry_price, r.exit_price,
                 r.pnl, r.exit_reason)


class PositionRepository:
    def __init__(self, storage: Storage) -> None:
        self._s = storage

    def save(self, p: Position) -> None:
        PositionRow.insert(
            symbol=p.symbol, qty=p.qty, avg_price=p.avg_price, last_price=p.last_price,
            opened_at=p.opened_at, stop_price=p.stop_price, trailing_active=p.trailing_active,
            high_water=p.high_water,
        ).on_conflict_replace().execute()

    def delete(self, symbol: str) -> None:
        PositionRow.delete().where(PositionRow.symbol == symbol).execute()

    def all(self) -> list[Position]:
        return [
            Position(r.symbol, r.qty, r.avg_price, r.last_price, r.opened_at, r.stop_price,
                     r.trailing_active, r.high_water)
            for r in PositionRow.select()
        ]


class PredictionRepository:
    def __init__(self, storage: Storage) -> None:
        self._s = storage

    def save(self, symbol: str, bar_time: datetime, p_up: float, confidence: float,
             model_version: str, now: datetime, votes: dict[str, float]) -> None:
        PredictionRow.insert(
            symbol=symbol, bar_time=bar_time, p_up=p_up, confidence=confidence,
            model_version=model_version, created_at=now, p_lstm=votes.get("lstm"),
            p_rf=votes.get("random_forest"), p_momentum=votes.get("momentum"),
        ).execute()

    def count(self) -> int:
        return PredictionRow.select().count()

    def prune(self, before: datetime) -> int:
        """Delete the predictions of bars before ``before``; how many went."""
        return int(PredictionRow.delete().where(PredictionRow.bar_time < before).execute())


class StateRepository:
    def __init__(self, storage: Storage) -> None:
        self._s = storage

    def get(self, key: str, default: Any = None) -> Any:
        row = StateRow.get_or_none(StateRow.key == key)
        return json.loads(row.value) if row else default

    def set(self, key: str, value: Any) -> None:
        StateRow.insert(key=key, value=json.dumps(value)).on_conflict_replace().execute()


class CommandJournal:
    def __init__(self, storage: Storage) -> None:
        self._s = storage

    def record(self, time: datetime, kind: str, client_order_id: str, payload: dict[str, Any],
               outcome: str = "") -> None:
        CommandRow.insert(time=time, kind=kind, client_order_id=client_order_id,
                          payload=json.dumps(payload, default=str), outcome=outcome).execute()
