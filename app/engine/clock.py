"""Injected time and the NYSE calendar.

Engine code never calls ``datetime.now()``: it asks a :class:`Clock`. Live
trading uses :class:`WallClock`; the demo, replays, backtests and tests use
:class:`SimClock`, which only moves when told to.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import Any

from app.engine.types import NY as NY  # re-exported: the calendar's time zone


class Clock(abc.ABC):
    @abc.abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""


class WallClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


class SimClock(Clock):
    """A clock that moves only when ``set``/``advance`` is called (thread-safe:
    reading or replacing one attribute is atomic, so only ``advance`` locks)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock needs a timezone-aware start time")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        tz = when.tzinfo
        if tz is UTC:  # a backtest's two settings a bar: the common case first
            self._now = when
        elif tz is None:
            raise ValueError("SimClock needs timezone-aware times")
        else:
            self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


@dataclass(frozen=True, slots=True)
class Session:
    day: date
    open: datetime  # UTC
    close: datetime  # UTC

    @property
    def is_early_close(self) -> bool:
        return self.close.astimezone(NY).hour < 16


class MarketCalendar:
    """NYSE sessions (holidays and early closes) from ``exchange_calendars``."""

    def __init__(self, name: str = "XNYS") -> None:
        self._cal = _exchange(name)
        self._name = name

    def session(self, day: date) -> Session | None:
        return _year_sessions(self._name, day.year).get(day)

    def session_at(self, when: datetime) -> Session | None:
        """The session ``when`` falls in, or None when the market is closed."""
        s = self.session(when.astimezone(NY).date())
        if s and s.open <= when < s.close:
            return s
        return None

    def is_open(self, when: datetime) -> bool:
        return self.session_at(when) is not None

    def next_session(self, when: datetime) -> Session:
        """The session open now, or the next one to open after ``when``."""
        day = when.astimezone(NY).date()
        for _ in range(15):
            s = self.session(day)
            if s and when < s.close:
                return s
            day += timedelta(days=1)
        raise LookupError(f"no session found after {when}")

    def previous_sessions(self, before: datetime, count: int) -> list[Session]:
        out: list[Session] = []
        day = before.astimezone(NY).date() - timedelta(days=1)
        while len(out) < count:
            s = self.session(day)
            if s:
                out.append(s)
            day -= timedelta(days=1)
        return out[::-1]

    def next_change(self, when: datetime) -> datetime:
        """When the market next opens or closes, for the status-bar countdown."""
        s = self.next_session(when)
        return s.close if s.open <= when else s.open


@cache
def _exchange(name: str) -> Any:
    """The exchange's calendar, made once per process (a fifth of a second each time it was
    made: every backtest and desk made its own). Wide bounds: history before 2015 is
    imported too, and the default end (a year from today) is near enough for a fast demo to
    run off it; the cost is the same."""
    import exchange_calendars as xc  # heavy: imported when first needed

    return xc.get_calendar(name, start="1990-01-01", end="2045-12-31")


@lru_cache(maxsize=128)
def _year_sessions(name: str, year: int) -> dict[date, Session]:
    """One year's sessions, read from the calendar's schedule at once (a lookup per day cost a
    tenth of a millisecond: a five-year file's gap count spent a third of a second on it). A
    year beyond what the calendar knows (a bogus date in a file) has none."""
    schedule = _exchange(name).schedule
    part = schedule.loc[f"{year}-01-01":f"{year}-12-31"]
    return {day.date(): Session(day.date(), o.to_pydatetime().astimezone(UTC), c.to_pydatetime().astimezone(UTC))
            for day, o, c in zip(part.index, part["open"], part["close"], strict=True)}
