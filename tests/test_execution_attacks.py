"""Attacks on the execution core from an outside review (given the README and the issue,
not the tests): each was a way to end short, or holding shares with no stop, or selling
what the app does not hold. They run through alpaca-py against the loopback server."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from alpaca_desk import SYMBOL, AlpacaDesk
from alpaca_server import AlpacaServer, Fault
from conftest import utc


def enter(desk: AlpacaDesk, price: float = 20.0) -> None:
    desk.close_bar(price, p_up=0.95)
    desk.trade(price)
    desk.check()


def test_A_user_sells_app_shares_then_app_restops_flat_account(alpaca_server: AlpacaServer) -> None:
    """User cancels the app's stop on the dashboard and sells the shares; the app must not
    send a sell stop for shares no longer held (margin account: it becomes a short)."""
    alpaca_server.shorting_enabled = True
    desk = AlpacaDesk(alpaca_server)
    enter(desk)
    stop = desk.orders("sell", "stop")[0]["client_order_id"]
    alpaca_server.cancel_by_coid(stop)
    alpaca_server.place_foreign(SYMBOL, "sell", 1000, type_="market")
    desk.trade(20.0)
    assert desk.held() == 0
    desk.check()
    desk.check()
    working_sells = desk.orders("sell")
    desk.trade(19.0)  # the stop triggers on a flat account
    desk.check()
    assert not working_sells, "a sell stop was sent for a flat account"
    assert desk.held() >= 0, "the app's stop opened a short"


def test_A2_eod_flatten_after_user_reduced_goes_short(alpaca_server: AlpacaServer) -> None:
    """User sells part of the app's shares (after cancelling its stop); at the close the app
    sells its full recorded size: on a margin account the excess is a short held overnight."""
    alpaca_server.shorting_enabled = True
    desk = AlpacaDesk(alpaca_server)
    enter(desk)
    stop = desk.orders("sell", "stop")[0]["client_order_id"]
    alpaca_server.cancel_by_coid(stop)
    alpaca_server.place_foreign(SYMBOL, "sell", 600, type_="market")
    desk.trade(20.0)
    assert desk.held() == 400
    desk.clock.set(utc(2025, 3, 4, 20, 56))  # 15:56 New York: end-of-day flatten
    desk.trade(20.0)
    desk.trade(20.0)
    desk.check()
    assert desk.held() == 0


def test_B_flatten_all_misses_fill_since_last_check(alpaca_server: AlpacaServer) -> None:
    """The entry fills at Alpaca between two checks; the user presses flatten-all before the
    next check: the shares must be sold, not given a stop and kept."""
    desk = AlpacaDesk(alpaca_server)
    desk.close_bar(20.0, p_up=0.95)
    alpaca_server.fill_open_orders(20.0, SYMBOL)  # filled at Alpaca; the bot has not polled yet
    desk.bot.flatten_all()
    desk.trade(20.0)
    desk.check()
    assert desk.held() == 0, "flatten-all left the shares held"


def test_B2_flatten_all_misses_partial_fill(alpaca_server: AlpacaServer) -> None:
    desk = AlpacaDesk(alpaca_server)
    desk.close_bar(20.0, p_up=0.95)
    alpaca_server.fill_open_orders(20.0, SYMBOL, qty=400)
    desk.bot.flatten_all()
    desk.trade(20.0)
    desk.check()
    assert desk.held() == 0, "flatten-all left the shares held"


def test_C_flatten_all_with_slow_cancel_is_dropped(alpaca_server: AlpacaServer) -> None:
    """Alpaca answers the stop's cancel with pending_cancel; it settles a moment later.
    Flatten-all must still end flat (retry the exit once the stop is gone)."""
    desk = AlpacaDesk(alpaca_server)
    enter(desk)
    alpaca_server.cancel_settles_after = 12
    desk.bot.flatten_all()
    for _ in range(20):
        desk.trade(20.0)
    assert desk.held() == 0, "flatten-all never sold"


def test_C2_close_position_with_slow_cancel_is_dropped(alpaca_server: AlpacaServer) -> None:
    desk = AlpacaDesk(alpaca_server)
    enter(desk)
    alpaca_server.cancel_settles_after = 12
    desk.bot.close_position(SYMBOL)
    for _ in range(20):
        desk.trade(20.0)
    assert desk.held() == 0, "close never sold"


def outage_from_first(method_wanted: str, n_after: int) -> Callable[[str, str], Fault | None]:
    """A policy: the first ``method_wanted`` request lands but its answer is lost, and the
    next ``n_after`` requests (any route) fail with 503: an outage right after a PATCH/POST."""
    state = {"armed": True, "left": 0}

    def policy(method, path):
        if state["armed"] and method == method_wanted:
            state["armed"] = False
            state["left"] = n_after
            return Fault.http(503, after=True)
        if state["left"] > 0:
            state["left"] -= 1
            return Fault.http(503)
        return None
    return policy


def test_D_replace_lands_during_outage_orphan_stop(alpaca_server: AlpacaServer) -> None:
    """A trailing replace lands at Alpaca, then the broker is unreachable for a few calls.
    The engine records the replacement as not placed; the live replacement at Alpaca is
    orphaned, and the engine sends yet another stop: two sell stops for one position."""
    alpaca_server.shorting_enabled = True
    desk = AlpacaDesk(alpaca_server)
    enter(desk)
    alpaca_server.faults = outage_from_first("PATCH", 5)
    desk.trade(21.0)  # trailing starts: the stop moves up with a replace
    alpaca_server.faults = None
    for _ in range(3):
        desk.check()
    desk.trade(20.0)  # both stops trigger
    desk.check()
    assert desk.stop_cover() <= desk.held() or desk.held() == 0
    assert desk.held() >= 0, "two stops sold 2x the position: a short"


def test_E_fresh_database_reuses_stop_ids_and_books_a_phantom_fill(alpaca_server: AlpacaServer) -> None:
    """The database is moved aside (the app's own advice for a damaged file) and the app
    restarts against the same Alpaca account: the stop/exit sequence starts again at 1,
    Alpaca answers 'client_order_id must be unique', and the adapter takes the OLD order
    (filled last week) as the new stop: a phantom sell is booked and the real shares are
    left with no stop, unmanaged."""
    from datetime import timedelta

    from app.engine.bot import TradingBot
    from app.engine.records import MemoryRecorder

    desk = AlpacaDesk(alpaca_server)
    enter(desk)
    desk.trade(19.0)  # the stop fills: flat
    desk.check()
    assert desk.held() == 0 and desk.position is None
    # the next day, a fresh record (database moved aside), same account
    desk.clock.advance(timedelta(days=1))
    desk.records = MemoryRecorder()
    desk.bot = TradingBot(desk.settings, desk.clock, desk.broker, desk.model, desk.records, desk.bot.bus,
                          desk.bot.calendar, "alpaca", sleep=lambda s: None)
    desk.bot.start()
    desk.close_bar(20.0, p_up=0.95)
    desk.trade(20.0)
    desk.check()
    assert desk.held() > 0
    assert desk.position is not None, "the app forgot the shares it bought"
    assert desk.stop_cover() == desk.held(), "the shares have no stop"


def test_F_old_stop_fills_after_replace_was_accepted(alpaca_server: AlpacaServer) -> None:
    """Alpaca's replace is asynchronous: "a success return code from a replaced order does NOT
    guarantee the existing open order has been replaced. If the existing open order is filled
    before the replacing (new) order reaches the execution venue, the replacing (new) order is
    rejected" (Alpaca docs, Replace an Order). Emulated: the PATCH is answered 200, then the
    old stop fills and the new one is rejected. The fill must be booked, and no new stop sent."""
    alpaca_server.shorting_enabled = True
    desk = AlpacaDesk(alpaca_server)
    enter(desk)
    old = desk.orders("sell", "stop")[0]["client_order_id"]
    desk.trade(21.0)  # trailing starts: PATCH answered 200
    new = desk.orders("sell", "stop")[0]["client_order_id"]
    assert new != old
    with alpaca_server.lock:  # the race, as Alpaca documents it
        o = alpaca_server.orders[alpaca_server._by_coid[old]]
        n = alpaca_server.orders[alpaca_server._by_coid[new]]
        o["status"] = "accepted"
        alpaca_server._fill(o, 19.3)
        n["status"] = "rejected"
    alpaca_server.set_price(SYMBOL, 19.3)
    for _ in range(3):
        desk.check()
    desk.trade(19.3)
    assert desk.held() == 0, "the app sold short"
    assert desk.position is None, "the old stop's fill was never booked"
    assert not desk.orders("sell"), "a sell was sent for a flat account"


# ---------------------------------------------------------------- checks that should hold
def test_G_locked_database_repeats_ids_no_stop_no_exit(alpaca_server: AlpacaServer, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """While the database refuses writes (locked by another program) the app keeps trading on
    the JSON-lines backup, but the persisted id sequence never advances: every stop/exit id
    repeats. In the second round trip the stop id is the first round's (cancelled) stop and
    the exit id the first round's (filled) exit: router.place finds them recorded and sends
    nothing. The shares have no stop, and the SELL is reported 'filled' while 1000 are held."""
    import peewee

    from app.engine.records import SqlRecorder
    from app.engine.storage import Storage, repositories

    def locked(*a, **k):
        raise peewee.OperationalError("database is locked")

    desk = AlpacaDesk(alpaca_server, autostart=False)
    storage = Storage(tmp_path / "trader.db")
    records = SqlRecorder(storage, tmp_path / "backup.jsonl")
    desk.records = desk.bot.records = desk.bot.core.router.records = desk.bot.core.book.records = records
    desk.bot.start()
    monkeypatch.setattr(repositories.StateRepository, "set", locked)
    enter(desk)
    desk.next_bar(20.0, p_up=0.05)  # SELL signal: exit
    desk.trade(20.0)
    desk.check()
    assert desk.held() == 0
    desk.next_bar(20.0, p_up=0.95)  # second round trip
    desk.trade(20.0)
    desk.check()
    desk.next_bar(20.0, p_up=0.05)
    desk.check()
    assert desk.held() == 0 or (desk.position is not None and desk.cover() == desk.held())


def test_I_fresh_database_while_holding_flatten_cancels_stop_leaves_shares(
        alpaca_server: AlpacaServer) -> None:
    """Restart on a fresh record while the app holds shares with its GTC stop: the stop (app
    prefix) is 'taken back', the shares become 'not the app's'. Flatten-all then cancels
    that stop and sells nothing: the shares are left with no stop at all."""
    from app.engine.bot import TradingBot
    from app.engine.records import MemoryRecorder

    desk = AlpacaDesk(alpaca_server)
    enter(desk)
    desk.records = MemoryRecorder()
    desk.bot = TradingBot(desk.settings, desk.clock, desk.broker, desk.model, desk.records, desk.bot.bus,
                          desk.bot.calendar, "alpaca", sleep=lambda s: None)
    desk.bot.start()
    desk.check()
    desk.bot.flatten_all()
    desk.trade(20.0)
    desk.check()
    assert desk.held() == 0 or desk.stop_cover() == desk.held(), "shares left with no stop"


def test_D2_orphan_replacement_on_cash_account_blocks_the_close(alpaca_server: AlpacaServer) -> None:
    """Same outage as D on a cash account: every later stop and the end-of-day exit are
    refused ('insufficient qty': the orphan holds the shares); the position stays overnight."""
    desk = AlpacaDesk(alpaca_server)
    enter(desk)
    alpaca_server.faults = outage_from_first("PATCH", 5)
    desk.trade(21.0)
    alpaca_server.faults = None
    desk.clock.set(utc(2025, 3, 4, 20, 56))
    for _ in range(4):
        desk.trade(21.0)
    assert desk.held() == 0, "not flat after the close"


def test_J_eod_leaves_working_entry_open(alpaca_server: AlpacaServer) -> None:
    """An entry accepted at 15:44 and not yet filled is left working through the end-of-day
    cutoff: it can still fill at 15:59:50, after the last flatten check before the close."""
    desk = AlpacaDesk(alpaca_server, start=utc(2025, 3, 4, 20, 44))
    desk.close_bar(20.0, p_up=0.95)
    assert desk.orders("buy")
    desk.clock.set(utc(2025, 3, 4, 20, 56))
    desk.check()
    desk.check()
    desk.clock.set(utc(2025, 3, 4, 20, 59, 50))
    alpaca_server.fill_open_orders(20.0, SYMBOL)  # fills at 15:59:50
    desk.clock.set(utc(2025, 3, 4, 21, 0))
    alpaca_server.end_of_day()  # 16:00: the DAY exit can no longer fill today
    for _ in range(3):
        desk.check()
    assert desk.held() == 0 or desk.stop_cover() == desk.held(), "held overnight with no stop"


def test_H8_fractional_day_stop_expires_and_is_replaced(alpaca_server: AlpacaServer) -> None:
    desk = AlpacaDesk(alpaca_server, timeframe="1d", fractional=True, start=utc(2025, 3, 4, 20, 0))
    desk.close_bar(20.0, p_up=0.95, start=utc(2025, 3, 4, 5, 0))  # a daily bar closing at 15:00 (open)
    desk.trade(20.0)
    desk.check()
    held = desk.held()
    assert held > 0 and desk.stop_cover() == held
    desk.clock.set(utc(2025, 3, 4, 21, 0))
    alpaca_server.end_of_day()
    desk.check()
    assert desk.stop_cover() == held


def test_H9_restart_mid_partial_entry(alpaca_server: AlpacaServer) -> None:
    from app.engine.bot import TradingBot
    desk = AlpacaDesk(alpaca_server)
    desk.close_bar(20.0, p_up=0.95)
    alpaca_server.fill_open_orders(20.0, SYMBOL, qty=400)
    desk.bot = TradingBot(desk.settings, desk.clock, desk.broker, desk.model, desk.records, desk.bot.bus,
                          desk.bot.calendar, "alpaca", sleep=lambda s: None)
    desk.bot.start()
    desk.check()
    assert desk.held() == 400 and desk.stop_cover() == 400 and not desk.orders("buy")
