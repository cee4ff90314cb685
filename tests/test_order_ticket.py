"""The order ticket: the user's own orders go through the same risk rules as the model's."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import utc
from desk import SYMBOL, Desk, FlakyBroker

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


# ------------------------------------------------------------ limit buys
def test_a_limit_buy_waits_for_its_price_then_fills_there_and_gets_its_stop(nyse: MarketCalendar) -> None:
    desk = _desk(nyse)
    said = desk.bot.manual_order(SYMBOL, Side.BUY, qty=100, limit=19.5)
    assert "manual buy 100 limit 19.50" in said, said
    (working,) = desk.broker_orders(Side.BUY, OrderType.LIMIT)
    assert working.limit_price == 19.5
    desk.tick(19.8)
    assert desk.position is None, "19.80 is above the limit: nothing fills"
    assert "an entry is already working" in desk.bot.manual_order(SYMBOL, Side.BUY, qty=10), "it is exposure"
    desk.tick(19.4)
    assert desk.position is not None and desk.position.qty == 100
    assert desk.sim.fills[-1].price <= 19.5, "at the limit or better"
    (stop,) = desk.broker_orders(Side.SELL, OrderType.STOP)
    assert stop.stop_price == pytest.approx(desk.position.avg_price * 0.97, rel=1e-3)


def test_a_limit_buy_is_sized_and_judged_at_its_limit_by_the_same_rules(nyse: MarketCalendar) -> None:
    desk = _desk(nyse)
    assert "manual buy 153" in desk.bot.manual_order(SYMBOL, Side.BUY, amount=3_000.0, limit=19.6)  # 3000 / 19.6
    desk2 = _desk(nyse)
    said = desk2.bot.manual_order(SYMBOL, Side.BUY, qty=2_000, limit=19.0)
    assert "more than the 1,000 the risk rules allow" in said and not desk2.broker_orders(Side.BUY, OrderType.LIMIT)


@pytest.mark.parametrize("limit, side, said", [
    (25.0, Side.BUY, "more than 1.0% above the last price 20.00"),
    (0.0, Side.BUY, "a limit price above 0 is needed"),
    (float("nan"), Side.BUY, "a limit price above 0 is needed"),
    (21.0, Side.SELL, "no limit sells"),
])
def test_a_limit_that_cannot_be_sent_is_refused_in_words(nyse: MarketCalendar, limit: float, side: Side,
                                                           said: str) -> None:
    desk = _desk(nyse)
    if side == Side.SELL:
        desk.buy(20.0)
    text = desk.bot.manual_order(SYMBOL, side, qty=10, limit=limit)
    assert said in text, text
    assert not desk.broker_orders(Side.BUY, OrderType.LIMIT) and not desk.broker_orders(Side.SELL, OrderType.LIMIT)


def test_a_limit_buy_still_waiting_when_entries_stop_is_cancelled(nyse: MarketCalendar) -> None:
    """15 minutes before the close no entry may open: a limit filled then would be one."""
    desk = Desk("manual", start=utc(2025, 3, 4, 20, 30), calendar=nyse)  # 15:30 New York
    desk.close_bar(20.0, p_up=0.5)
    desk.bot.manual_order(SYMBOL, Side.BUY, qty=10, limit=19.0)
    assert desk.broker_orders(Side.BUY, OrderType.LIMIT)
    desk.clock.set(utc(2025, 3, 4, 20, 46))  # 15:46: 14 minutes to the close
    desk.bot.on_clock()
    assert not desk.broker_orders(Side.BUY, OrderType.LIMIT)
    desk.tick(18.0)
    assert desk.position is None, "the price came, the order was gone"


def test_a_limit_order_is_kept_in_the_record_with_its_price(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.engine.storage.db import Storage
    from app.engine.storage.repositories import OrderRepository
    from app.engine.types import Order, OrderStatus

    storage = Storage(tmp_path / "trader.db")
    try:
        order = Order("ait-l-1", SYMBOL, Side.BUY, 10, OrderType.LIMIT, OrderStatus.NEW, utc(2025, 3, 4, 15, 0),
                      limit_price=19.25, reason="manual entry")
        OrderRepository(storage).save(order, utc(2025, 3, 4, 15, 0))
        (back,) = OrderRepository(storage).open_orders()
        assert back.order_type == OrderType.LIMIT and back.limit_price == 19.25
    finally:
        storage.close()


def test_the_ticket_sends_a_limit_buy_and_never_a_limit_sell(qtbot) -> None:  # type: ignore[no-untyped-def]
    from app.engine.settings import Settings
    from app.widgets.order_ticket import OrderTicket

    ticket = OrderTicket(["PLTR"], {"PLTR": 20.0}, Settings(), "PLTR")
    qtbot.addWidget(ticket)
    sent: list[tuple] = []  # type: ignore[type-arg]
    ticket.sendRequested.connect(lambda *a: sent.append(a))
    ticket.quantity.setValue(50)
    ticket.kind.setCurrentText("limit")
    assert ticket.limit.isEnabled() and ticket.limit.value() == 20.0, "starts from the last price"
    ticket.limit.setValue(19.5)
    assert "limit buy of 50 shares at 19.50 or better" in ticket.preview.text()
    assert "broker stop at 18.91" in ticket.preview.text()  # 3% under the limit
    ticket.send()
    assert sent[-1] == ("PLTR", "BUY", 50.0, 0.0, 19.5)
    ticket.side.setCurrentText("SELL")
    assert not ticket.kind.isEnabled() and not ticket.limit.isEnabled() and "No limit sells" in ticket.preview.text()
    ticket.send()
    assert sent[-1] == ("PLTR", "SELL", 0.0, 0.0, 0.0)
    ticket.side.setCurrentText("BUY")
    ticket.limit.setValue(0.0)
    assert not ticket.send_button.isEnabled() and "Type the limit price" in ticket.preview.text()


def test_a_limit_buy_at_alpaca_partly_filled_is_covered_then_the_rest_cancelled_late(alpaca_server) -> None:  # type: ignore[no-untyped-def]
    """Through alpaca-py and the loopback Alpaca: the limit waits, a partial fill at the limit
    gets its broker stop for the shares held, and what is still working goes when entries stop."""
    from alpaca_desk import AlpacaDesk

    desk = AlpacaDesk(alpaca_server, mode="manual", start=utc(2025, 3, 4, 20, 30))  # 15:30 New York
    desk.close_bar(50.0)
    said = desk.bot.manual_order(SYMBOL, Side.BUY, qty=100, limit=49.5)
    assert "manual buy 100 limit 49.50" in said, said
    (limit,) = desk.orders("buy", "limit")
    assert float(limit["limit_price"]) == 49.5 and limit["time_in_force"] == "day"
    desk.trade(49.8)
    assert desk.held() == 0, "above the limit: Alpaca fills nothing"
    desk.clock.advance(timedelta(seconds=30))
    alpaca_server.fill_open_orders(49.4, SYMBOL, qty=40)  # the market takes 40 at the limit or better
    desk.check()
    assert desk.held() == 40 and desk.stop_cover() == 40, "every share held has its broker stop"
    desk.clock.set(utc(2025, 3, 4, 20, 46))  # 15:46: entries have stopped for the day
    desk.check(0)
    assert desk.orders("buy", "limit") == [], "the rest of the limit is cancelled"
    assert desk.held() == 40 and desk.stop_cover() == 40


# ------------------------------------------------------------ from the limit orders' review
def test_a_working_limit_buy_is_cancelled_when_the_breaker_trips(nyse: MarketCalendar) -> None:
    """The breaker says no new positions today: a limit waiting at the broker would open one."""
    desk = _desk(nyse)
    desk.bot.manual_order(SYMBOL, Side.BUY, qty=100, limit=19.0)
    assert desk.broker_orders(Side.BUY, OrderType.LIMIT)
    desk.sim._cash -= 6_000.0  # a 6% loss on the day elsewhere: past the 5% daily limit
    desk.bot.on_clock()
    assert not desk.broker_orders(Side.BUY, OrderType.LIMIT)
    desk.tick(18.9)
    assert desk.position is None, "the price came; the order was gone"
    assert any("limit buy" in e.message and "circuit breaker" in e.message
               for e in desk.events if hasattr(e, "message")), "the user is told"


def test_two_ticket_orders_in_one_second_are_two_orders(nyse: MarketCalendar) -> None:
    """A paused demo's clock stands still: a buy, a sell and a buy again must be three orders,
    not the first one's old answer."""
    desk = _desk(nyse)
    assert "manual buy 100" in desk.bot.manual_order(SYMBOL, Side.BUY, qty=100)
    desk.sim.on_price(SYMBOL, 20.0, desk.clock.now())
    desk.bot.on_clock()
    desk.bot.manual_order(SYMBOL, Side.SELL)
    desk.sim.on_price(SYMBOL, 20.0, desk.clock.now())
    desk.bot.on_clock()
    assert desk.position is None
    assert "manual buy 50" in desk.bot.manual_order(SYMBOL, Side.BUY, qty=50)
    desk.sim.on_price(SYMBOL, 20.0, desk.clock.now())
    desk.bot.on_clock()
    assert desk.position is not None and desk.position.qty == 50


