"""A third outside review of the execution core (given the README and the issue, not the
tests): the defects it reproduced, each failing before its mend. Through the real alpaca-py
client against the loopback Alpaca server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alpaca_desk import SYMBOL, AlpacaDesk, Pushed, holding, streaming
from alpaca_server import AlpacaServer

from app.engine.records import SqlRecorder
from app.engine.storage import Storage
from app.engine.types import OrderType


@pytest.fixture
def streamed(alpaca_server: AlpacaServer) -> Iterator[tuple[AlpacaDesk, Pushed]]:
    """A desk holding 400 PLTR under its stop, with the trade-updates stream on."""
    desk = holding(alpaca_server)
    pushed = streaming(desk)
    desk.check()
    yield desk, pushed
    desk.broker.close()


def test_two_partial_stop_fills_applied_in_one_check_are_taken_off_once(
        alpaca_server: AlpacaServer, streamed: tuple[AlpacaDesk, Pushed]) -> None:
    """The broker's count already held the second fill when the first was booked against it:
    100 shares came off twice, the app thought itself flat and cancelled the stop still selling."""
    desk, pushed = streamed
    seen = pushed.count
    alpaca_server.set_price(SYMBOL, 48.4)
    alpaca_server.fill_open_orders(48.4, SYMBOL, qty=100)
    alpaca_server.fill_open_orders(48.4, SYMBOL, qty=100)
    pushed.wait(seen + 2)
    desk.check()
    assert desk.position is not None and desk.position.qty == desk.held() == 200
    assert desk.cover() == 200
    desk.bot.flatten_all()
    desk.trade(48.4)
    desk.check()
    assert desk.held() == 0 and desk.position is None
    assert sum(t.qty for t in desk.records.trades) == 400


def test_a_partial_stop_fill_racing_the_position_read_is_not_taken_off_twice(alpaca_server: AlpacaServer) -> None:
    desk = holding(alpaca_server)
    alpaca_server.set_price(SYMBOL, 48.4)
    alpaca_server.fill_open_orders(48.4, SYMBOL, qty=100)
    armed = [True]

    def race(method: str, path: str) -> None:  # 100 more execute between the order read and the positions read
        if armed[0] and method == "GET" and path == "/v2/positions":
            armed[0] = False
            alpaca_server.fill_open_orders(48.4, SYMBOL, qty=100)

    alpaca_server.before_route = race
    desk.check()
    alpaca_server.before_route = None
    desk.check()
    assert desk.position is not None and desk.position.qty == desk.held() == 200
    desk.bot.flatten_all()
    desk.trade(48.4)
    desk.check()
    assert desk.held() == 0 and sum(t.qty for t in desk.records.trades) == 400


def test_a_stop_fill_racing_the_position_read_is_booked_as_a_trade(alpaca_server: AlpacaServer) -> None:
    """The vanished shares were taken for sold outside the app: no trade, no round trip."""
    desk = holding(alpaca_server)
    armed = [True]

    def race(method: str, path: str) -> None:
        if armed[0] and method == "GET" and path == "/v2/positions":
            armed[0] = False
            alpaca_server.fill_open_orders(48.4, SYMBOL)

    alpaca_server.before_route = race
    desk.check()
    alpaca_server.before_route = None
    desk.check()
    assert desk.held() == 0 and desk.position is None
    assert [(t.qty, t.exit_price, t.exit_reason) for t in desk.records.trades] == [(400, 48.4, "stop loss")]
    assert desk.bot.core.day.round_trips == 1


def test_a_partly_filled_entry_gets_its_stop_while_the_rest_is_being_cancelled(alpaca_server: AlpacaServer) -> None:
    desk = AlpacaDesk(alpaca_server)
    desk.close_bar(50.0, p_up=0.95)
    alpaca_server.cancel_settles_after = 12  # Alpaca's cancel of the rest lands late
    alpaca_server.fill_open_orders(50.0, SYMBOL, qty=100)
    desk.check()
    assert desk.held() == 100 and desk.stop_cover() == 100, "the filled shares waited for the cancel, unprotected"


def test_a_stalled_stream_does_not_hide_a_stop_that_ended(
        alpaca_server: AlpacaServer, streamed: tuple[AlpacaDesk, Pushed]) -> None:
    """The stream connected but silent: a stop cancelled on Alpaca's dashboard is found by the
    next check's poll, not a minute later."""
    desk, _ = streamed
    assert alpaca_server.stream is not None
    alpaca_server.stream.paused = True
    alpaca_server.cancel_by_coid(desk.orders("sell", "stop")[0]["client_order_id"])
    desk.check(seconds=10)
    assert desk.stop_cover() == desk.held() == 400


def test_a_stop_kept_only_in_the_backup_is_seen_after_a_restart(alpaca_server: AlpacaServer, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Placed while the disk refused writes, the stop was in the backup file; after a restart
    the replay wrote it to the database but the record's list of open orders missed it: every
    exit was refused for the shares that forgotten stop held."""
    import peewee

    from app.engine.storage import repositories

    storage = Storage(tmp_path / "trader.db")
    records = SqlRecorder(storage, tmp_path / "backup.jsonl")
    alpaca_server.auto_fill = True
    desk = AlpacaDesk(alpaca_server, autostart=False)
    desk.records = desk.bot.records = desk.bot.core.router.records = desk.bot.core.book.records = records
    desk.bot.start()
    real_save = repositories.OrderRepository.save

    def full(*a: object, **k: object) -> None:
        raise peewee.OperationalError("database or disk is full")

    monkeypatch.setattr(repositories.OrderRepository, "save", full)
    desk.close_bar(50.0, p_up=0.95)
    desk.check()  # the entry fills; its stop is recorded in the backup only
    monkeypatch.setattr(repositories.OrderRepository, "save", real_save)
    alpaca_server.auto_fill = False
    assert desk.stop_cover() == desk.held() > 0
    storage.close()

    storage = Storage(tmp_path / "trader.db")
    again = SqlRecorder(storage, tmp_path / "backup.jsonl")
    assert again.replay_backup() > 0
    assert [o.order_type for o in again.open_orders()] == [OrderType.STOP], "the stop is not seen as working"
    storage.close()


def test_the_rest_of_an_entry_filling_while_its_cancel_is_pending_is_booked_once(
        alpaca_server: AlpacaServer) -> None:
    """The entry's rest filled while its cancel was pending, in the same print as the stop of
    the first part: the broker's count already showed the stop's sale when the buy was
    booked against it, and those 100 shares came off twice (the stop then covered 200 of 300)."""
    desk = AlpacaDesk(alpaca_server)
    desk.close_bar(50.0, p_up=0.95)
    alpaca_server.cancel_settles_after = 40
    alpaca_server.fill_open_orders(50.0, SYMBOL, qty=100)
    desk.check()
    desk.trade(47.0)  # the rest (300) fills at 47; the 100-share stop at 48.50 sells
    assert desk.held() == 300
    assert desk.position is not None and desk.position.qty == 300
    assert desk.stop_cover() == 300
