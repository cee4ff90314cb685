"""Injected time and the NYSE calendar: holidays, weekends, early closes."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import utc

from app.engine import clock as clock_module
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


@pytest.fixture
def fresh_tables() -> Iterator[None]:
    """The session tables made again in this test, and forgotten after it (they are kept per process)."""
    saved = list(clock_module._sessions_dir)
    clock_module._tables.clear()
    clock_module._year_sessions.cache_clear()
    yield
    clock_module._sessions_dir[:] = saved
    clock_module._tables.clear()
    clock_module._year_sessions.cache_clear()


def _year(cal: MarketCalendar, year: int) -> list[object]:
    day, out = date(year, 1, 1), []
    while day.year == year:
        out.append(cal.session(day))
        day += timedelta(days=1)
    return out


def test_a_kept_session_table_gives_the_same_sessions_without_the_calendar_package(
        tmp_path: Path, fresh_tables: None, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _year(MarketCalendar(), 2025)  # from exchange_calendars, nothing kept
    assert made.count(None) == 365 - 250 and sum(s is not None and s.is_early_close for s in made) == 3
    clock_module._tables.clear()
    clock_module._year_sessions.cache_clear()
    clock_module.keep_sessions_in(tmp_path / "cache")
    assert _year(MarketCalendar(), 2025) == made  # made again, and kept
    kept = list((tmp_path / "cache").glob("sessions-XNYS-*.npz"))
    assert len(kept) == 1
    clock_module._tables.clear()  # a new run: the kept file alone is read
    clock_module._year_sessions.cache_clear()

    def no_package(name: str) -> None:
        raise AssertionError("the calendar was made again instead of read from its file")

    monkeypatch.setattr(clock_module, "_exchange", no_package)
    assert _year(MarketCalendar(), 2025) == made
    assert MarketCalendar().session(date(1969, 12, 31)) is None  # before what the calendar knows


def test_a_damaged_session_table_is_made_again(tmp_path: Path, fresh_tables: None) -> None:
    clock_module.keep_sessions_in(tmp_path)
    MarketCalendar()
    kept = next(tmp_path.glob("sessions-XNYS-*.npz"))
    whole = kept.read_bytes()
    with np.load(kept) as z:
        table, digest = z["table"].copy(), z["digest"]
    table = table[table[:, 0] != (date(2025, 12, 24) - date(1970, 1, 1)).days]  # a session gone
    np.savez(tmp_path / "edited.npz", table=table, digest=digest)
    zipped = tmp_path / "other.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("a", "b")
    for damage in (b"\x93NUMPY damaged", whole[: len(whole) // 2], (tmp_path / "edited.npz").read_bytes(),
                   zipped.read_bytes(), b""):
        kept.write_bytes(damage)
        clock_module._tables.clear()
        clock_module._year_sessions.cache_clear()
        cal = MarketCalendar()
        assert cal.session(date(2025, 12, 25)) is None and cal.session(date(2025, 12, 24)) is not None
        assert cal.session(date(2025, 12, 24)).is_early_close  # type: ignore[union-attr]
        assert kept.read_bytes() == whole  # written again, whole
    assert not list(tmp_path.glob("*.part.npz"))


def test_bars_before_the_calendar_are_refused_in_words() -> None:
    from app.engine.backtest.config import BacktestConfig
    from app.engine.backtest.runner import run_backtest
    from app.engine.types import Bar

    bars = [Bar("OLD", datetime(1969, 12, 1 + k, 5, tzinfo=UTC), 10.0, 10.5, 9.5, 10.0, 1e5) for k in range(20)]
    with pytest.raises(ValueError, match="NYSE calendar knows sessions from 1970-01-02"):
        run_backtest(bars, BacktestConfig(symbol="OLD", timeframe="1d"))
    assert MarketCalendar().session(date(1987, 10, 19)) is not None  # daily history of the 1980s trades
