"""The engine's record of what happened, behind one small interface.

:class:`SqlRecorder` writes to SQLite through the repositories; a write the
database refuses goes to a JSON-lines backup file and is replayed into the
database at the next start, so no trade is lost to a locked or full disk.
:class:`MemoryRecorder` serves backtests, which must not touch the live record.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from loguru import logger

from app.engine import storage as st
from app.engine.files import not_a_file
from app.engine.strategy.base import ModelOutput
from app.engine.types import Order, OrderStatus, OrderType, Position, Side, SignalStatus, Trade, TradingSignal

RECENT_PREDICTIONS = 1_000


class Recorder:
    """In-memory record; the base of the SQL one (which also keeps these caches)."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self._open: dict[str, Order] = {}  # the open subset, kept so polling stays O(open)
        self.revisions: dict[str, int] = {}  # symbol -> bumped by each of its orders recorded
        self.trades: list[Trade] = []
        self.signals: dict[str, tuple[TradingSignal, str, str]] = {}
        # the latest only: a backtest makes one per bar (the SQL recorder keeps every one)
        self.predictions: deque[tuple[str, datetime, ModelOutput]] = deque(maxlen=RECENT_PREDICTIONS)
        self._positions: dict[str, Position] = {}
        self._state: dict[str, Any] = {}
        self.commands: list[dict[str, Any]] = []
        self.failing = ""  # why a write was refused ("" while every write lands): no new positions
        self.lost = ""  # why not even the backup could be kept, or the file is damaged: trading stops

    # orders
    def order(self, order: Order, now: datetime) -> None:
        self.revisions[order.symbol] = self.revisions.get(order.symbol, 0) + 1
        self.orders[order.client_order_id] = order
        if order.status.is_open:
            self._open[order.client_order_id] = order
        else:
            self._open.pop(order.client_order_id, None)

    def get_order(self, client_order_id: str) -> Order | None:
        return self.orders.get(client_order_id)

    def open_orders(self) -> list[Order]:
        return list(self._open.values())

    @property
    def has_open_orders(self) -> bool:
        return bool(self._open)

    def day_record(self, start: datetime) -> tuple[list[Order], list[Trade]]:
        """The orders placed (and every one still open) and the trades closed from ``start`` on,
        oldest first: what the desk shows again after a restart."""
        orders = [o for o in self.orders.values() if o.created_at >= start or o.status.is_open]
        return sorted(orders, key=lambda o: o.created_at), [t for t in self.trades if t.exit_time >= start]

    # trades, signals, predictions
    def trade(self, trade: Trade) -> None:
        self.trades.append(trade)

    def signal(self, sig: TradingSignal, status: SignalStatus, decision: str, now: datetime) -> None:
        self.signals[sig.signal_id] = (sig, status, decision)

    def prediction(self, symbol: str, bar_time: datetime, out: ModelOutput, now: datetime) -> None:
        self.predictions.append((symbol, bar_time, out))

    # positions (the engine's view: stops, trailing state)
    def position(self, p: Position) -> None:
        self._positions[p.symbol] = p

    def remove_position(self, symbol: str) -> None:
        self._positions.pop(symbol, None)

    def positions(self) -> list[Position]:
        return list(self._positions.values())

    def get_position(self, symbol: str) -> Position | None:
        return self._positions.get(symbol)

    # small state and the command journal
    def state_get(self, key: str, default: Any = None) -> Any:
        return self._state.get(key, default)

    def state_set(self, key: str, value: Any) -> None:
        self._state[key] = value

    def command(self, time: datetime, kind: str, coid: str, payload: dict[str, Any], outcome: str) -> None:
        self.commands.append({"time": time, "kind": kind, "client_order_id": coid,
                              "payload": payload, "outcome": outcome})

    def check_health(self) -> None:
        """A record in memory cannot fail (the SQL one checks its file)."""

    def prune(self, before: datetime) -> None:
        """Forget predictions and signals older than ``before`` (the memory one keeps only the
        latest predictions anyway, and a backtest's signals live as long as the run)."""


MemoryRecorder = Recorder


# what the backup file keeps when the database refuses it: the orders and trades, and the state
# a restart needs (the order-id sequence, the demo clock, the exits due)
JOURNALED = ("order", "trade", "state")


def _iso_time(v: Any) -> bool:
    try:
        t = datetime.fromisoformat(v)
    except (TypeError, ValueError):
        return False
    return t.tzinfo is not None and 2000 <= t.year <= 2100


def _iso_date(v: Any) -> bool:
    try:
        return isinstance(v, str) and 2000 <= date.fromisoformat(v).year <= 2100
    except ValueError:
        return False


