"""Stale data: when bars stop coming during market hours the bot says so, opens
nothing, and what it holds stays protected by the broker's own stop order."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from conftest import utc
from desk import BAR, MORNING, SYMBOL, Desk

from app.engine.clock import MarketCalendar
from app.engine.types import OrderType, Side

OPEN_BAR = MORNING  # 10:00 in New York, a Tuesday


@pytest.mark.parametrize("mode, p_up", [("auto", 0.95), ("hybrid", 0.75)])
def test_no_entry_on_stale_data(nyse: MarketCalendar, mode: str, p_up: float) -> None:
    desk = Desk(mode, calendar=nyse)
    desk.bar(OPEN_BAR, 20.0)
    desk.bar(OPEN_BAR + BAR, 20.0)
    assert not desk.bot.data_stale()
    last_end = OPEN_BAR + 2 * BAR
    for _ in range(20):  # ten minutes of prices and no bar: not stale yet
        desk.tick(20.0)
    assert desk.clock.now() == last_end + 2 * BAR and not desk.bot.data_stale()
    desk.tick(20.0, seconds=1)  # more than two bar intervals since the last bar ended
    stale = desk.bot.data_stale()
    status = desk.bot.status()
    print(f"\nstale ({mode}): {desk.clock.now() - last_end} after the last bar: data_stale={stale}, "
          f"status.data_stale={status.data_stale}, StatusEvent.data_stale={desk.last_status().status.data_stale}")
    assert stale and status.data_stale and desk.last_status().status.data_stale

    for _ in range(10):  # the feed stays down for sixteen minutes in all
        desk.tick(20.0)
    # then it catches up: the first missed bar ended eleven minutes ago
    desk.bar(last_end, 20.0, p_up=p_up)
    refused = [d for s, d in desk.signal_events() if s == "refused"]
    assert refused and "stale" in refused[-1], desk.signal_events()
    assert not any(s in ("executed", "pending") for s, _ in desk.signal_events())
    assert desk.sim.open_orders() == [] and desk.records.positions() == []
    assert desk.bot.pending == {}

    desk.bar(last_end + BAR, 20.0)  # the rest of the backlog: fresh again, trading resumes
    desk.bar(last_end + 2 * BAR, 20.0)
    assert not desk.bot.data_stale()
    desk.bar(last_end + 3 * BAR, 20.0, p_up=p_up)
    assert [s for s, _ in desk.signal_events()][-1] == ("executed" if mode == "auto" else "pending")


def test_a_held_position_stays_protected_by_the_brokers_stop_while_data_is_stale(nyse: MarketCalendar) -> None:
    desk = Desk("auto", calendar=nyse)
    desk.bar(OPEN_BAR, 20.0, p_up=0.95)
    desk.tick(20.0)  # bought at 20, stop at 19.40 sent to the broker
    (pos,) = desk.records.positions()
    desk.bar(OPEN_BAR + BAR, 20.1)
    desk.clock.advance(timedelta(minutes=30))  # the feed stalls for half an hour
    assert desk.bot.data_stale() and desk.bot.status().data_stale
    desk.bot.on_price(SYMBOL, 20.05)  # quotes still come; bars don't
    (stop,) = [o for o in desk.sim.open_orders() if o.order_type == OrderType.STOP]
    assert stop.side == Side.SELL and stop.qty == pos.qty and stop.stop_price == pytest.approx(19.4)

    # the market falls through the stop; the broker sells without the bot's help
    fills = desk.sim.on_price(SYMBOL, 19.3, desk.clock.advance(timedelta(seconds=5)))
    print(f"\nstale: the broker's stop sold {fills[0].qty:g} @ {fills[0].price:.2f} with data stale")
    assert [(f.side, f.qty, f.price) for f in fills] == [(Side.SELL, pos.qty, 19.3)]
    desk.bot.on_price(SYMBOL, 19.3)  # the bot learns of it on its next poll
    assert desk.records.positions() == [] and desk.records.trades[-1].exit_reason == "stop loss"


def test_not_stale_outside_market_hours(nyse: MarketCalendar) -> None:
    desk = Desk("auto", calendar=nyse)
    desk.bar(utc(2025, 3, 4, 20, 55), 20.0)  # the last bar of the day ends at 16:00
    desk.clock.set(utc(2025, 3, 4, 23, 0))
    assert not desk.bot.data_stale()
    desk.clock.set(utc(2025, 3, 5, 14, 45))  # 09:45 next day, no bar since yesterday: stale
    assert desk.bot.data_stale()


def test_yesterdays_last_bar_is_not_late_before_todays_first_could_close(nyse: MarketCalendar) -> None:
    """A red STALE once showed at every start and through the first bar: the history ends at
    yesterday's close, and the day's first bar cannot close before 09:35."""
    monday, tuesday = nyse.session(date(2025, 3, 3)), nyse.session(date(2025, 3, 4))
    assert monday is not None and tuesday is not None
    desk = Desk("hybrid", start=monday.close - 2 * BAR, calendar=nyse)
    desk.bar(monday.close - 2 * BAR, 20.0)
    desk.bar(monday.close - BAR, 20.0)  # the day's last bar ends at the close
    desk.clock.set(tuesday.open + timedelta(minutes=1))
    assert not desk.bot.data_stale() and not desk.bot.status().data_stale, "09:31: nothing is late yet"
    desk.clock.set(tuesday.open + 2 * BAR)
    assert not desk.bot.data_stale(), "09:40: the 09:30 bar may still be on its way"
    desk.clock.set(tuesday.open + 2 * BAR + timedelta(seconds=1))
    assert desk.bot.data_stale(), "past two bars of the session without one: late"
