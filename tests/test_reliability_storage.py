"""When the record cannot be written: refused at start, no new positions while running, and a
clean stop (everything closed, or left to its broker stops) when not even the backup can be
kept. Real SQLite files; a database "full" is SQLite's own refusal, raised by a trigger."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import utc
from desk import Desk, FlakyBroker
from test_engine_storage import REFUSE, Run, _a_trade_in_the_backup

from app.engine import records as records_module
from app.engine.bootstrap import build_engine
from app.engine.broker.base import BrokerError
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import MarketCalendar
from app.engine.core import EngineHalted
from app.engine.events import RecordEvent
from app.engine.paths import AppPaths
from app.engine.settings import Settings
from app.engine.simmarket import SimulatedMarket
from app.engine.storage import OrderRepository, Storage, StorageError, TradeRepository
from app.engine.storage import db as db_module
from app.engine.types import Order, OrderStatus, OrderType, Side
from app.main import main as cli_main

EVERY_TABLE = ("prediction", "signal", "order", "trade", "position", "command", "state", "sim_position")


def refuse(run: Run, *tables: str) -> None:
    """The disk is full: SQLite refuses every insert into these tables from now on."""
    for t in tables:
        run.storage.db.execute_sql(REFUSE.format(t=t))
        run.storage.db.execute_sql(REFUSE.format(t=t).replace("refuse_", "refuse_upd_")
                                   .replace("BEFORE INSERT", "BEFORE UPDATE"))


def record_events(run: Run) -> list[RecordEvent]:
    return [e for e in run.events if isinstance(e, RecordEvent)]


# ------------------------------------------------------------------ at start
def test_a_read_only_database_is_refused_at_start_naming_the_file(tmp_path: Path) -> None:
    """Permissions say read-only: refused before anything trades (even for an account that
    could write through them: the user made it read-only for a reason)."""
    paths = AppPaths(tmp_path / "home").ensure()
    Storage(paths.database).close()
    for name in (paths.database, Path(f"{paths.database}-wal")):
        if name.exists():
            name.chmod(stat.S_IRUSR | stat.S_IRGRP)
            with pytest.raises(StorageError, match="read-only") as err:
                build_engine(paths, Settings(), sleep=lambda s: None)
            assert str(name) in str(err.value) and "chmod" in str(err.value)
            name.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_too_little_free_disk_is_refused_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_module.shutil, "disk_usage", lambda p: SimpleNamespace(total=10**9, used=0,
                                                                                  free=50 * 2**20))
    with pytest.raises(StorageError, match=r"only 50 MB free .* needs 200 MB"):
        Storage(tmp_path / "trader.db")
    assert not (tmp_path / "trader.db").exists()


def test_headless_says_what_is_wrong_with_a_read_only_record(app_home: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    paths = AppPaths(app_home)
    paths.ensure()
    Storage(paths.database).close()
    paths.database.chmod(stat.S_IRUSR)
    try:
        assert cli_main(["run", "--headless", "--max-bars", "3", "--speed", "0"]) == 2
    finally:
        paths.database.chmod(stat.S_IRUSR | stat.S_IWUSR)
    out = capsys.readouterr().out
    assert "read-only" in out and "Traceback" not in out


# ------------------------------------------------------------- while running
def test_a_refused_write_stops_new_positions_but_not_the_exits(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    held = run.buy(20.0)
    refuse(run, "prediction", "signal")  # the disk filled up
    run.close_bar(20.2, p_up=0.95)
    run.tick(20.2)  # the next check says so
    (said,) = record_events(run)  # once, however many writes fail after
    assert not said.halted and "No new positions" in said.message
    run.close_bar(20.1, p_up=0.95)
    run.tick(20.1)
    assert len(record_events(run)) == 1
    assert run.position is not None and run.position.qty == held.qty, "something more was bought"
    (stop,) = run.broker_orders(Side.SELL, OrderType.STOP)
    assert stop.qty == held.qty, "the shares lost their broker stop"

    run.tick(held.stop_price - 0.5)  # the stop is hit: the exit works, and is recorded
    run.tick(held.stop_price - 0.5)
    assert run.position is None
    assert run.records.trades and run.records.trades[-1].exit_reason in ("stop loss", "exit: stop loss")
    # and with the shares gone, a strong signal still opens nothing
    run.close_bar(19.0, p_up=0.99)
    run.tick(19.0)
    assert run.position is None
    refused = [d for s, d in run.signal_events() if s == "refused"]
    assert any("record cannot be written" in d for d in refused)
    run.close()


def test_when_not_even_the_backup_can_be_written_everything_is_closed_and_trading_stops(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    run.buy(20.0)
    run.records.backup_path = tmp_path / "journal-is-a-folder"
    run.records.backup_path.mkdir()  # writing the backup fails (as on a full disk)
    refuse(run, *EVERY_TABLE)
    run.close_bar(20.0, p_up=0.05)  # an exit: its order can be kept neither in the database nor the backup
    with pytest.raises(EngineHalted, match="Trading stopped"):
        run.tick(20.0)
    assert run.broker_orders(Side.SELL, OrderType.STOP) == [], "the stop was left behind a flatten"
    run.sim.on_price("PLTR", 20.0, run.clock.now())
    assert run.sim.positions() == [], "flatten-all did not close the position"
    halted = [e for e in record_events(run) if e.halted]
    assert len(halted) == 1 and "restart" in halted[0].message
    with pytest.raises(EngineHalted):  # it stays stopped
        run.tick(20.0)
    run.close()


def test_keep_stops_leaves_the_positions_to_their_broker_stops(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    run.bot.update_settings(run.settings.updated(on_record_lost="keep_stops"))
    held = run.buy(20.0)
    run.records.backup_path = tmp_path / "journal-is-a-folder"
    run.records.backup_path.mkdir()
    refuse(run, *EVERY_TABLE)
    run.tick(21.2)  # +6%: the trailing stop moves up; the moved stop's order cannot be kept anywhere
    with pytest.raises(EngineHalted, match="left to their broker stops"):
        run.tick(21.2)
    (stop,) = run.broker_orders(Side.SELL, OrderType.STOP)
    assert stop.qty == held.qty and run.sim.position("PLTR").qty == held.qty
    assert stop.stop_price > held.stop_price, "the trailing stop the broker holds is the moved one"
    run.close()


def test_a_stop_whose_slow_cancel_holds_up_the_last_flatten_leaves_no_share_uncovered() -> None:
    """Alpaca's cancels are asynchronous: the flatten's exit waits for the stop's cancel. The
    stopping engine sends it once the cancel lands, not never (the shares would sit naked)."""
    desk = Desk(sim=functools.partial(SimulatedBroker, cancel_delay_s=2.0))
    desk.bot.core.router.sleep = lambda s: desk.clock.advance(timedelta(seconds=s))
    held = desk.buy(20.0)
    desk.records.lost = "the disk is full"
    with pytest.raises(EngineHalted) as stopped:
        desk.tick(20.0)
    desk.clock.advance(timedelta(minutes=5))  # nothing runs now but the broker
    desk.sim.open_orders()
    working = [o for o in desk.sim.open_orders() if o.side == Side.SELL]
    assert sum(o.qty - o.filled_qty for o in working) == held.qty, "shares left with nothing working to sell them"
    assert "exit waits for the simulated market's next price: it fills when the app runs again" in str(stopped.value)
    desk.sim.on_price("PLTR", 20.0, desk.clock.now())
    assert desk.sim.positions() == []


class RefusesExits(FlakyBroker):
    def submit(self, order: Order) -> Order:
        if order.side == Side.SELL and order.order_type == OrderType.MARKET:
            raise BrokerError("rejected: trading halted in this security", transient=False)
        return super().submit(order)


def test_a_flatten_the_broker_refuses_when_trading_stops_leaves_the_stop() -> None:
    desk = Desk(wrap=RefusesExits)
    held = desk.buy(20.0)
    desk.records.lost = "the disk is full"
    with pytest.raises(EngineHalted) as stopped:
        desk.tick(20.0)
    (stop,) = desk.broker_orders(Side.SELL, OrderType.STOP)
    assert stop.qty == held.qty
    assert "under a broker stop" in str(stopped.value)


@pytest.mark.parametrize("on_lost", ["flatten", "keep_stops"])
def test_an_approval_waiting_when_trading_stops_opens_nothing(tmp_path: Path, on_lost: str) -> None:
    """The approval panel may still show a signal after the stop: approving it buys nothing."""
    run = Run(tmp_path, mode="hybrid").start()
    run.bot.update_settings(run.settings.updated(on_record_lost=on_lost))
    run.close_bar(20.0, p_up=0.75)  # 0.70-0.80 in Hybrid: waits for the user
    (sid,) = run.bot.pending
    run.records.backup_path = tmp_path / "journal-is-a-folder"
    run.records.backup_path.mkdir()
    refuse(run, *EVERY_TABLE)
    run.records.lost = "the disk is full"
    with pytest.raises(EngineHalted):
        run.tick(20.0)
    assert run.bot.pending == {}, "the stopped engine still offers the approval"
    said = run.bot.approve(sid)
    assert "stopped" in said or "no longer pending" in said
    run.sim.on_price("PLTR", 20.0, run.clock.now())
    assert run.broker_orders(Side.BUY) == [] and run.sim.positions() == []
    run.close()


def test_a_full_disk_then_a_restart_leaves_no_order_the_broker_never_saw(tmp_path: Path) -> None:
    """The paper account could not be saved either: at the next start the order kept in the
    backup is replayed first, then reconciled (unknown to the broker), in one start."""
    run = Run(tmp_path).start()
    refuse(run, *EVERY_TABLE)
    run.close_bar(20.0, p_up=0.95)  # an entry's order is kept only in the backup: refused now anyway
    run.close()
    for t in EVERY_TABLE:
        run.storage = Storage(tmp_path / "trader.db")
        run.storage.db.execute_sql(f"DROP TRIGGER IF EXISTS refuse_{t}")
        run.storage.db.execute_sql(f"DROP TRIGGER IF EXISTS refuse_upd_{t}")
        run.storage.close()
    again = Run(tmp_path).start()
    assert [o for o in OrderRepository(again.storage).open_orders()] == []
    assert all(o.status != OrderStatus.NEW for o in OrderRepository(again.storage).recent())
    again.close()


def test_the_backup_is_synced_to_the_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(records_module.os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    run = Run(tmp_path).start()
    refuse(run, "order")
    run.close_bar(20.0, p_up=0.95)
    assert (tmp_path / "pending_records.jsonl").read_text().count('"kind": "order"') >= 1
    assert synced, "the only copy of an order was left in the page cache"
    run.close()


def test_damage_found_while_running_stops_trading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The integrity check runs every few minutes (a pinned clock here); damage stops trading."""
    now = [0.0]
    run = Run(tmp_path)
    run.records._monotonic, run.records._checked = (lambda: now[0]), 0.0
    run.start()
    run.buy(20.0)
    now[0] += records_module.CHECK_EVERY_S
    run.tick(20.0)  # checked (the real check): sound, trading goes on
    monkeypatch.setattr(Storage, "quick_check", lambda self: "row 7 missing from index order_status")
    run.tick(20.0)  # not yet due
    now[0] += records_module.CHECK_EVERY_S
    with pytest.raises(EngineHalted, match=r"integrity check while running \(row 7 missing"):
        run.tick(20.0)
    run.close()


