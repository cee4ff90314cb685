"""The trading bot seen from the desk: approvals, exits, end of day, flatten,
the daily-loss breaker and a broker that fails. Real SimClock, real
SimulatedBroker; only the model is a stub whose P(up) each test chooses."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import numpy as np
import pytest
from conftest import utc
from desk import BAR, MORNING, SYMBOL, Desk, FlakyBroker, NoStopOrdersBroker

from app.engine.clock import MarketCalendar
from app.engine.events import AlertEvent, Event, TradeEvent
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import OrderStatus, OrderType, Side


# ------------------------------------------------------------ approvals
def test_an_approved_signal_fills_on_the_next_price_with_a_three_percent_stop() -> None:
    desk = Desk("hybrid")
    desk.close_bar(20.0, p_up=0.75)
    (sid, sig), = desk.bot.pending.items()
    assert sig.side == Side.BUY and desk.sim.open_orders() == []

    desk.tick(20.02)
    reply = desk.bot.approve(sid)
    assert reply == "approved; buy 999 (working)"
    assert [o.qty for o in desk.broker_orders(Side.BUY)] == [999.0]  # sized at $20.02
    assert desk.position is None  # not filled before the market moves

    desk.tick(20.05)
    p = desk.position
    assert p is not None and p.qty == 999 and p.avg_price == 20.05
    assert p.stop_price == pytest.approx(20.05 * 0.97)
    (stop,) = desk.broker_orders(Side.SELL, OrderType.STOP)
    assert stop.stop_price == p.stop_price and stop.qty == 999
    assert not desk.bot.pending
    assert desk.records.signals[sid][1] == "executed"


def test_a_rejected_signal_is_removed_and_never_traded() -> None:
    desk = Desk("manual")
    desk.close_bar(20.0, p_up=0.9)
    (sid,) = desk.bot.pending
    desk.bot.reject(sid)
    assert not desk.bot.pending
    assert desk.bot.approve(sid) == "that signal is no longer pending"
    desk.tick(20.0)
    assert desk.sim.fills == [] and desk.position is None
    assert desk.records.signals[sid][1] == "rejected"


def test_approval_after_the_next_bar_is_refused_as_expired() -> None:
    desk = Desk("hybrid")
    desk.close_bar(20.0, p_up=0.75)
    (sid,) = desk.bot.pending
    desk.close_bar(20.0, p_up=0.5)  # the next bar closes: the signal has lapsed
    assert not desk.bot.pending
    assert desk.bot.approve(sid) == "that signal is no longer pending"
    assert desk.records.signals[sid][1] == "expired"
    assert desk.sim.open_orders() == []


def test_approval_at_the_expiry_instant_is_refused() -> None:
    desk = Desk("hybrid")
    desk.close_bar(20.0, p_up=0.75)
    (sid, sig), = desk.bot.pending.items()
    desk.clock.set(sig.expires_at)
    assert desk.bot.approve(sid) == "expired"
    assert desk.sim.open_orders() == []


def test_approval_refused_when_the_price_moved_too_far() -> None:
    desk = Desk("hybrid")
    desk.close_bar(20.0, p_up=0.75)
    (sid,) = desk.bot.pending
    desk.tick(20.25)  # +1.25%, the limit is 1%
    reply = desk.bot.approve(sid)
    assert "price moved 1.25%" in reply
    assert desk.sim.open_orders() == [] and desk.records.signals[sid][1] == "refused"


# ---------------------------------------------------------------- sells
def test_a_sell_signal_with_nothing_held_does_nothing_in_any_mode() -> None:
    for mode in ("auto", "hybrid", "manual"):
        desk = Desk(mode)
        desk.close_bar(20.0, p_up=0.05)
        desk.tick(20.0)
        assert not desk.bot.pending and desk.sim.open_orders() == [] and desk.sim.fills == []
        assert desk.sim.positions() == []


def test_a_sell_signal_closes_the_long_and_records_the_trade() -> None:
    desk = Desk("auto")
    desk.buy(20.0)
    desk.close_bar(21.0, p_up=0.1)
    assert desk.broker_orders(Side.SELL, OrderType.STOP) == []  # the stop made way for the exit
    desk.tick(21.0)
    (trade,) = desk.records.trades
    assert (trade.qty, trade.entry_price, trade.exit_price) == (1000, 20.0, 21.0)
    assert trade.pnl == pytest.approx(1000.0) and trade.exit_reason == "exit on SELL signal"
    assert desk.position is None and desk.sim.positions() == [] and desk.sim.open_orders() == []
    assert desk.sim.account().cash == pytest.approx(101_000.0)
    assert any(isinstance(e, TradeEvent) for e in desk.events)


def test_a_buy_signal_while_holding_is_skipped_quietly() -> None:
    desk = Desk("hybrid")
    desk.buy(20.0)
    shown = len(desk.signal_events())
    desk.close_bar(20.1, p_up=0.99)
    desk.close_bar(20.1, p_up=0.75)
    assert len(desk.signal_events()) == shown  # nothing offered, nothing refused
    assert not desk.bot.pending and desk.broker_orders(Side.BUY) == []
    assert [st for _s, st, _d in desk.records.signals.values()][-2:] == ["skipped", "skipped"]


# ----------------------------------------------------------------- stops
@pytest.mark.parametrize("mode", ["manual", "hybrid", "auto"])
def test_stop_loss_exits_at_the_stop_without_asking(mode: str) -> None:
    desk = Desk(mode)
    desk.buy(20.0)
    desk.tick(19.6)
    desk.tick(19.41)
    assert desk.position is not None and desk.sold() == []
    desk.tick(19.4)
    assert desk.sold() == [19.4]
    (trade,) = desk.records.trades
    assert trade.exit_reason == "stop loss" and trade.pnl == pytest.approx(-600.0)
    assert desk.position is None and not desk.bot.pending


def test_without_broker_stops_the_bot_watches_the_stop_itself() -> None:
    desk = Desk("manual", sim=NoStopOrdersBroker)
    desk.buy(20.0)
    assert desk.sim.open_orders() == []  # nothing resting at the broker
    desk.tick(19.45)
    assert desk.broker_orders(Side.SELL) == []
    desk.tick(19.38)  # through the stop: a market exit goes out at once
    assert len(desk.broker_orders(Side.SELL)) == 1
    desk.tick(19.37)
    (trade,) = desk.records.trades
    assert trade.exit_reason == "stop loss" and trade.exit_price == 19.37


def test_trailing_stop_follows_the_price_up_and_exits_on_the_pullback() -> None:
    desk = Desk("hybrid")
    desk.buy(20.0)
    desk.tick(20.9)  # +4.5%: not yet trailing
    assert desk.position is not None and not desk.position.trailing_active
    assert desk.position.stop_price == pytest.approx(19.4)
    desk.tick(21.0)  # +5%: the stop jumps to 2% under the high
    assert desk.position.trailing_active and desk.position.stop_price == pytest.approx(20.58)
    desk.tick(22.0)
    assert desk.position.stop_price == pytest.approx(21.56)
    (stop,) = desk.broker_orders(Side.SELL, OrderType.STOP)
    assert stop.stop_price == pytest.approx(21.56)
    desk.tick(21.7)  # a dip does not lower it
    assert desk.position.stop_price == pytest.approx(21.56)
    desk.tick(21.56)
    (trade,) = desk.records.trades
    assert trade.exit_reason == "trailing stop" and trade.exit_price == pytest.approx(21.56)
    assert trade.pnl == pytest.approx(1560.0)
    assert desk.sim.open_orders() == []


# ------------------------------------------------------------ end of day
@pytest.mark.parametrize(
    ("day", "close_utc"),
    [(date(2025, 11, 28), utc(2025, 11, 28, 18, 0)),  # day after Thanksgiving: 13:00 close
     (date(2025, 12, 24), utc(2025, 12, 24, 18, 0)),  # Christmas Eve: 13:00 close
     (date(2025, 11, 26), utc(2025, 11, 26, 21, 0))],  # an ordinary day: 16:00 close
)
def test_end_of_day_flatten_five_minutes_before_the_close(nyse: MarketCalendar, day: date,
                                                          close_utc: datetime) -> None:
    session = nyse.session(day)
    assert session is not None and session.close == close_utc
    desk = Desk("manual", start=close_utc - timedelta(hours=1), calendar=nyse)
    desk.buy(20.0)
    first_sell: datetime | None = None
    while desk.clock.now() < close_utc - timedelta(seconds=30):
        desk.tick(20.1)
        if first_sell is None and desk.broker_orders(Side.SELL):
            first_sell = desk.clock.now()
    assert first_sell == close_utc - timedelta(minutes=5)
    (trade,) = desk.records.trades
    assert trade.exit_reason == "end of day"
    assert trade.exit_time == close_utc - timedelta(minutes=5) + timedelta(seconds=30)
    assert desk.position is None and desk.sim.positions() == [] and desk.sim.open_orders() == []
    # the last bar's signal is neither traded nor offered for approval
    desk.close_bar(20.1, p_up=0.99)
    assert desk.sim.open_orders() == [] and not desk.bot.pending
    assert desk.signal_events()[-1] == ("refused", "market is closed")


def test_no_entry_is_offered_in_the_last_minutes(nyse: MarketCalendar) -> None:
    close = utc(2025, 11, 28, 18, 0)
    desk = Desk("hybrid", start=close - timedelta(minutes=20), calendar=nyse)
    desk.close_bar(20.0, p_up=0.75)  # 15 minutes left
    assert not desk.bot.pending
    assert desk.signal_events() == [("refused", "no new entries in the last 15 minutes before the close")]
    desk = Desk("hybrid", start=close - timedelta(minutes=25), calendar=nyse)
    desk.close_bar(20.0, p_up=0.75)  # 20 minutes left
    assert desk.bot.pending


# ----------------------------------------------------------- flatten all
def test_flatten_all_cancels_orders_closes_everything_and_is_idempotent() -> None:
    desk = Desk("auto", max_exposure_pct=1.0)
    desk.buy(20.0)
    desk.close_bar(50.0, p_up=0.95, symbol="AMD")  # an entry still waiting for a price
    (entry,) = desk.broker_orders(Side.BUY)
    assert entry.symbol == "AMD"

    desk.bot.flatten_all()
    desk.clock.advance(timedelta(seconds=1))
    second = desk.bot.flatten_all()
    assert any("already working" in line for line in second)
    assert desk.broker_orders(Side.BUY) == []
    assert desk.broker_orders(Side.SELL, OrderType.STOP) == []
    assert [o.qty for o in desk.broker_orders(Side.SELL)] == [1000.0]

    desk.tick(20.2)
    desk.bot.flatten_all()
    desk.tick(20.2)
    assert desk.sold() == [20.2]
    assert desk.sim.positions() == [] and desk.records.positions() == []
    assert desk.records.trades[0].exit_reason == "flatten all"
    assert desk.bot.flatten_all() == ["nothing to flatten: no positions and no open orders"]


def test_flatten_all_drops_pending_signals() -> None:
    desk = Desk("manual")
    desk.close_bar(20.0, p_up=0.9)
    assert desk.bot.pending
    desk.bot.flatten_all()
    assert not desk.bot.pending
    desk.tick(20.0)
    assert desk.sim.fills == []


# ---------------------------------------------------- daily limits
def test_daily_loss_breaker_blocks_new_entries_and_alerts() -> None:
    desk = Desk("auto")
    desk.buy(20.0)
    desk.tick(14.0)  # the market gaps through the stop: -6% on the day
    assert desk.sold() == [14.0]
    alerts = [e for e in desk.events if isinstance(e, AlertEvent) and e.level == "error"]
    assert len(alerts) == 1 and "Daily loss limit" in alerts[0].message
    assert desk.bot.status().circuit_breaker

    desk.close_bar(14.0, p_up=0.99)
    assert desk.broker_orders(Side.BUY) == []
    assert ("refused", "daily loss limit of 5% reached (circuit breaker)") in desk.signal_events()

    desk.clock.set(MORNING + timedelta(days=1))  # a new day starts from the new equity
    desk.close_bar(14.0, p_up=0.99)
    assert not desk.bot.status().circuit_breaker
    assert len(desk.broker_orders(Side.BUY)) == 1


def test_no_breaker_on_a_smaller_loss() -> None:
    desk = Desk("auto")
    desk.buy(20.0)
    desk.tick(19.4)  # -0.6% on the day
    assert not desk.bot.status().circuit_breaker
    desk.close_bar(19.4, p_up=0.99)
    assert len(desk.broker_orders(Side.BUY)) == 1


def test_max_round_trips_a_day() -> None:
    desk = Desk("auto", max_round_trips=1)
    desk.buy(20.0)
    desk.close_bar(20.5, p_up=0.05)
    desk.tick(20.5)
    assert len(desk.records.trades) == 1 and desk.bot.status().round_trips_today == 1
    desk.close_bar(20.5, p_up=0.99)
    assert desk.broker_orders(Side.BUY) == []
    assert any(s == "refused" and "round trips" in d for s, d in desk.signal_events())


# -------------------------------------------------- a broker that fails
def test_transient_errors_are_retried_three_times_then_succeed() -> None:
    desk = Desk("auto", wrap=FlakyBroker)
    flaky = desk.flaky
    flaky.drop_submits = 2
    desk.close_bar(20.0, p_up=0.95)
    assert flaky.calls["submit"] == 3 and desk.sleeps == [0.5, 1.0]
    assert len(desk.broker_orders(Side.BUY)) == 1


def test_an_exit_keeps_retrying_until_it_goes_through() -> None:
    desk = Desk("auto", wrap=FlakyBroker)
    flaky = desk.flaky
    desk.buy(20.0)
    flaky.drop_submits = 7  # three attempts now, three on the next price, one more after
    desk.close_bar(20.5, p_up=0.05)
    assert desk.broker_orders(Side.SELL) == [] and not desk.bot.status().connected
    desk.tick(20.4)
    assert desk.broker_orders(Side.SELL) == [] and desk.sold() == []
    desk.tick(20.3)  # the connection is back on the second try
    assert len(desk.broker_orders(Side.SELL)) == 1 and desk.bot.status().connected
    desk.tick(20.2)
    assert desk.sold() == [20.2] and desk.records.trades[0].exit_reason == "exit on SELL signal"
    # the entry and its stop, then the exit's seven failures and one success
    assert flaky.calls["submit"] == 2 + 3 + 3 + 2
    desk.tick(20.2)
    assert desk.sold() == [20.2]


def test_a_permanent_rejection_is_recorded_with_the_reason_and_not_retried() -> None:
    desk = Desk("auto", wrap=FlakyBroker)
    flaky = desk.flaky
    flaky.reject_with = "rejected: account is restricted from trading"
    desk.close_bar(20.0, p_up=0.95)
    (order,) = desk.records.orders.values()
    assert order.status == OrderStatus.REJECTED
    assert "account is restricted from trading" in order.reason
    assert any(s == "refused" for s, _ in desk.signal_events())
    desk.tick(20.0)
    desk.tick(20.0)
    assert flaky.calls["submit"] == 1 and desk.sleeps == []


def test_a_queued_entry_expires_with_its_signal() -> None:
    desk = Desk("auto", wrap=FlakyBroker)
    flaky = desk.flaky
    flaky.drop_submits = 100
    desk.close_bar(20.0, p_up=0.95)
    (order,) = desk.records.orders.values()
    assert order.status == OrderStatus.INTENT
    flaky.drop_submits = 0
    desk.clock.advance(BAR)  # past the signal's expiry before the broker is back
    desk.tick(20.0)
    (order,) = desk.records.orders.values()
    assert order.status == OrderStatus.CANCELED and "expired" in order.reason
    desk.tick(20.0)
    assert desk.sim.fills == [] and desk.sim.open_orders() == []


def test_a_queued_entry_is_revalidated_before_it_is_sent() -> None:
    desk = Desk("auto", wrap=FlakyBroker)
    flaky = desk.flaky
    flaky.drop_submits = 3
    desk.close_bar(20.0, p_up=0.95)
    assert desk.sim.open_orders() == []
    desk.tick(21.0)  # back again; at $21 the 20% cap allows 952 shares
    (entry,) = desk.broker_orders(Side.BUY)
    assert entry.qty == 952


# ------------------------------------------------------ when parts fail
class BrokenModel(SignalModel):
    name = "broken"

    def predict(self, closes: np.ndarray) -> ModelOutput:
        raise RuntimeError("weights file is truncated")


def test_a_failing_model_is_reported_and_the_stops_still_work() -> None:
    desk = Desk("auto")
    desk.buy(20.0)
    desk.bot.model = BrokenModel()
    desk.close_bar(19.8)
    assert any(isinstance(e, AlertEvent) and "weights file is truncated" in e.message for e in desk.events)
    desk.tick(19.4)
    assert desk.records.trades[0].exit_reason == "stop loss"


def test_a_failing_listener_does_not_stop_trading() -> None:
    desk = Desk("auto")

    def broken_widget(event: Event) -> None:
        raise ValueError("widget deleted")

    desk.bot.bus.subscribe(broken_widget)
    desk.buy(20.0)
    desk.tick(19.4)
    assert desk.records.trades[0].exit_reason == "stop loss"


def test_data_goes_stale_when_bars_stop_coming(nyse: MarketCalendar) -> None:
    desk = Desk("hybrid", start=utc(2025, 3, 4, 15, 0), calendar=nyse)
    desk.close_bar(20.0, p_up=0.5)
    for _ in range(20):  # ten minutes of prices, no bar
        desk.tick(20.0)
    assert not desk.bot.data_stale()
    desk.tick(20.0, seconds=60)
    assert desk.bot.data_stale() and desk.bot.status().data_stale
    desk.close_bar(20.0, p_up=0.75)  # a bar arrives: fresh again
    assert not desk.bot.data_stale() and desk.bot.pending


def test_the_breaker_can_flatten_when_asked_to() -> None:
    desk = Desk("auto", flatten_on_circuit_breaker=True, daily_loss_limit=0.01,
                max_exposure_pct=1.0, max_position_pct=1.0)
    desk.buy(20.0)  # 2% risk over a 3% stop: 3333 shares
    desk.tick(19.75)  # -0.8% on the day
    assert not desk.bot.status().circuit_breaker and desk.broker_orders(Side.SELL) == []
    desk.tick(19.65)  # -1.2%: above the 19.40 stop, but past the day's limit
    assert desk.bot.status().circuit_breaker
    (exit_order,) = desk.broker_orders(Side.SELL)
    assert exit_order.qty == 3333
    desk.tick(19.66)
    assert desk.position is None and desk.records.trades[0].exit_reason == "circuit breaker"


def test_an_approved_sell_closes_the_position() -> None:
    desk = Desk("hybrid")
    desk.buy(20.0)
    desk.close_bar(20.4, p_up=0.25)  # a 0.75-confidence SELL: asked, not executed
    (sid,) = desk.bot.pending
    assert desk.broker_orders(Side.SELL) == []
    desk.bot.approve(sid)
    desk.tick(20.4)
    assert desk.records.trades[0].exit_reason == "exit on SELL signal"
    assert desk.records.trades[0].pnl == pytest.approx(400.0)


def test_closing_one_position_by_hand() -> None:
    desk = Desk("manual")
    desk.buy(20.0)
    reply = desk.bot.close_position(SYMBOL)
    assert reply == "PLTR: sell 1000 (closed by the user) working"
    assert desk.bot.close_position(SYMBOL) == "PLTR: an exit is already working"
    desk.tick(20.3)
    assert desk.records.trades[0].exit_reason == "closed by the user"
    assert desk.bot.close_position(SYMBOL) == "PLTR: nothing held to sell"


def test_a_bad_print_never_moves_money_and_a_real_gap_is_confirmed() -> None:
    """A latest trade of 0.0001 or 9,999,999 for a held stock: no stop "hit", no trailing
    stop in the millions; the next price near the last known one goes on. A real gap is taken
    once a second price confirms it."""
    desk = Desk("auto")
    desk.close_bar(20.0, p_up=0.95)
    desk.tick(20.0)
    (p,) = desk.bot.records.positions()
    stop = p.stop_price
    alerts = []
    desk.bot.bus.subscribe(lambda e: alerts.append(e) if isinstance(e, AlertEvent) else None)
    desk.bot.on_prices({"PLTR": 0.0001})
    desk.bot.on_prices({"PLTR": 9_999_999.0})
    (p,) = desk.bot.records.positions()
    assert p.stop_price == stop and p.high_water < 21, "neither print moved the stop"
    assert not [o for o in desk.bot.records.orders.values() if o.side == Side.SELL and o.order_type == OrderType.MARKET]
    assert any("ignoring a price of 0.0001" in a.message for a in alerts)
    desk.bot.on_prices({"PLTR": 20.1})  # back to normal: taken
    assert desk.bot.core.book.last_prices["PLTR"] == 20.1
    desk.bot.on_prices({"PLTR": 70.0})  # a real jump: held once...
    assert desk.bot.core.book.last_prices["PLTR"] == 20.1
    desk.bot.on_prices({"PLTR": 70.5})  # ...and confirmed by the next price near it
    assert desk.bot.core.book.last_prices["PLTR"] == 70.5


def test_the_bad_print_factor_is_the_users_setting() -> None:
    """A jump of 2.5x: taken at the default 3x, held until confirmed at a stricter 2x."""
    desk = Desk("auto")
    desk.close_bar(20.0, p_up=0.95)
    desk.bot.on_prices({"PLTR": 50.0})
    assert desk.bot.core.book.last_prices["PLTR"] == 50.0
    desk.bot.update_settings(desk.bot.core.book.settings.updated(bad_print_factor=2.0))
    desk.bot.on_prices({"PLTR": 20.0})
    assert desk.bot.core.book.last_prices["PLTR"] == 50.0, "held: 2.5x off the last at a 2x setting"
    desk.bot.on_prices({"PLTR": 20.2})
    assert desk.bot.core.book.last_prices["PLTR"] == 20.2, "confirmed by the next price near it"


def test_two_bad_prints_in_a_row_do_not_confirm_each_other() -> None:
    """0.0001 twice is still a bad print: a jump of 10x or more needs two confirmations."""
    desk = Desk("auto")
    desk.close_bar(20.0, p_up=0.95)
    desk.tick(20.0)
    (p,) = desk.bot.records.positions()
    for _ in range(2):
        desk.bot.on_prices({"PLTR": 0.0001})
    assert desk.bot.core.book.last_prices["PLTR"] == 20.0
    assert desk.bot.records.positions()[0].qty == p.qty
    assert not [o for o in desk.bot.records.orders.values() if o.side == Side.SELL and o.order_type == OrderType.MARKET]
    desk.bot.on_prices({"PLTR": 0.0001})  # a third in a row: taken as real (a delisting, a halt's reopening)
    assert desk.bot.core.book.last_prices["PLTR"] == 0.0001
