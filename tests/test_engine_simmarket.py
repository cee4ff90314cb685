"""The simulated market: reproducible from its seed, shaped like a real day."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from app.engine.clock import MarketCalendar, Session
from app.engine.simmarket import SimulatedMarket

DAY = date(2025, 3, 4)


def session(cal: MarketCalendar, day: date) -> Session:
    s = cal.session(day)
    assert s is not None
    return s


def test_same_seed_and_day_give_identical_bars_whatever_was_asked_before(nyse: MarketCalendar) -> None:
    a = SimulatedMarket("PLTR", 7, nyse).session_bars(session(nyse, DAY))
    other = SimulatedMarket("PLTR", 7, nyse)
    other.session_bars(session(nyse, date(2025, 6, 2)))  # a later day first
    b = other.session_bars(session(nyse, DAY))
    assert a == b


def test_different_seeds_differ(nyse: MarketCalendar) -> None:
    a = SimulatedMarket("PLTR", 7, nyse).session_bars(session(nyse, DAY))
    b = SimulatedMarket("PLTR", 8, nyse).session_bars(session(nyse, DAY))
    assert [x.bar.close for x in a] != [x.bar.close for x in b]


def test_consecutive_days_differ_and_connect(nyse: MarketCalendar) -> None:
    m = SimulatedMarket("PLTR", 7, nyse)
    d1 = m.session_bars(session(nyse, DAY))
    d2 = m.session_bars(session(nyse, DAY + timedelta(days=1)))
    assert [x.bar.close for x in d1] != [x.bar.close for x in d2]
    assert d1[-1].bar.close == pytest.approx(m.close_on(DAY), abs=1e-4)  # rounded to 4 places
    gap = d2[0].bar.open / d1[-1].bar.close - 1
    assert abs(gap) < 0.10  # an overnight gap, not a different stock


def test_a_half_day_has_fewer_bars(nyse: MarketCalendar) -> None:
    m = SimulatedMarket("PLTR", 7, nyse)
    full = m.session_bars(session(nyse, date(2025, 11, 26)))
    half = m.session_bars(session(nyse, date(2025, 11, 28)))
    assert len(full) == 78 and len(half) == 42
    s = session(nyse, date(2025, 11, 28))
    assert half[-1].bar.time + timedelta(minutes=5) == s.close
    assert all(s.open <= b.bar.time < s.close for b in half)


def test_bars_are_consistent_ohlc_with_ticks_inside_them(nyse: MarketCalendar) -> None:
    m = SimulatedMarket("PLTR", 11, nyse)
    day = session(nyse, DAY)
    bars = m.session_bars(day)
    for k, sb in enumerate(bars):
        b = sb.bar
        assert b.low <= min(b.open, b.close) and max(b.open, b.close) <= b.high
        assert b.low > 0 and b.volume > 0
        assert len(sb.ticks) == m.ticks_per_bar and sb.ticks[0] == b.open
        assert all(b.low <= t <= b.high for t in sb.ticks)
        assert b.time == day.open + timedelta(minutes=5 * k)
        assert b.time.tzinfo is not None


def test_volume_is_higher_at_the_open_and_close_than_at_lunch(nyse: MarketCalendar) -> None:
    m = SimulatedMarket("PLTR", 7, nyse)
    edges, middle = [], []
    for offset in range(10):
        s = nyse.next_session(session(nyse, DAY).open + timedelta(days=offset))
        vols = np.array([sb.bar.volume for sb in m.session_bars(s)])
        edges.extend(list(vols[:6]) + list(vols[-6:]))
        middle.extend(vols[33:45])
    assert np.mean(edges) > 1.5 * np.mean(middle)


def test_prices_stay_plausible_over_a_year(nyse: MarketCalendar) -> None:
    m = SimulatedMarket("PLTR", 7, nyse, base_price=25.0)
    closes = [m.close_on(DAY + timedelta(days=d)) for d in range(0, 365, 7)]
    assert min(closes) > 2.5 and max(closes) < 250.0


def test_a_symbol_alone_moves_as_the_one_symbol_demo_always_has(nyse: MarketCalendar) -> None:
    from app.engine.simmarket import watchlist_markets

    (alone,) = watchlist_markets(("PLTR",), 7, nyse)
    assert alone.session_bars(session(nyse, DAY)) == SimulatedMarket("PLTR", 7, nyse).session_bars(session(nyse, DAY))


def test_a_watchlist_moves_together_each_symbol_at_its_own_level(nyse: MarketCalendar) -> None:
    from app.engine.simmarket import watchlist_markets

    symbols = ("PLTR", "NVDA", "AMD", "SPY", "COIN")
    markets = watchlist_markets(symbols, 7, nyse)
    days = nyse.previous_sessions(session(nyse, DAY).open, 120)
    closes = np.array([[m.close_on(d.day) for d in days] for m in markets])
    returns = np.diff(np.log(closes), axis=1)
    corr = np.corrcoef(returns)
    pairs = corr[np.triu_indices(len(symbols), 1)]
    assert pairs.mean() > 0.2, f"no common market factor: mean correlation {pairs.mean():.2f}"
    assert pairs.max() < 0.95, "the symbols are copies of one another"
    levels = closes[:, -1]
    assert len({round(float(x), -1) for x in levels}) >= 4, f"price levels too alike: {levels}"
    again = watchlist_markets(("COIN", "PLTR"), 7, nyse)  # a symbol looks the same whatever else is listed
    assert again[0].base_price == markets[4].base_price and again[0].daily_vol == markets[4].daily_vol