def test_quick_check_finds_a_page_overwritten_while_the_app_has_the_file_open(tmp_path: Path) -> None:
    path = tmp_path / "trader.db"
    storage = Storage(path)
    assert storage.quick_check() == ""
    storage.db.execute_sql("CREATE TABLE filler (x TEXT)")
    for k in range(400):
        storage.db.execute_sql("INSERT INTO filler VALUES (?)", (f"{k:0>200}",))
    storage.db.execute_sql("CREATE INDEX filler_x ON filler (x)")
    storage.db.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as fh:  # another program writes over one page of the open file
        fh.seek(4096 * 20)
        fh.write(b"\x0d" * 4096)
    assert storage.quick_check() != ""
    storage.close()


def test_headless_stops_cleanly_when_the_record_is_damaged_mid_run(app_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(records_module, "CHECK_EVERY_S", 0.0)
    monkeypatch.setattr(Storage, "quick_check", lambda self: "database disk image is malformed")
    assert cli_main(["run", "--headless", "--max-bars", "20", "--speed", "0"]) == 4
    out = capsys.readouterr().out
    assert "Trading stopped" in out and "malformed" in out and "restart" in out
    assert "Traceback" not in out and "stopped after" in out


def test_headless_that_ran_on_with_a_failing_record_says_so_and_exits_non_zero(
        app_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused write stops new positions and the run goes on to its end: it once exited 0,
    so a script running it could not tell that its record was not whole."""
    from app.engine.storage import PredictionRepository

    def refuse(*_args: object, **_kw: object) -> None:
        raise OSError("disk I/O error")

    monkeypatch.setattr(PredictionRepository, "save", refuse)
    assert cli_main(["run", "--headless", "--max-bars", "30", "--speed", "0"]) == 5
    out = capsys.readouterr().out
    assert "error: the trading record could not be written (a prediction write failed: disk I/O error)" in out
    assert "stopped after 30 bars" in out
    assert "note: No Alpaca API keys configured" in out, "what the window would say at start is said here too"
    assert "note: Using the rules model" in out, "and which model trades"


def test_a_record_deleted_while_running_stops_the_trading_at_once(tmp_path: Path) -> None:
    """Deleted mid-run, trader.db once took 35 s of trades no one would ever see (the integrity
    check runs every five minutes); the next start then opened a fresh account."""
    run = Run(tmp_path).start()
    run.buy(20.0)
    (tmp_path / "trader.db").unlink()
    with pytest.raises(EngineHalted, match=r"trader\.db was deleted while the app ran"):
        run.tick(20.0)
    run.close()
    with pytest.raises(StorageError, match=r"trader\.db is missing but its write-ahead log trader\.db-wal is there"):
        Storage(tmp_path / "trader.db")
    assert not (tmp_path / "trader.db").exists(), "no fresh account made in its place"


# ------------------------------------------------------------- bounded growth
def test_predictions_and_signals_older_than_the_retention_are_pruned_trades_and_orders_never(
        tmp_path: Path) -> None:
    from datetime import timedelta

    from app.engine.storage import PredictionRepository, SignalRepository, TradeRepository

    run = Run(tmp_path, record_retention_days=7)
    run.start()
    run.buy(20.0)
    run.close_bar(20.5, p_up=0.05)  # the exit: a trade
    run.tick(20.5)
    for _ in range(5):
        run.close_bar(20.5, p_up=0.3)
    old = {r["signal_id"] for r in SignalRepository(run.storage).recent()}
    assert PredictionRepository(run.storage).count() >= 7 and len(old) >= 5
    orders, trades = OrderRepository(run.storage).count(), len(TradeRepository(run.storage).all())
    assert trades == 1
    run.clock.advance(timedelta(days=8))  # a week and a day later, the next bar
    run.close_bar(21.0, p_up=0.5)
    assert PredictionRepository(run.storage).count() == 1, "the old predictions are still there"
    assert not old & {r["signal_id"] for r in SignalRepository(run.storage).recent()}, "old signals kept"
    assert OrderRepository(run.storage).count() == orders and len(TradeRepository(run.storage).all()) == 1
    run.close()


# ----------------------------------------------------- after a full disk, the restart
def drop_refusals(folder: Path) -> None:
    storage = Storage(folder / "trader.db")
    for t in EVERY_TABLE:
        storage.db.execute_sql(f"DROP TRIGGER IF EXISTS refuse_{t}")
        storage.db.execute_sql(f"DROP TRIGGER IF EXISTS refuse_upd_{t}")
    storage.close()


def test_a_restart_after_a_full_disk_finds_the_paper_account_and_the_order_numbers_as_they_were(
        tmp_path: Path) -> None:
    """The demo's paper account is its broker: lost with the database's refusal, a restart
    would hold shares already sold (sold again: a doubled exit) and reuse order numbers."""
    run = Run(tmp_path).start()
    held = run.buy(20.0)
    refuse(run, *EVERY_TABLE)
    run.close_bar(21.0, p_up=0.05)  # a SELL: the exit and its fill are kept only beside the database
    run.tick(21.0)
    assert run.sim.positions() == []
    used = set(run.records.orders)
    later = run.clock.now() + timedelta(minutes=1)
    run.close()
    drop_refusals(tmp_path)

    again = Run(tmp_path, start=later)
    assert again.sim.positions() == [], "the restarted paper account holds shares it sold"
    assert again.sim.account().cash == pytest.approx(100_000 + held.qty * 1.0)
    again.start()
    again.tick(21.0)
    again.tick(21.0)
    assert again.sim.fills == [], "something was sold (or bought) again"
    (trade,) = again.records.trades or TradeRepository(again.storage).all()
    assert trade.exit_price == 21.0
    again.buy(21.0)
    fresh = set(again.records.orders) - used
    stop_ids = [c for c in fresh if "-stop-" in c]
    assert stop_ids and not {c.rsplit("-", 1)[1] for c in stop_ids} & {c.rsplit("-", 1)[1] for c in used
                                                                       if "-stop-" in c}, "an order number reused"
    again.close()


def test_the_paper_account_kept_beside_another_database_is_not_used(tmp_path: Path) -> None:
    run = Run(tmp_path).start()
    run.buy(20.0)
    refuse(run, "sim_position", "state")
    run.tick(20.0, seconds=1)
    run.sim.cancel(run.broker_orders(Side.SELL, OrderType.STOP)[0].client_order_id)  # saved beside it now
    run.close()
    kept = (tmp_path / "pending_paper_account.json").read_bytes()
    other = tmp_path / "other"
    other.mkdir()
    (other / "pending_paper_account.json").write_bytes(kept)
    fresh = Run(other)
    assert fresh.sim.positions() == [] and fresh.sim.account().cash == 100_000
    assert (other / "pending_paper_account.other-record.json").read_bytes() == kept
    fresh.close()


def test_a_journal_kept_for_another_database_is_not_replayed_into_this_one(tmp_path: Path) -> None:
    """A damaged trader.db moved aside: the records kept for it are not this new account's."""
    paths, trade = _a_trade_in_the_backup(tmp_path)
    journal = paths.trade_backup.read_text()
    paths.database.rename(paths.home / "trader.db.damaged")
    for suffix in ("-wal", "-shm"):
        Path(f"{paths.database}{suffix}").unlink(missing_ok=True)
    ctx = build_engine(paths, Settings(), today=utc(2025, 3, 6, 12, 0), sleep=lambda s: None)
    try:
        assert TradeRepository(ctx.storage).all() == []
        aside = paths.trade_backup.with_suffix(".other-record.jsonl")
        assert aside.read_text() == journal
        assert any("another trading record" in n and aside.name in n for n in ctx.notices)
    finally:
        ctx.close()


def test_a_replay_never_touches_the_accounts_journal(app_home: Path) -> None:
    paths, _trade = _a_trade_in_the_backup(app_home.parent / "x")
    home = AppPaths(app_home).ensure()
    home.trade_backup.write_text(paths.trade_backup.read_text())
    before = home.trade_backup.read_text()
    cal = MarketCalendar()
    bars = SimulatedMarket("PLTR", 2, cal).history(cal.previous_sessions(datetime(2025, 6, 1, tzinfo=UTC), 3))
    ctx = build_engine(home, Settings(), today=utc(2025, 6, 2, 12, 0), sleep=lambda s: None, replay_bars=bars)
    ctx.close()
    assert home.trade_backup.read_text() == before, "a rehearsal replayed (or removed) the account's backup"


# -------------------------------------------------- files that are not files
@pytest.mark.parametrize("kind", ["folder", "fifo", "dangling link"])
def test_a_journal_that_is_not_a_file_is_refused_at_start_with_its_name(tmp_path: Path, kind: str) -> None:
    paths = AppPaths(tmp_path / "home").ensure()
    make_not_a_file(paths.trade_backup, kind)
    with pytest.raises(StorageError) as err:
        build_engine(paths, Settings(), today=utc(2025, 3, 6, 12, 0), sleep=lambda s: None)
    said = str(err.value)
    assert str(paths.trade_backup) in said and ("Move it aside" in said or "remove it" in said)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_database_that_is_not_a_file_is_refused_without_hanging(tmp_path: Path, kind: str) -> None:
    make_not_a_file(tmp_path / "trader.db", kind)
    with pytest.raises(StorageError, match=r"trader\.db is (a folder|not a regular file)"):
        Storage(tmp_path / "trader.db")


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_home_made_read_only_is_refused_even_for_an_administrator(tmp_path: Path) -> None:
    """chmod 555 on the home: an administrator could still write, but the user said no."""
    Storage(tmp_path / "trader.db").close()
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(StorageError, match=r"the folder .* is read-only"):
            Storage(tmp_path / "trader.db")
    finally:
        os.chmod(tmp_path, 0o755)


def make_not_a_file(path: Path, kind: str) -> None:
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(path.parent / "gone")


@pytest.mark.parametrize("kind", ["folder", "fifo", "dangling link"])
@pytest.mark.parametrize("name", ["settings.json", ".env", "engine.lock"])
def test_an_app_file_that_is_not_a_file_stops_the_start_in_one_line(app_home: Path, name: str, kind: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO here once hung every start without a word; a folder or a link to nothing gave
    a traceback."""
    AppPaths(app_home).ensure()
    make_not_a_file(app_home / name, kind)
    assert cli_main(["run", "--headless", "--max-bars", "1", "--speed", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {app_home / name} is ") and "move it aside" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_lines_set_aside_go_to_a_numbered_file_when_the_name_is_taken(tmp_path: Path, kind: str) -> None:
    paths, trade = _a_trade_in_the_backup(tmp_path)
    good = paths.trade_backup.read_text()
    paths.trade_backup.write_text(good + "{cut short\n")
    make_not_a_file(paths.trade_backup.with_suffix(".damaged.jsonl"), kind)
    ctx = build_engine(paths, Settings(), today=utc(2025, 3, 6, 12, 0), sleep=lambda s: None)
    try:
        assert TradeRepository(ctx.storage).all() == [trade]
        assert paths.trade_backup.with_suffix(".damaged-2.jsonl").read_text() == "{cut short\n"
        assert any("pending_records.damaged-2.jsonl" in n for n in ctx.notices)
    finally:
        ctx.close()


def test_lines_that_cannot_be_set_aside_keep_the_journal_and_stop_the_start(tmp_path: Path) -> None:
    paths, trade = _a_trade_in_the_backup(tmp_path)
    kept = paths.trade_backup.read_text() + "{cut short\n"
    paths.trade_backup.write_text(kept)
    for n in range(1, records_module.MAX_ASIDE + 1):  # every name it may use is taken
        paths.trade_backup.with_suffix(".damaged.jsonl" if n == 1 else f".damaged-{n}.jsonl").mkdir()
    with pytest.raises(StorageError, match=r"1 records in .* cannot be kept aside .*The file is kept"):
        build_engine(paths, Settings(), today=utc(2025, 3, 6, 12, 0), sleep=lambda s: None)
    assert paths.trade_backup.read_text() == kept, "nothing of the journal is lost"
    storage = Storage(paths.database)
    assert TradeRepository(storage).all() == [trade], "its readable records are in the database"
    storage.close()


def test_a_database_refusing_the_journal_at_start_says_so_and_keeps_it(tmp_path: Path) -> None:
    paths, _trade = _a_trade_in_the_backup(tmp_path)
    kept = paths.trade_backup.read_text()
    storage = Storage(paths.database)
    storage.db.execute_sql(REFUSE.format(t="trade"))
    storage.close()
    with pytest.raises(StorageError, match=r"could not be written into .*Nothing was traded and the file is kept"):
        build_engine(paths, Settings(), today=utc(2025, 3, 6, 12, 0), sleep=lambda s: None)
    assert paths.trade_backup.read_text() == kept


# ------------------------------------------------------- logs that cannot be written
LOG_SCRIPT = """
import pathlib, resource, sys
from loguru import logger
from app.engine import logs
logs.configure(pathlib.Path(sys.argv[1]))
logger.info("started")
resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))  # the disk is full from here on
for i in range(200):
    logger.info("line {} {}", i, "x" * 60)
logger.error("an error, still said on the console")
print("went on")
"""


@pytest.mark.parametrize("where", ["full disk", "folder cannot be made"])
def test_logs_that_cannot_be_written_cost_the_log_not_the_app(tmp_path: Path, where: str) -> None:
    """A full disk or an unusable logs folder: one line saying so, no traceback per record
    (nor at exit), and the app goes on."""
    folder = tmp_path / "logs"
    if where == "folder cannot be made":
        (tmp_path / "blocked").write_text("a file where the folder should be")
        folder = tmp_path / "blocked" / "logs"
    done = subprocess.run([sys.executable, "-c", LOG_SCRIPT, str(folder)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).parents[1], check=False)
    assert done.returncode == 0 and "went on" in done.stdout
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr, done.stderr[:2000]
    warnings = [ln for ln in done.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1 and str(folder) in warnings[0]
    assert "an error, still said on the console" in done.stderr


def test_a_log_file_that_is_a_pipe_costs_that_log_not_the_app(tmp_path: Path) -> None:
    """Writing to a FIFO waits for a reader forever: the app once hung at its first log line."""
    folder = tmp_path / "logs"
    folder.mkdir()
    os.mkfifo(folder / "trading_bot.log")
    done = subprocess.run([sys.executable, "-c", LOG_SCRIPT, str(folder)], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[1], check=False)
    assert done.returncode == 0 and "went on" in done.stdout
    warnings = [ln for ln in done.stderr.splitlines() if ln.startswith("warning:")]
    assert any("no trading_bot.log" in w and "not a regular file" in w for w in warnings), done.stderr[:2000]


def test_an_app_folder_that_cannot_be_made_is_one_line_not_a_traceback(app_home: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    app_home.mkdir(parents=True, exist_ok=True)
    (app_home / "logs").write_text("a file where the logs folder goes")
    assert cli_main(["run", "--headless", "--max-bars", "3", "--speed", "0"]) == 2
    err = capsys.readouterr().err
    assert f"{app_home / 'logs'} cannot be made" in err and "Traceback" not in err


def test_a_write_that_lands_after_a_refusal_is_not_undone_by_the_replay(tmp_path: Path) -> None:
    """A brief refusal, then the database writes again: the demo clock saved after it must
    win at the next start (an old journal line once rewound it a week: days traded twice)."""
    run = Run(tmp_path).start()
    refuse(run, "state")
    run.records.state_set("demo.clock", "2026-03-09T14:15:00+00:00")  # refused: journaled
    drop_refusals_of(run)
    run.records.state_set("demo.clock", "2026-03-16T14:30:00+00:00")  # lands
    run.close()
    again = Run(tmp_path)
    assert again.records.state_get("demo.clock") == "2026-03-16T14:30:00+00:00"
    again.close()


def drop_refusals_of(run: Run) -> None:
    for t in EVERY_TABLE:
        run.storage.db.execute_sql(f"DROP TRIGGER IF EXISTS refuse_{t}")
        run.storage.db.execute_sql(f"DROP TRIGGER IF EXISTS refuse_upd_{t}")


@pytest.mark.parametrize(("key", "value"), [("orders.sequence", "zzz"), ("orders.sequence", -5),
                                            ("orders.sequence", None), ("demo.clock", "not a date"),
                                            ("demo.clock", 5), ("orders.book", "x" * 300),
                                            ("demo.alone", 5), ("paper.cash", "abc"), ("paper.cash", 1e6),
                                            ("day.2026-13-45", {}), ("live.confirmed_at", "soon")])
def test_a_journal_line_holding_junk_is_set_aside_not_trusted(tmp_path: Path, key: str, value: object) -> None:
    run = Run(tmp_path).start()
    if key != "paper.cash":  # (the paper broker's own, never journaled: it must stay a number)
        run.records.state_set(key, run.records.state_get(key))  # what it holds now (may be None)
    before = run.records.state_get(key)
    identity = run.storage.identity
    run.close()
    line = json.dumps({"kind": "state", "db": identity, "data": {"key": key, "value": value}})
    (tmp_path / "pending_records.jsonl").write_text(line + "\n")
    again = Run(tmp_path)
    assert again.records.state_get(key) == before
    assert (tmp_path / "pending_records.damaged.jsonl").read_text() == line + "\n"
    again.close()


@pytest.mark.parametrize("line", ["[" * 100_000, "NAN-QTY", "INF-PRICE"])
def test_a_journal_line_that_parses_into_junk_is_set_aside_and_the_start_goes_on(tmp_path: Path, line: str) -> None:
    """Once each of these stopped every start ("could not be written ... free disk space")."""
    paths, trade = _a_trade_in_the_backup(tmp_path)
    good = paths.trade_backup.read_text()
    item = json.loads(good)
    if line == "NAN-QTY":
        line = json.dumps({**item, "data": {**item["data"], "qty": float("nan")}})
    elif line == "INF-PRICE":
        line = json.dumps({**item, "data": {**item["data"], "exit_price": float("inf")}})
    paths.trade_backup.write_text(good + line + "\n")
    ctx = build_engine(paths, Settings(), today=utc(2025, 3, 6, 12, 0), sleep=lambda s: None)
    try:
        assert TradeRepository(ctx.storage).all() == [trade]
        assert paths.trade_backup.with_suffix(".damaged.jsonl").read_text() == line + "\n"
    finally:
        ctx.close()


@pytest.mark.parametrize("damage", ['DROP TABLE "state"', 'DROP TABLE "trade"', "PRAGMA user_version = -1"])
def test_a_record_that_lost_a_table_is_refused_not_started_afresh(tmp_path: Path, damage: str) -> None:
    run = Run(tmp_path).start()
    run.buy(20.0)
    run.close()
    storage = Storage(tmp_path / "trader.db")
    storage.db.execute_sql(damage)
    storage.close()
    with pytest.raises(StorageError, match=r"(lost its|schema version -1).*(Restore|Move it aside)"):
        Storage(tmp_path / "trader.db")


@pytest.mark.parametrize("args", [["--commission", "nan"], ["--commission", "inf"],
                                  ["--commission-mode", "fraction", "--commission", "5"]])
def test_backtest_costs_that_cannot_be_are_refused(app_home: Path, tmp_path: Path, args: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "PLTR_5m.csv"
    csv.write_text("time,open,high,low,close,volume\n2025-03-04T15:00:00Z,1,1,1,1,1\n")
    assert cli_main(["backtest", "--csv", str(csv), *args]) == 2
    assert "--commission" in capsys.readouterr().err


def test_run_refuses_a_negative_bar_count(app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["run", "--headless", "--max-bars", "-1", "--speed", "0"]) == 2
    assert "--max-bars -1" in capsys.readouterr().out