# what a journaled state value must be before it is replayed (every key the app journals: those
# of app.engine.orders, .book, .bootstrap and .live_gate; "day.<date>" the book's day): a key
# not here, or a value that parses but holds junk, is set aside, never trusted
STATE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "orders.sequence": lambda v: type(v) is int and 0 <= v < 10**9,
    "orders.book": lambda v: isinstance(v, str) and v.isalnum() and 0 < len(v) <= 16,
    "orders.held": lambda v: isinstance(v, dict),
    "exits.due": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in (*v, *v.values())),
    "demo.clock": _iso_time,
    "demo.alone": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    "paper.first_day": _iso_date,
    "live.confirmed_at": _iso_time,
}


def _state_check(key: str) -> Callable[[Any], bool] | None:
    if key.startswith("day.") and _iso_date(key[4:]):  # the book's day, one key a date
        return lambda v: isinstance(v, dict)
    return STATE_CHECKS.get(key)


def _finite_record(d: dict[str, Any]) -> dict[str, Any]:
    """An order's or trade's fields, refused when a number is NaN or infinite or the quantity
    is not positive (the database would refuse the line, or keep an order of inf shares)."""
    for k, v in d.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"{k} = {v}")
    if not (isinstance(d.get("qty"), (int, float)) and d["qty"] > 0):
        raise ValueError(f"qty = {d.get('qty')!r}")
    return d
KEEP_FINISHED = 2_000  # finished orders the SQL record also keeps in memory (the rest: in the file)
MAX_ASIDE = 20  # numbered names tried for lines set aside before giving up
CHECK_EVERY_S = 300.0  # the database's integrity is checked this often while running


