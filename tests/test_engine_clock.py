"""Injected time and the NYSE calendar: holidays, weekends, early closes."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from conftest import utc

from app.engine.clock import MarketCalendar, SimClock


def test_sim_clock_moves_only_when_told() -> None:
    clock = SimClock(utc(2025, 3, 4, 15, 0))
    assert clock.now() == clock.now() == utc(2025, 3, 4, 15, 0)
    assert clock.advance(timedelta(seconds=30)) == utc(2025, 3, 4, 15, 0, 30)
    clock.set(utc(2025, 3, 5, 15, 0))
    assert clock.now() == utc(2025, 3, 5, 15, 0) and clock.now().utcoffset() == timedelta(0)


def test_sim_clock_refuses_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimClock(datetime(2025, 3, 4, 15, 0))


def test_holidays_weekends_and_early_closes(nyse: MarketCalendar) -> None:
    assert nyse.session(date(2025, 12, 25)) is None  # Christmas
    assert nyse.session(date(2025, 11, 27)) is None  # Thanksgiving
    assert nyse.session(date(2025, 3, 8)) is None  # a Saturday
    half = nyse.session(date(2025, 11, 28))
    assert half is not None and half.is_early_close and half.close == utc(2025, 11, 28, 18, 0)
    full = nyse.session(date(2025, 11, 26))
    assert full is not None and not full.is_early_close
    assert (full.open, full.close) == (utc(2025, 11, 26, 14, 30), utc(2025, 11, 26, 21, 0))
    summer = nyse.session(date(2025, 7, 1))  # daylight saving: 9:30 New York is 13:30 UTC
    assert summer is not None and summer.open == utc(2025, 7, 1, 13, 30)


def test_open_and_closed_instants(nyse: MarketCalendar) -> None:
    assert not nyse.is_open(utc(2025, 11, 26, 14, 29, 59))
    assert nyse.is_open(utc(2025, 11, 26, 14, 30))
    assert nyse.is_open(utc(2025, 11, 28, 17, 59, 59))
    assert not nyse.is_open(utc(2025, 11, 28, 18, 0))  # half day: closed at 13:00


def test_next_session_and_the_countdown(nyse: MarketCalendar) -> None:
    # Wednesday evening before Thanksgiving: the next session is Friday's half day
    after = utc(2025, 11, 26, 22, 0)
    s = nyse.next_session(after)
    assert s.day == date(2025, 11, 28)
    assert nyse.next_change(after) == s.open
    assert nyse.next_change(utc(2025, 11, 28, 15, 0)) == utc(2025, 11, 28, 18, 0)
    prev = nyse.previous_sessions(utc(2025, 12, 1, 15, 0), 3)
    assert [p.day for p in prev] == [date(2025, 11, 25), date(2025, 11, 26), date(2025, 11, 28)]
