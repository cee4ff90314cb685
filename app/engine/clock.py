"""Injected time and the NYSE calendar.

Engine code never calls ``datetime.now()``: it asks a :class:`Clock`. Live
trading uses :class:`WallClock`; the demo, replays, backtests and tests use
:class:`SimClock`, which only moves when told to.
"""

from __future__ import annotations

import abc
import os
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from loguru import logger

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
        self._name = name
        _session_table(name)  # an unknown exchange is refused here, not at the first lookup

    def session(self, day: date) -> Session | None:
        return _year_sessions(self._name, day.year).get(day)

    @property
    def span(self) -> tuple[date, date]:
        """The first and the last session the calendar knows."""
        table = _session_table(self._name)
        return _EPOCH_DAY + timedelta(days=int(table[0, 0])), _EPOCH_DAY + timedelta(days=int(table[-1, 0]))

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
        raise LookupError(f"no NYSE session is known after {when:%Y-%m-%d} (the calendar covers "
                          f"{CALENDAR_SPAN[0][:4]} to {CALENDAR_SPAN[1][:4]})")

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


_sessions_dir: list[Path] = []  # where the session tables are kept between runs (set by keep_sessions_in)


def keep_sessions_in(folder: Path) -> None:
    """Keep each exchange's session table in ``folder`` between runs (the app home's cache):
    a run then reads it in milliseconds instead of importing ``exchange_calendars`` and
    making the calendar, a quarter of a second that every command line, backtest and desk
    start paid. The table is named after the package's version, so a new version (new
    holidays) makes a new one; a damaged file is made again."""
    _sessions_dir[:] = [Path(folder)]


# the sessions known: exchange_calendars' NYSE holidays hold from 1970 (before, it has Christmas as a session)
CALENDAR_SPAN = ("1970-01-01", "2045-12-31")


def _exchange(name: str) -> Any:
    """The exchange's calendar. Wide bounds: decades of daily history are imported too, and
    the default end (a year from today) is near enough for a fast demo to run off it; the
    cost is the same."""
    import exchange_calendars as xc  # heavy: imported when first needed

    return xc.get_calendar(name, start=CALENDAR_SPAN[0], end=CALENDAR_SPAN[1])


_tables: dict[str, np.ndarray] = {}  # each exchange's session table, once per process
_table_lock = threading.Lock()


def _session_table(name: str) -> np.ndarray:
    """Every session of the exchange as rows of (days since 1970, open, close in epoch
    seconds): from the kept file when there is one for this version of the calendars,
    else made from the calendar once per process (and kept, where a folder is set)."""
    table = _tables.get(name)
    if table is None:
        with _table_lock:  # two threads asking at once (the desk and a backtest) make it once
            table = _tables.get(name)
            if table is None:
                table = _tables[name] = _read_or_make(name)
    return table


def _read_or_make(name: str) -> np.ndarray:
    """The kept table when it is whole (its digest says so), else one made from the calendar
    (and kept)."""
    from importlib.metadata import version  # deferred: only when a table is first needed

    span = "-".join(d[:4] for d in CALENDAR_SPAN)
    kept = (_sessions_dir[0] / f"sessions-{name}-{span}-{version('exchange_calendars')}.npz"
            if _sessions_dir else None)
    if kept is not None and kept.exists():
        try:
            return _read_table(kept)
        except Exception as exc:  # noqa: BLE001 - whatever is wrong with a cache file, it is made again
            logger.warning("The kept session table {} is damaged ({}: {}); it is made again from the calendar",
                           kept, type(exc).__name__, str(exc)[:80])
    schedule = _exchange(name).schedule
    table = np.column_stack([schedule.index.values.astype("datetime64[D]").astype(np.int64),
                             schedule["open"].values.astype("datetime64[s]").astype(np.int64),
                             schedule["close"].values.astype("datetime64[s]").astype(np.int64)])
    if kept is not None:
        part = kept.with_name(f"{kept.stem}.{os.getpid()}.part.npz")  # two runs at once: two files
        try:
            kept.parent.mkdir(parents=True, exist_ok=True)
            np.savez(part, table=table, digest=np.array(_digest(table)))
            part.replace(kept)
        except OSError as exc:  # a read-only home, or a folder in its place: made again next time
            logger.debug("Cannot keep the session table in {}: {}", kept, exc)
            part.unlink(missing_ok=True)
    return table


def _read_table(path: Path) -> np.ndarray:
    """A kept table, whole and in order, or an error saying what is wrong with it."""
    with np.load(path, allow_pickle=False) as kept:  # an .npy or any other file: no ``with``, an error
        table = np.asarray(kept["table"])
        digest = str(kept["digest"][()])
    if table.ndim != 2 or table.shape[1] != 3 or table.dtype != np.int64 or not len(table):
        raise ValueError(f"a table of shape {table.shape} and type {table.dtype}")
    if digest != _digest(table):
        raise ValueError("its contents do not match their digest")
    if not (np.all(np.diff(table[:, 0]) > 0) and np.all(table[:, 1] < table[:, 2])):
        raise ValueError("sessions out of order")
    return table


def _digest(table: np.ndarray) -> str:
    import hashlib  # deferred: only when a table is kept or read

    return hashlib.sha256(np.ascontiguousarray(table).tobytes()).hexdigest()


@lru_cache(maxsize=128)
def _year_sessions(name: str, year: int) -> dict[date, Session]:
    """One year's sessions, read from the table at once (a lookup per day cost a tenth of a
    millisecond: a five-year file's gap count spent a third of a second on it). A year
    beyond what the calendar knows (a bogus date in a file) has none."""
    table = _session_table(name)
    first, last = (date(year, 1, 1) - _EPOCH_DAY).days, (date(year, 12, 31) - _EPOCH_DAY).days
    rows = table[(table[:, 0] >= first) & (table[:, 0] <= last)].tolist()
    out: dict[date, Session] = {}
    for days, opens, closes in rows:
        day = _EPOCH_DAY + timedelta(days=days)
        out[day] = Session(day, datetime.fromtimestamp(opens, UTC), datetime.fromtimestamp(closes, UTC))
    return out


_EPOCH_DAY = date(1970, 1, 1)