def test_the_broker_refusing_a_limit_says_why_and_a_limit_is_judged_as_sent(nyse: MarketCalendar) -> None:
    desk = _desk(nyse)
    said = desk.bot.manual_order(SYMBOL, Side.BUY, qty=10, limit=19.999)
    assert "limit 19.99" in said, "rounded down to the cent it is sent at, never up"
    desk2 = Desk("manual", calendar=nyse, wrap=FlakyBroker)
    desk2.close_bar(20.0, p_up=0.5)
    desk2.flaky.reject_with = "rejected: insufficient buying power"
    said = desk2.bot.manual_order(SYMBOL, Side.BUY, qty=10, limit=19.5)
    assert "refused by the broker" in said and "insufficient buying power" in said, said
    assert "under half the last price" in _desk(nyse).bot.manual_order(SYMBOL, Side.BUY, qty=10, limit=9.0)
    assert "refused: already holding" in desk.bot.manual_order(SYMBOL, Side.BUY, qty=10) or \
        "refused: an entry is already working" in desk.bot.manual_order(SYMBOL, Side.BUY, qty=10)


def test_the_ticket_starts_a_limit_again_from_each_symbols_price(qtbot) -> None:  # type: ignore[no-untyped-def]
    from app.engine.settings import Settings
    from app.widgets.order_ticket import OrderTicket

    ticket = OrderTicket(["AAPL", "PLTR", "SNDL"], {"AAPL": 200.0, "PLTR": 20.0, "SNDL": 0.5123}, Settings(), "AAPL")
    qtbot.addWidget(ticket)
    ticket.kind.setCurrentText("limit")
    assert ticket.limit.value() == 200.0
    ticket.symbol.setCurrentText("PLTR")
    assert ticket.limit.value() == 20.0, "not AAPL's $200 on a $20 stock"
    ticket.symbol.setCurrentText("SNDL")
    assert ticket.limit.value() == 0.5123, "a sub-dollar limit keeps its hundredths of a cent"


