"""The simulated broker's fill rules, the same in the demo, replays and backtests."""

from __future__ import annotations

import pytest
from conftest import utc

from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import SimClock
from app.engine.types import Bar, Order, OrderStatus, OrderType, Side

T0 = utc(2025, 3, 4, 15, 0)
T1 = utc(2025, 3, 4, 15, 5)


def mkt(coid: str, side: Side, qty: float) -> Order:
    return Order(coid, "PLTR", side, qty, OrderType.MARKET, OrderStatus.INTENT, T0)


def stop(coid: str, qty: float, price: float) -> Order:
    return Order(coid, "PLTR", Side.SELL, qty, OrderType.STOP, OrderStatus.INTENT, T0, stop_price=price)


def bar(o: float, h: float, lo: float, c: float) -> Bar:
    return Bar("PLTR", T1, o, h, lo, c, 1_000.0)


def long_100(slippage_bps: float = 0.0, commission: float = 0.0) -> SimulatedBroker:
    b = SimulatedBroker(SimClock(T0), 10_000.0, slippage_bps, commission)
    b.submit(mkt("buy", Side.BUY, 100))
    b.on_price("PLTR", 20.0, T0)
    return b


def test_a_market_order_fills_at_the_next_price_with_slippage_against_the_trader() -> None:
    b = long_100(slippage_bps=10)
    (fill,) = b.fills
    assert fill.price == pytest.approx(20.02) and b.get_order("buy").status == OrderStatus.FILLED
    b.submit(mkt("sell", Side.SELL, 100))
    b.on_bar(bar(21.0, 21.5, 20.8, 21.2))
    assert b.fills[-1].price == pytest.approx(20.979)  # the next bar's open, less 10 bps
    assert b.positions() == []
    assert b.account().cash == pytest.approx(10_000 - 2002 + 2097.9)


def test_commission_is_charged_per_share() -> None:
    b = long_100(commission=0.01)
    assert b.fills[0].commission == pytest.approx(1.0)
    assert b.account().cash == pytest.approx(10_000 - 2000 - 1)


def test_a_stop_fills_at_the_stop_inside_the_bar_and_at_the_open_on_a_gap() -> None:
    b = long_100()
    b.submit(stop("s1", 50, 19.4))
    b.on_bar(bar(19.9, 20.0, 19.2, 19.5))
    assert b.fills[-1].price == 19.4
    b.submit(stop("s2", 50, 19.0))
    b.on_bar(bar(18.0, 18.5, 17.5, 18.2))  # opens below the stop
    assert b.fills[-1].price == 18.0
    assert b.positions() == []


def test_a_stop_with_nothing_held_is_canceled_not_turned_into_a_short() -> None:
    b = long_100()
    b.submit(mkt("sell", Side.SELL, 100))
    b.submit(stop("late-stop", 100, 19.4))
    b.on_price("PLTR", 19.0, T1)
    assert b.get_order("late-stop").status == OrderStatus.CANCELED
    assert b.positions() == [] and len(b.fills) == 2


def test_a_sell_never_sells_more_than_is_held() -> None:
    b = long_100()
    b.submit(mkt("too-much", Side.SELL, 150))
    b.on_price("PLTR", 20.0, T1)
    assert b.fills[-1].qty == 100 and b.positions() == []


def test_equity_marks_positions_at_the_last_price() -> None:
    b = long_100()
    b.on_price("PLTR", 22.0, T1)
    acct = b.account()
    assert acct.cash == pytest.approx(8_000.0) and acct.equity == pytest.approx(10_200.0)
    (p,) = b.positions()
    assert p.last_price == 22.0 and p.unrealized_pnl == pytest.approx(200.0)


def test_canceling_a_finished_or_unknown_order_is_harmless() -> None:
    b = long_100()
    b.cancel("buy")
    b.cancel("never-heard-of-it")
    assert b.get_order("buy").status == OrderStatus.FILLED


def test_a_long_running_paper_account_keeps_its_open_stop_and_only_the_latest_finished_orders(
        tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Weeks of trading: the account does not carry (and save on every change) every order it
    ever had, yet its oldest open order, a GTC stop, survives in the book across a restart."""
    from app.engine.broker import simulated
    from app.engine.storage import Storage
    from app.engine.storage.paper import SqlPaperBook

    monkeypatch.setattr(simulated, "KEEP_FINISHED", 20)
    storage = Storage(tmp_path / "trader.db")
    clock = SimClock(T0)
    b = SimulatedBroker(clock, 1_000_000.0, book=SqlPaperBook(storage))
    b.on_price("PLTR", 20.0, T0)
    b.submit(mkt("entry", Side.BUY, 1_000))
    b.on_price("PLTR", 20.0, T0)
    b.submit(stop("the-stop", 1_000, 15.0))
    for k in range(200):  # round trips of another stock
        b.submit(Order(f"b{k}", "NVDA", Side.BUY, 1, OrderType.MARKET, OrderStatus.INTENT, T0))
        b.on_price("NVDA", 100.0, T0)
        b.submit(Order(f"s{k}", "NVDA", Side.SELL, 1, OrderType.MARKET, OrderStatus.INTENT, T0))
        b.on_price("NVDA", 100.0, T0)
    finished = [o for o in b._orders.values() if not o.status.is_open]
    assert len(finished) <= 40, f"{len(finished)} finished orders kept"
    assert b.get_order("s199").status == OrderStatus.FILLED  # the latest still known: a resubmit is recognised
    again = SimulatedBroker(clock, 1_000_000.0, book=SqlPaperBook(storage))
    assert again.get_order("the-stop").status == OrderStatus.NEW
    assert [o.client_order_id for o in again.open_orders()] == ["the-stop"]
    assert again.position("PLTR").qty == 1_000
    storage.close()
