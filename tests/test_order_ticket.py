"""The order ticket: the user's own orders go through the same risk rules as the model's."""

from __future__ import annotations

import pytest
from conftest import utc
from desk import SYMBOL, Desk

from app.engine.clock import MarketCalendar
from app.engine.types import OrderType, Side, SignalStatus


def _desk(nyse: MarketCalendar, **settings: object) -> Desk:
    desk = Desk("manual", calendar=nyse, **settings)
    desk.close_bar(20.0, p_up=0.5)  # a price, no signal
    return desk


def test_a_manual_buy_within_the_rules_is_sent_and_gets_its_broker_stop(nyse: MarketCalendar) -> None:
    desk = _desk(nyse)
    said = desk.bot.manual_order(SYMBOL, Side.BUY, qty=100)
    assert "manual buy 100" in said
    desk.tick(20.0)
    assert desk.position is not None and desk.position.qty == 100
    (stop,) = desk.broker_orders(Side.SELL, OrderType.STOP)
    assert stop.stop_price == pytest.approx(20.0 * 0.97, rel=1e-3), "the initial stop from the risk settings"
    sig, status, _ = list(desk.records.signals.values())[-1]
    assert sig.reasons == ("manual order",) and status == SignalStatus.EXECUTED.value


def test_a_buy_by_dollar_amount_buys_whole_shares_of_it(nyse: MarketCalendar) -> None:
    desk = _desk(nyse)
    assert "manual buy 149" in desk.bot.manual_order(SYMBOL, Side.BUY, amount=2_999.0)  # 2999 / 20 = 149.95


@pytest.mark.parametrize("settings, qty, said", [
    ({}, 2_000, "2,000 shares is more than the 1,000 the risk rules allow at 20.00"),  # 20% of $100k
    ({"max_positions": 1}, 10, None),
])
def test_a_buy_the_rules_forbid_is_refused_with_the_reason_and_nothing_is_sent(
        nyse: MarketCalendar, settings: dict, qty: int, said: str | None) -> None:  # type: ignore[type-arg]
    desk = _desk(nyse, **settings)
    if said is None:  # already at the one position allowed
        desk.buy(20.0)
        said = "already holding"
    text = desk.bot.manual_order(SYMBOL, Side.BUY, qty=qty)
    assert said in text, text
    assert not desk.broker_orders(Side.BUY), "no order reached the broker"


def test_a_manual_buy_is_refused_while_the_market_is_closed(nyse: MarketCalendar) -> None:
    desk = Desk("manual", start=utc(2025, 3, 4, 20, 30), calendar=nyse)  # 15:30 New York
    desk.close_bar(20.0, p_up=0.5)
    desk.clock.set(utc(2025, 3, 4, 22, 0))  # 17:00: closed
    text = desk.bot.manual_order(SYMBOL, Side.BUY, qty=10)
    assert "refused by the risk rules" in text and "closed" in text, text
    assert not desk.broker_orders(Side.BUY)


def test_a_manual_sell_closes_the_holding_and_its_stop_goes(nyse: MarketCalendar) -> None:
    desk = _desk(nyse)
    desk.buy(20.0)
    assert desk.broker_orders(Side.SELL, OrderType.STOP)
    desk.bot.manual_order(SYMBOL, Side.SELL)
    desk.tick(20.5)
    assert desk.position is None and not desk.broker_orders(Side.SELL, OrderType.STOP)
    assert desk.records.trades[-1].exit_reason == "manual sell"
    assert "nothing held" in desk.bot.manual_order(SYMBOL, Side.SELL)


def test_no_price_no_order(nyse: MarketCalendar) -> None:
    desk = Desk("manual", calendar=nyse)
    assert "no price yet" in desk.bot.manual_order(SYMBOL, Side.BUY, qty=1)


def test_a_dragged_stop_is_revalidated_and_the_broker_stop_follows(nyse: MarketCalendar) -> None:
    """Never above the market for a long; never looser than the initial stop without confirmation."""
    desk = _desk(nyse)
    desk.buy(20.0)
    (stop,) = desk.broker_orders(Side.SELL, OrderType.STOP)
    assert stop.stop_price == pytest.approx(19.4)
    assert "stop moved from 19.40 to 19.70" in desk.bot.move_stop(SYMBOL, 19.7)
    (stop,) = desk.broker_orders(Side.SELL, OrderType.STOP)
    assert stop.stop_price == pytest.approx(19.7), "the broker's stop follows at once"
    said = desk.bot.move_stop(SYMBOL, 20.5)
    assert "not below the market (20.00): it would sell at once" in said
    said = desk.bot.move_stop(SYMBOL, 19.0)
    assert "looser than the initial stop 19.40" in said and "confirm" in said
    assert desk.broker_orders(Side.SELL, OrderType.STOP)[0].stop_price == pytest.approx(19.7), "unchanged"
    assert "stop moved from 19.70 to 19.00" in desk.bot.move_stop(SYMBOL, 19.0, looser_ok=True)
    assert desk.broker_orders(Side.SELL, OrderType.STOP)[0].stop_price == pytest.approx(19.0)
    desk.tick(18.9)
    assert desk.position is None and desk.records.trades[-1].exit_reason == "stop loss", "the moved stop sells"


def test_a_manual_sell_waits_for_the_open_rather_than_strip_the_stop_overnight(nyse: MarketCalendar) -> None:
    """A review found a market sell sent at 18:00, sitting at the broker all night, the stop cancelled for it."""
    desk = Desk("manual", start=utc(2025, 3, 4, 20, 25), calendar=nyse)  # 15:25 New York
    desk.close_bar(20.0, p_up=0.5)
    desk.buy(20.0)
    desk.clock.set(utc(2025, 3, 4, 23, 0))  # 18:00: closed
    said = desk.bot.manual_order(SYMBOL, Side.SELL)
    assert "refused: the market is closed" in said and "keeps its broker stop" in said
    assert desk.broker_orders(Side.SELL, OrderType.STOP), "the stop still protects the shares"
    assert not desk.broker_orders(Side.SELL), "no market sell waits at the broker"