def test_the_ticket_previews_fractional_shares_where_the_settings_allow_them(qtbot) -> None:  # type: ignore[no-untyped-def]
    from app.engine.settings import Settings
    from app.widgets.order_ticket import OrderTicket

    ticket = OrderTicket(["PLTR"], {"PLTR": 20.0}, Settings(fractional=True), "PLTR")
    qtbot.addWidget(ticket)
    ticket.unit.setCurrentText("dollars")
    ticket.quantity.setValue(10.0)
    assert "about 0.5 shares" in ticket.preview.text().lower() and ticket.send_button.isEnabled()
    whole = OrderTicket(["PLTR"], {"PLTR": 20.0}, Settings(), "PLTR")
    qtbot.addWidget(whole)
    whole.unit.setCurrentText("dollars")
    whole.quantity.setValue(10.0)
    assert not whole.send_button.isEnabled(), "less than one whole share"


def test_a_lost_record_takes_back_a_partly_filled_limit_with_its_shares_covered(alpaca_server) -> None:  # type: ignore[no-untyped-def]
    """From the limit orders' review: the record is moved aside (as the halt message advises)
    while a limit of the app's own is partly filled at Alpaca; on start its filled shares were
    called "not bought by the app" and left without a stop."""
    from alpaca_desk import AlpacaDesk

    first = AlpacaDesk(alpaca_server, mode="manual", start=utc(2025, 3, 4, 15, 0))
    first.close_bar(50.0)
    assert "manual buy 300 limit 49.50" in first.bot.manual_order(SYMBOL, Side.BUY, qty=300, limit=49.5)
    alpaca_server.fill_open_orders(49.4, SYMBOL, qty=100)  # while the app is down
    again = AlpacaDesk(alpaca_server, mode="manual", start=utc(2025, 3, 4, 15, 1))  # a fresh, empty record
    assert again.position is not None and again.position.qty == 100
    assert again.stop_cover() == 100, "the shares it bought are the app's, under its stop"
