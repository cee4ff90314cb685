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
from functools import lru_cache

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
        if when.tzinfo is None:
            raise ValueError("SimClock needs timezone-aware times")
        self._now = when if when.tzinfo is UTC else when.astimezone(UTC)

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
        import exchange_calendars as xc  # heavy: imported when first needed

        # wide bounds: history before 2015 is imported too, and the default end (a year
        # from today) is near enough for a fast demo to run off it; the cost is the same
        self._cal = xc.get_calendar(name, start="1990-01-01", end="2045-12-31")

    def session(self, day: date) -> Session | None:
        return _session_cached(self._cal, day)

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


@lru_cache(maxsize=4096)
def _session_cached(cal: object, day: date) -> Session | None:
    import pandas as pd

    ts = pd.Timestamp(day)
    if not cal.first_session <= ts <= cal.last_session:  # type: ignore[attr-defined]
        return None  # beyond what the calendar knows (a bogus date in a file): no session
    if not cal.is_session(ts):  # type: ignore[attr-defined]
        return None
    o = cal.session_open(ts).to_pydatetime()  # type: ignore[attr-defined]
    c = cal.session_close(ts).to_pydatetime()  # type: ignore[attr-defined]
    return Session(day, o.astimezone(UTC), c.astimezone(UTC))
