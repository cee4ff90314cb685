"""The record survives: restarts, reconciliation with the broker, and a
database that refuses a write. Real SQLite files in tmp_path throughout."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import utc
from desk import MORNING, SYMBOL, Desk

from app.engine.bootstrap import build_engine
from app.engine.broker.base import BrokerError
from app.engine.broker.simulated import SimulatedBroker
from app.engine.paths import AppPaths
from app.engine.records import SqlRecorder
from app.engine.settings import Settings
from app.engine.storage import (
    OrderRepository,
    PositionRepository,
    SignalRepository,
    Storage,
    StorageError,
    TradeRepository,
)
from app.engine.storage.db import SCHEMA_VERSION
from app.engine.storage.paper import SqlPaperBook
from app.engine.types import Order, OrderStatus, OrderType, Position, Side, Trade


class Run(Desk):
    """One run of the app: a database file, the paper broker's book in it, a bot.
    Closing it and opening another on the same folder is a restart."""

    def __init__(self, folder: Path, start: datetime = MORNING, mode: str = "auto",
                 broker: type[SimulatedBroker] = SimulatedBroker, **settings: object) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.storage = Storage(folder / "trader.db")
        records = SqlRecorder(self.storage, folder / "pending_records.jsonl")
        self.replayed = records.replay_backup()
        book = SqlPaperBook(self.storage, folder / "pending_paper_account.json")
        super().__init__(mode, start=start, sim=broker, records=records, book=book,
                         autostart=False, **settings)

    def start(self) -> Run:
        self.bot.start()
        return self

    def close(self) -> None:
        self.storage.close()


# --------------------------------------------------------------- restart
def test_the_record_and_the_paper_account_survive_a_restart(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    run.close_bar(20.0, p_up=0.95)
    run.tick(20.0)  # bought 1000 @ 20
    run.close_bar(21.0, p_up=0.05)
    run.tick(21.0)  # sold @ 21: +1000
    run.close_bar(21.0, p_up=0.95)
    run.tick(21.0)  # bought 961 @ 21 (20% of 101k), stop at 20.37
    cash = run.sim.account().cash
    when = run.clock.now()
    run.close()

    again = Run(tmp_path, start=when + timedelta(minutes=1))
    orders = {o.client_order_id: o for o in OrderRepository(again.storage).recent()}
    assert [o.status for o in orders.values()].count(OrderStatus.FILLED) == 3
    (stop,) = [o for o in orders.values() if o.order_type == OrderType.STOP and o.status.is_open]
    assert stop.stop_price == pytest.approx(21 * 0.97)
    (trade,) = TradeRepository(again.storage).all()
    assert (trade.entry_price, trade.exit_price, trade.pnl) == (20.0, 21.0, pytest.approx(1000.0))
    assert trade.entry_time.tzinfo is not None
    statuses = {s["signal_id"]: s["status"] for s in SignalRepository(again.storage).recent()}
    assert sorted(statuses.values()) == ["executed", "executed", "executed"]
    (pos,) = PositionRepository(again.storage).all()
    assert (pos.qty, pos.avg_price, pos.stop_price) == (961, 21.0, pytest.approx(20.37))
    assert again.sim.account().cash == pytest.approx(cash) == pytest.approx(101_000 - 961 * 21)
    assert [(p.symbol, p.qty) for p in again.sim.positions()] == [(SYMBOL, 961)]

    # the restarted bot finds everything in order and carries on from it
    again.start()
    assert again.alerts() == []
    assert len(again.sim.open_orders()) == 1  # the stop is adopted, not placed twice
    again.tick(20.37)
    trades = TradeRepository(again.storage).all()
    assert [t.exit_reason for t in trades] == ["exit on SELL signal", "stop loss"]
    assert again.records.positions() == [] and PositionRepository(again.storage).all() == []
    again.close()


def test_orders_after_a_restart_get_fresh_broker_ids(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    run.close_bar(20.0, p_up=0.95)
    run.tick(20.0)
    ids = {o.broker_order_id for o in OrderRepository(run.storage).recent()}
    run.close()
    again = Run(tmp_path, start=MORNING + timedelta(hours=1)).start()
    again.close_bar(20.0, p_up=0.05)
    again.tick(20.0)
    new = {o.broker_order_id for o in OrderRepository(again.storage).recent()} - ids
    assert len(new) == 1 and not new & ids
    again.close()


# ---------------------------------------------------------- reconcile
def test_a_broker_position_the_app_did_not_buy_is_left_alone_until_adopted(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.sim.on_price(SYMBOL, 20.0, MORNING)
    run.sim.submit(Order("bought-elsewhere", SYMBOL, Side.BUY, 300, OrderType.MARKET, OrderStatus.INTENT, MORNING))
    run.sim.on_price(SYMBOL, 20.0, MORNING)
    run.start()
    assert run.records.positions() == [] and run.sim.open_orders() == []
    assert any("not bought by the app: left alone" in a for a in run.alerts())
    assert "adopted" in run.bot.adopt(SYMBOL)
    (p,) = run.records.positions()
    assert (p.qty, p.avg_price, p.stop_price) == (300, 20.0, pytest.approx(19.4))
    (stop,) = [o for o in run.sim.open_orders() if o.order_type == OrderType.STOP]
    assert stop.qty == 300 and stop.stop_price == pytest.approx(19.4)
    run.close()


def test_a_local_position_the_broker_no_longer_has_is_removed(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.records.position(Position(SYMBOL, 100, 20.0, 20.0, MORNING, stop_price=19.4))
    run.close()
    again = Run(tmp_path).start()
    assert again.records.positions() == [] and PositionRepository(again.storage).all() == []
    assert any("closed at the broker while away" in a for a in again.alerts())
    again.tick(15.0)
    assert again.sim.open_orders() == [] and again.sim.fills == []  # nothing sold that is not held
    again.close()


def test_an_intent_never_sent_is_dropped_not_sent_late(tmp_path: Path) -> None:
    run = Run(tmp_path)
    intent = Order("PLTR-20250304T1455-BUY-entry", SYMBOL, Side.BUY, 100, OrderType.MARKET,
                   OrderStatus.INTENT, MORNING, reason="entry")
    run.records.order(intent, MORNING)  # recorded, then the app died before sending it
    run.close()
    again = Run(tmp_path).start()
    got = OrderRepository(again.storage).get(intent.client_order_id)
    assert got is not None and got.status == OrderStatus.CANCELED
    assert "never reached the broker" in got.reason
    again.tick(20.0)
    again.tick(20.0)
    assert again.sim.open_orders() == [] and again.sim.fills == []
    again.close()


def test_an_intent_sent_but_not_recorded_as_sent_is_not_sent_twice(tmp_path: Path) -> None:
    run = Run(tmp_path)
    intent = Order("PLTR-20250304T1455-BUY-entry", SYMBOL, Side.BUY, 100, OrderType.MARKET,
                   OrderStatus.INTENT, MORNING, reason="entry")
    run.records.order(intent, MORNING)
    run.sim.submit(intent)  # it reached the broker; the app died before recording that
    run.close()
    again = Run(tmp_path).start()
    assert OrderRepository(again.storage).get(intent.client_order_id).status == OrderStatus.NEW
    again.tick(20.0)
    assert [(f.client_order_id, f.qty) for f in again.sim.fills] == [(intent.client_order_id, 100)]
    (p,) = again.records.positions()
    assert p.qty == 100 and p.stop_price == pytest.approx(19.4)
    again.close()


# ------------------------------------------------- a refusing database
REFUSE = ("CREATE TRIGGER refuse_{t} BEFORE INSERT ON \"{t}\" "
          "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")


def test_a_refused_trade_lands_in_the_backup_and_is_replayed_at_the_next_start(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    run.close_bar(20.0, p_up=0.95)
    run.tick(20.0)
    run.storage.db.execute_sql(REFUSE.format(t="trade"))
    run.close_bar(20.5, p_up=0.05)
    run.tick(20.5)  # the exit fills; its trade cannot be written
    assert TradeRepository(run.storage).all() == []
    (line,) = [ln for ln in (tmp_path / "pending_records.jsonl").read_text().splitlines()
               if json.loads(ln)["kind"] != "state"]  # state written after a refusal is journaled too
    kept = json.loads(line)
    assert kept["kind"] == "trade" and kept["data"]["pnl"] == pytest.approx(500.0)
    assert len(run.records.trades) == 1  # the running app still shows it
    run.storage.db.execute_sql("DROP TRIGGER refuse_trade")  # the disk has room again
    run.close()

    again = Run(tmp_path)
    assert again.replayed >= 1  # the trade (and state written after it)
    (trade,) = TradeRepository(again.storage).all()
    assert trade.pnl == pytest.approx(500.0) and trade.exit_reason == "exit on SELL signal"
    assert not (tmp_path / "pending_records.jsonl").exists()
    again.close()
    assert Run(tmp_path).replayed == 0  # replayed once, not again


def test_a_refused_order_write_is_kept_too(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    run.storage.db.execute_sql(REFUSE.format(t="order"))
    run.close_bar(20.0, p_up=0.95)
    assert OrderRepository(run.storage).count() == 0
    assert len(run.sim.open_orders()) == 1  # the order still went out
    run.storage.db.execute_sql("DROP TRIGGER refuse_order")
    run.close()
    again = Run(tmp_path)
    assert again.replayed >= 2  # the intent and the broker's acknowledgement
    (o,) = OrderRepository(again.storage).recent()
    assert o.status == OrderStatus.NEW and o.qty == 1000
    again.close()


def _a_trade_in_the_backup(tmp_path: Path) -> tuple[AppPaths, Trade]:
    """An app home whose database refused a trade, kept in the backup file for the next start."""
    paths = AppPaths(tmp_path / "home").ensure()
    storage = Storage(paths.database)
    records = SqlRecorder(storage, paths.trade_backup)
    storage.db.execute_sql(REFUSE.format(t="trade"))
    trade = Trade(SYMBOL, 10, MORNING, MORNING + timedelta(hours=1), 20.0, 21.0, 10.0, "stop loss")
    records.trade(trade)
    storage.db.execute_sql("DROP TRIGGER refuse_trade")
    storage.close()
    return paths, trade


def test_build_engine_replays_the_backup_and_says_so(tmp_path: Path) -> None:
    paths, trade = _a_trade_in_the_backup(tmp_path)
    assert paths.trade_backup.exists()

    ctx = build_engine(paths, Settings(), today=utc(2025, 3, 6, 12, 0), sleep=lambda s: None)
    try:
        assert TradeRepository(ctx.storage).all() == [trade]
        assert any("Recovered 1 records" in n for n in ctx.notices)
        assert not paths.trade_backup.exists()
    finally:
        ctx.close()


# ----------------------------------------------------------- the file
def test_a_file_that_is_not_a_database_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "trader.db"
    path.write_text("these are my notes, not a database")
    with pytest.raises(StorageError, match="not a SQLite database"):
        Storage(path)
    assert path.read_text() == "these are my notes, not a database"  # never overwritten


def test_the_database_uses_wal(tmp_path: Path) -> None:
    s = Storage(tmp_path / "trader.db")
    assert s.db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()


def test_replaying_the_backup_never_rolls_an_order_back(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    run.storage.db.execute_sql(REFUSE.format(t="order"))
    run.close_bar(20.0, p_up=0.95)  # the entry's writes are refused...
    run.storage.db.execute_sql("DROP TRIGGER refuse_order")
    run.tick(20.0)  # ...then the database recovers and records the fill
    (entry,) = [o for o in OrderRepository(run.storage).recent() if o.reason == "entry"]
    assert entry.status == OrderStatus.FILLED
    run.close()

    again = Run(tmp_path, start=MORNING + timedelta(minutes=10))
    assert again.replayed >= 2  # the entry's two refused writes (and the state written after them)
    got = OrderRepository(again.storage).get(entry.client_order_id)
    assert got is not None and got.status == OrderStatus.FILLED  # not the stale 'submitted'
    again.start()
    assert again.alerts() == []
    stops = [o for o in again.sim.open_orders() if o.order_type == OrderType.STOP]
    assert len(stops) == 1  # one stop protects the position, not two
    again.close()


def test_an_exit_that_filled_while_away_is_counted_on_the_day(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    run.close_bar(20.0, p_up=0.95)
    run.tick(20.0)
    run.bot.flatten_all()  # the exit is sent; the app closes before it fills
    run.close()

    again = Run(tmp_path, start=MORNING + timedelta(minutes=20))
    again.sim.on_price(SYMBOL, 20.5, again.clock.now())  # the first price at start fills it
    again.start()
    (trade,) = TradeRepository(again.storage).all()
    assert trade.exit_price == 20.5 and trade.exit_reason == "flatten all"
    assert again.records.positions() == []
    assert again.bot.status().round_trips_today == 1
    again.tick(20.5)
    assert again.bot.status().round_trips_today == 1
    assert again.records.state_get("day.2025-03-04")["round_trips"] == 1  # kept for the next start
    again.close()


class UnreachableBroker(SimulatedBroker):
    """The paper broker behind a connection that is down until told otherwise."""

    down = True

    def _check(self) -> None:
        if self.down:
            raise BrokerError("connection refused", transient=True)

    def positions(self) -> list[Position]:
        self._check()
        return super().positions()

    def position(self, symbol: str) -> Position | None:
        self._check()
        return super().position(symbol)

    def get_order(self, client_order_id: str) -> Order | None:
        self._check()
        return super().get_order(client_order_id)

    def open_orders(self) -> list[Order]:
        self._check()
        return super().open_orders()


def test_reconciliation_postponed_at_start_happens_once_the_broker_is_back(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.records.position(Position(SYMBOL, 100, 20.0, 20.0, MORNING, stop_price=19.4))
    intent = Order("PLTR-20250304T1455-BUY-entry", SYMBOL, Side.BUY, 100, OrderType.MARKET,
                   OrderStatus.INTENT, MORNING, reason="entry")
    run.records.order(intent, MORNING)
    run.close()

    again = Run(tmp_path, broker=UnreachableBroker).start()
    assert isinstance(again.sim, UnreachableBroker)
    assert [a for a in again.alerts() if "postponed" in a] and not again.bot.status().connected
    assert [p.symbol for p in again.records.positions()] == [SYMBOL]  # the last known, for now
    again.tick(20.0)
    again.tick(20.0)
    assert len([a for a in again.alerts() if "postponed" in a]) == 1  # said once, not every price

    again.sim.down = False  # the connection is back
    again.tick(20.0)
    assert again.records.positions() == []
    assert any("closed at the broker while away" in a for a in again.alerts())
    got = OrderRepository(again.storage).get(intent.client_order_id)
    assert got is not None and got.status == OrderStatus.CANCELED
    assert again.bot.status().connected
    again.bot.flatten_all()
    again.tick(20.0)
    assert again.sim.fills == [] and again.sim.positions() == []  # nothing sold that is not held
    again.close()


def test_a_backup_line_cut_short_is_kept_aside_and_the_rest_replayed(tmp_path: Path) -> None:
    """A crash or a full disk mid-write leaves half a line: the good records still land, the
    bad one is kept in a named file and the window says so; the app starts."""
    paths, trade = _a_trade_in_the_backup(tmp_path)
    good = paths.trade_backup.read_text()
    paths.trade_backup.write_text(good + good[: len(good) // 2] + "\n")  # a second line, cut short

    ctx = build_engine(paths, Settings(), today=utc(2025, 3, 6, 12, 0), sleep=lambda s: None)
    try:
        assert TradeRepository(ctx.storage).all() == [trade]
        damaged = paths.trade_backup.with_suffix(".damaged.jsonl")
        assert damaged.read_text() == good[: len(good) // 2] + "\n"
        assert any("1 records in pending_records.jsonl could not be read" in n and damaged.name in n
                   for n in ctx.notices)
    finally:
        ctx.close()


# ------------------------------------------------- schema versions
def _order(coid: str) -> Order:
    return Order(coid, SYMBOL, Side.BUY, 10, OrderType.MARKET, OrderStatus.FILLED, MORNING,
                 filled_qty=10, filled_avg_price=20.0, filled_at=MORNING, reason="entry")


@pytest.mark.parametrize("taken", [None, "text", "folder"])
def test_an_older_record_is_migrated_forward_with_a_copy_kept(tmp_path: Path, taken: str | None) -> None:
    """Whatever sits at the copy's name already (an earlier copy, a file, a folder) is left as
    it is: it once got the blame for a healthy record ("file is not a database")."""
    path = tmp_path / "trader.db"
    first = tmp_path / "trader.db.before-migration"
    if taken == "text":
        first.write_text("an earlier copy")
    elif taken == "folder":
        first.mkdir()
    storage = Storage(path)
    OrderRepository(storage).save(_order("ait-old-1"), MORNING)
    storage.db.execute_sql('ALTER TABLE "order" DROP COLUMN "reason"')  # as an older version wrote it
    storage.db.execute_sql("PRAGMA user_version = 0")
    storage.close()
    again = Storage(path)
    try:
        (o,) = OrderRepository(again).recent()
        assert o.client_order_id == "ait-old-1" and o.reason == "" and o.filled_qty == 10
        assert again.db.execute_sql("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        again.close()
    copy = first if taken is None else tmp_path / "trader.db.before-migration-2"
    assert copy.is_file() and copy.stat().st_size > 0
    if taken == "text":
        assert first.read_text() == "an earlier copy"


def test_a_newer_record_and_an_empty_file_are_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "trader.db"
    Storage(path).close()
    storage = Storage(path)
    storage.db.execute_sql(f"PRAGMA user_version = {SCHEMA_VERSION + 98}")
    storage.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="written by a newer AI Trader"):
        Storage(path)
    assert path.read_bytes() == before
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(StorageError, match="is empty"):
        Storage(empty)
    assert empty.stat().st_size == 0, "not silently made a fresh account"


def test_todays_orders_and_trades_are_read_back_after_a_restart(tmp_path: Path) -> None:
    """The desk's tables came back empty after a restart, the working stop order included."""
    from app.engine.storage import Storage

    day = utc(2025, 3, 4, 5, 0)  # New York midnight of Tuesday 4 March
    yesterday, today = utc(2025, 3, 3, 15, 0), utc(2025, 3, 4, 15, 0)

    def order(coid: str, when: datetime, status: OrderStatus, kind: OrderType = OrderType.MARKET) -> Order:
        return Order(coid, SYMBOL, Side.BUY if kind == OrderType.MARKET else Side.SELL, 10, kind, status, when,
                     stop_price=19.0 if kind == OrderType.STOP else None)

    storage = Storage(tmp_path / "trader.db")
    records = SqlRecorder(storage, tmp_path / "backup.jsonl")
    records.order(order("old-entry", yesterday, OrderStatus.FILLED), yesterday)
    records.order(order("old-stop", yesterday, OrderStatus.NEW, OrderType.STOP), yesterday)  # still working
    records.order(order("new-entry", today, OrderStatus.FILLED), today)
    records.trade(Trade(SYMBOL, 10, yesterday - timedelta(hours=1), yesterday, 20.0, 21.0, 10.0, "end of day"))
    records.trade(Trade(SYMBOL, 10, today - timedelta(hours=1), today, 20.0, 19.5, -5.0, "stop loss"))
    storage.close()

    again = SqlRecorder(Storage(tmp_path / "trader.db"), tmp_path / "backup.jsonl")
    orders, trades = again.day_record(day)
    assert [o.client_order_id for o in orders] == ["old-stop", "new-entry"], "today's, and the stop still working"
    assert [t.exit_reason for t in trades] == ["stop loss"], "today's trades only"