class SqlRecorder(Recorder):
    def __init__(self, storage: Any, backup_path: Path, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._storage = storage
        self._monotonic = monotonic
        self._checked = monotonic()
        self._refused: set[str] = set()  # kinds whose refusal was logged (once each: not on every bar)
        self._orders = st.OrderRepository(storage)
        self._trades = st.TradeRepository(storage)
        self._signals = st.SignalRepository(storage)
        self._preds = st.PredictionRepository(storage)
        self._pos = st.PositionRepository(storage)
        self._st = st.StateRepository(storage)
        self._journal = st.CommandJournal(storage)
        self.backup_path = backup_path
        self.damaged_notice = ""  # what replaying the backup could not read, for the user
        self._positions = {p.symbol: p for p in self._pos.all()}
        self.orders = {o.client_order_id: o for o in self._orders.open_orders()}
        self._open = dict(self.orders)

    def order(self, order: Order, now: datetime) -> None:
        super().order(order, now)
        self._write("order", _order_json(order), lambda: self._orders.save(order, now))
        if len(self.orders) - len(self._open) > 2 * KEEP_FINISHED and not self.failing:
            # finished orders are read from the database (get_order); memory keeps the latest
            finished = [k for k, o in self.orders.items() if not o.status.is_open]
            for k in finished[:-KEEP_FINISHED]:
                del self.orders[k]

    def get_order(self, client_order_id: str) -> Order | None:
        return self.orders.get(client_order_id) or self._orders.get(client_order_id)

    def day_record(self, start: datetime) -> tuple[list[Order], list[Trade]]:
        try:
            return self._orders.since(start), self._trades.since(start)
        except Exception as exc:  # noqa: BLE001 - a record that cannot be read: the desk starts with empty tables
            logger.warning("Could not read today's orders and trades back: {}", exc)
            return super().day_record(start)

    def trade(self, trade: Trade) -> None:
        super().trade(trade)
        self._write("trade", _trade_json(trade), lambda: self._trades.save(trade))

    def signal(self, sig: TradingSignal, status: SignalStatus, decision: str, now: datetime) -> None:
        self._write("signal", {"signal_id": sig.signal_id, "status": status.value},
                    lambda: self._signals.save(sig, status, decision, now))

    def prediction(self, symbol: str, bar_time: datetime, out: ModelOutput, now: datetime) -> None:
        self._write("prediction", {"symbol": symbol, "bar_time": bar_time.isoformat(), "p_up": out.p_up},
                    lambda: self._preds.save(symbol, bar_time, out.p_up, out.confidence, out.version,
                                             now, dict(out.votes)))

    def position(self, p: Position) -> None:
        super().position(p)
        self._write("position", {"symbol": p.symbol}, lambda: self._pos.save(p))

    def remove_position(self, symbol: str) -> None:
        super().remove_position(symbol)
        self._write("remove_position", {"symbol": symbol}, lambda: self._pos.delete(symbol))

    def state_get(self, key: str, default: Any = None) -> Any:
        return self._st.get(key, default)

    def state_set(self, key: str, value: Any) -> None:
        self._write("state", {"key": key, "value": value}, lambda: self._st.set(key, value))

    def command(self, time: datetime, kind: str, coid: str, payload: dict[str, Any], outcome: str) -> None:
        self._write("command", {"kind": kind, "coid": coid},
                    lambda: self._journal.record(time, kind, coid, payload, outcome))

    # ------------------------------------------------------------ backup
    def _write(self, kind: str, data: dict[str, Any], op: Callable[[], None]) -> None:
        """Write to the database; a refused write makes the record ``failing`` (no new positions)
        and an order or a trade goes to the backup file, synced to the disk, for the next start.
        When that fails too, the record is ``lost`` and the engine stops trading."""
        try:
            op()
        except Exception as exc:  # noqa: BLE001 - the record must survive a refusing database
            refused = f"a {kind} write failed: {exc}"
        else:
            if self.failing and kind == "state" and self.backup_path.exists():
                # the journal is replayed at the next start: its last word on a key must be the
                # newest, or a write that landed after a refusal is undone (the demo clock rewound)
                self._append(kind, data, f"a {kind} write after a refused one")
            return
        if not self.failing:
            self.failing = refused
        if kind not in JOURNALED:
            if kind not in self._refused:
                self._refused.add(kind)
                logger.error("Database write of {} failed ({}); not kept (only orders and trades are backed up): "
                             "further {} refusals are not logged", kind, refused, kind)
            return
        if not self._append(kind, data, refused):
            return
        if kind != "state" or kind not in self._refused:  # the demo clock is saved every bar: said once
            self._refused.add(kind)
            logger.error("Database write of {} failed ({}); kept in {}", kind, refused, self.backup_path)

    def _append(self, kind: str, data: dict[str, Any], refused: str) -> bool:
        """One line to the backup journal, synced to the disk; False (and the record lost) when
        it cannot be written."""
        try:
            st.check_regular(self.backup_path, "the backup of the trading record")
            line = json.dumps({"kind": kind, "db": self._storage.identity, "data": data})
            with self.backup_path.open("a") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())  # on the disk before the engine goes on: it is the only copy
        except (OSError, TypeError, ValueError, st.StorageError) as exc:
            if not self.lost:
                self.lost = f"{refused}, and its backup {self.backup_path} could not be written either ({exc})"
            logger.critical("Database write of {} failed and its backup too: {}", kind, exc)
            return False
        return True

    def prune(self, before: datetime) -> None:
        """Predictions and signals older than the retention go (a row of each per bar would
        grow the file without end); trades, orders and positions are never pruned."""
        counts: list[int] = []

        def op() -> None:
            with self._storage.atomic():
                counts.extend((self._preds.prune(before), self._signals.prune(before)))

        self._write("prune", {}, op)
        if counts and any(counts):
            logger.info("Pruned {} predictions and {} signals from before {:%Y-%m-%d}", *counts, before)

    def check_health(self) -> None:
        """Every CHECK_EVERY_S seconds, SQLite's quick check of the file: damage found while
        running (a disk error, another program writing into it) stops the trading."""
        if self.lost:
            return
        gone = self._storage.still_there()  # one stat: checked every time, not every five minutes
        if gone:
            self.lost = gone
            logger.critical(self.lost)
            return
        now = self._monotonic()
        if now - self._checked < CHECK_EVERY_S:
            return
        self._checked = now
        problem = self._storage.quick_check()
        if problem:
            self.lost = f"{self._storage.path} failed its integrity check while running ({problem})"
            logger.critical(self.lost)

    def replay_backup(self) -> int:
        """Write records kept in the backup file into the database; returns how many.

        All of it or nothing (one transaction): a database that refuses it now is said, and the
        file is kept for the next start. A line cut short is set aside in a named file; a line
        kept for another database (this one was moved aside, or the file was copied here) is
        set aside too, never replayed into this account."""
        path = self.backup_path
        st.check_regular(path, "the backup of the trading record")
        if not path.exists():
            return 0
        try:
            lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError as exc:
            raise st.StorageError(f"{path} cannot be read ({exc}): it holds records the database could not "
                                  "take. Fix its permissions and restart.") from None
        done = 0
        bad: list[str] = []
        foreign: list[str] = []
        try:
            with self._storage.atomic():
                for line in lines:
                    try:  # a line cut short (a crash or a full disk mid-write) must not stop every start
                        item = json.loads(line)
                        if item.get("db", self._storage.identity) != self._storage.identity:
                            foreign.append(line)
                            continue
                        self._replay(item)
                    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
                        bad.append(line)
                        logger.error("A record in {} cannot be read ({}): kept aside", path.name, exc)
                        continue
                    done += 1
        except st.StorageError:
            raise
        except Exception as exc:  # noqa: BLE001 - the database refuses: said, the backup kept
            raise st.StorageError(
                f"the records kept in {path} could not be written into {self._storage.path} ({exc}). Nothing "
                "was traded and the file is kept: free disk space or fix the permissions, then restart."
            ) from None
        notes = []
        if bad:
            notes.append(self._set_aside(bad, ".damaged.jsonl", "could not be read (cut short by a crash or a "
                                                                "full disk)"))
        if foreign:
            notes.append(self._set_aside(foreign, ".other-record.jsonl",
                                         f"were kept for another trading record, not {self._storage.path.name} "
                                         "as it is now (moved aside or replaced?), and were not replayed into it"))
        self.damaged_notice = "; ".join(notes)
        path.unlink()
        # what is open is what the database now says: an order kept only in the backup (a stop
        # placed while the disk was full) is the app's, and must be seen as working
        self._open = {o.client_order_id: o for o in self._orders.open_orders()}
        self.orders.update(self._open)
        if done:
            logger.warning("Replayed {} records from {} into the database", done, path)
        return done

    def _replay(self, item: dict[str, Any]) -> None:
        kind, data = item["kind"], item["data"]
        if kind == "order":
            o = _order_from_json(_finite_record(data))
            stored = self._orders.get(o.client_order_id)
            # the database may have recorded later news of this order after it recovered
            if stored is None or (o.status.stage, o.filled_qty) >= (stored.status.stage, stored.filled_qty):
                self._orders.save(o, o.filled_at or o.created_at)
        elif kind == "trade":
            self._trades.save(_trade_from_json(_finite_record(data)))
        elif kind == "state":
            key, value = str(data["key"]), data["value"]
            check = _state_check(key)
            if check is None:
                raise ValueError(f"{key} is not a state this app journals")
            if not check(value):
                raise ValueError(f"{key} = {str(value)[:60]!r} is not a value it can hold")
            self._st.set(key, value)
        else:
            raise ValueError(f"unknown kind {kind!r}")

    def _set_aside(self, lines: list[str], suffix: str, why: str) -> str:
        """``lines`` appended to ``<backup>.<suffix>`` (``-2``, ``-3``... where that name is a
        folder, a pipe or a device); StorageError, with the backup kept whole, when they cannot be."""
        aside = self.backup_path.with_suffix(suffix)
        n = 1
        while not_a_file(aside) and n < MAX_ASIDE:
            n += 1
            stem, ext = suffix.rsplit(".", 1)
            aside = self.backup_path.with_suffix(f"{stem}-{n}.{ext}")
        try:
            problem = not_a_file(aside)
            if problem:
                raise OSError(problem)
            with aside.open("a") as f:
                f.write("".join(line + "\n" for line in lines))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise st.StorageError(
                f"{len(lines)} records in {self.backup_path} {why}, and they cannot be kept aside in {aside} "
                f"({exc}). The file is kept as it is (its readable records are in the database): free disk "
                "space or move that file aside, then restart.") from None
        note = f"{len(lines)} records in {self.backup_path.name} {why}; they are kept in {aside.name}"
        logger.error(note)
        return note


def _order_json(o: Order) -> dict[str, Any]:
    d = asdict(o)
    d.update(side=o.side.value, order_type=o.order_type.value, status=o.status.value,
             created_at=o.created_at.isoformat(),
             filled_at=o.filled_at.isoformat() if o.filled_at else None)
    return d


def _order_from_json(d: dict[str, Any]) -> Order:
    o = Order(**{**d, "side": Side(d["side"]), "order_type": OrderType(d["order_type"]),
                 "status": OrderStatus(d["status"]),
                 "created_at": datetime.fromisoformat(d["created_at"]), "filled_at": None})
    if d.get("filled_at"):
        o = replace(o, filled_at=datetime.fromisoformat(d["filled_at"]))
    return o


def _trade_json(t: Trade) -> dict[str, Any]:
    d = asdict(t)
    d.update(entry_time=t.entry_time.isoformat(), exit_time=t.exit_time.isoformat())
    return d


def _trade_from_json(d: dict[str, Any]) -> Trade:
    return Trade(**{**d, "entry_time": datetime.fromisoformat(d["entry_time"]),
                    "exit_time": datetime.fromisoformat(d["exit_time"])})
