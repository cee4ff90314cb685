"""Filling the cache: CSV import is idempotent, fetching is incremental, loading is fast."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from app.engine.data.cleaning import default_calendar
from app.engine.data.frame import DataError, bars_to_frame, frame_to_bars, make_frame
from app.engine.data.portfolio import load_portfolio
from app.engine.data.service import ImportSummary, fetch_and_cache, import_file, infer_timeframe, missing_ranges
from app.engine.data.sources import CacheSource, MarketDataSource, SimulatedSource
from app.engine.storage import BarRepository, Storage

DATA = Path(__file__).parent / "data"
UTC = UTC


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    s = Storage(tmp_path / "trader.db")
    yield s
    s.close()


def import_csv(storage: Storage, path: Path, symbol: str, timeframe: str) -> ImportSummary:
    """One stock's file under the symbol named, as `data import --symbol` stores it."""
    (summary,) = import_file(storage, path, timeframe, symbol)
    return summary


def test_import_twice_stores_nothing_twice(storage: Storage) -> None:
    first = import_csv(storage, DATA / "half_day_15m.csv", "pltr", "15m")
    assert (first.symbol, first.accepted, first.new) == ("PLTR", 39, 39)
    again = import_csv(storage, DATA / "half_day_15m.csv", "PLTR", "15m")
    assert (again.accepted, again.new) == (39, 0)
    assert BarRepository(storage).count("PLTR", "15m") == 39


def test_import_summary_counts_and_reasons(storage: Storage) -> None:
    s = import_csv(storage, DATA / "defects_5m.csv", "PLTR", "5m")
    assert (s.read, s.accepted) == (19, 6)
    assert s.rejected == 8 + 2  # parse rejections + impossible candles
    assert s.reasons["high/low outside open/close"] == 2
    assert s.report.duplicates == 1 and s.report.extended_hours == 2
    text = "\n".join(s.lines())
    assert "rows read: 19, accepted: 6, rejected: 10" in text
    assert "text in close: 1 (lines 9)" in text
    cached = BarRepository(storage).load_frame("PLTR", "5m")
    assert len(cached) == 6 and cached["volume"].iloc[3] == 850


def test_import_refuses_the_wrong_timeframe(storage: Storage) -> None:
    with pytest.raises(DataError, match="holds 15m bars, not 5m: import it with --timeframe 15m"):
        import_csv(storage, DATA / "half_day_15m.csv", "PLTR", "5m")
    with pytest.raises(DataError, match="not a ticker"):
        import_csv(storage, DATA / "half_day_15m.csv", "PL TR!", "15m")
    assert BarRepository(storage).count("PLTR", "5m") == 0


def test_infer_timeframe() -> None:
    times = pd.date_range("2025-12-23 14:30", periods=10, freq="5min", tz="UTC")
    f = make_frame(times, *([range(1, 11)] * 5))
    assert infer_timeframe(f) == "5m"
    assert infer_timeframe(f.iloc[:2]) is None


def test_frame_and_bar_round_trip(storage: Storage) -> None:
    times = pd.date_range("2025-12-23 14:30", periods=3, freq="5min", tz="UTC")
    f = make_frame(times, [1, 2, 3], [2, 3, 4], [0.5, 1, 2], [1.5, 2.5, 3.5], [10, 0, 30])
    bars = frame_to_bars(f, "PLTR")
    assert bars[0].time == datetime(2025, 12, 23, 14, 30, tzinfo=UTC) and bars[2].close == 3.5
    assert bars_to_frame(bars).equals(f)
    repo = BarRepository(storage)
    repo.upsert(bars, "5m")  # the engine's list[Bar] path and the frame path agree
    assert repo.load_frame("PLTR", "5m").equals(f)
    assert repo.load("PLTR", "5m") == bars


class RecordingSource(MarketDataSource):
    """The simulated market, remembering what it was asked for."""

    name = "recording"

    def __init__(self) -> None:
        self.inner = SimulatedSource(default_calendar(), seed=5)
        self.asked: list[tuple[datetime, datetime]] = []

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        self.asked.append((start, end))
        return self.inner.fetch(symbol, timeframe, start, end)


def test_fetch_is_incremental(storage: Storage) -> None:
    src = RecordingSource()
    start, end = datetime(2025, 12, 22, tzinfo=UTC), datetime(2025, 12, 24, tzinfo=UTC)
    s1 = fetch_and_cache(storage, src, "DEMO", "5m", start, end)
    assert s1.new == 2 * 78 and src.asked == [(start, end)]
    last = BarRepository(storage).last_time("DEMO", "5m")
    later = datetime(2025, 12, 27, tzinfo=UTC)
    s2 = fetch_and_cache(storage, src, "DEMO", "5m", start, later)
    assert src.asked[-1] == (last, later)  # only from the last cached bar on
    assert s2.new == 42 + 78  # the half day and the 26th
    earlier = datetime(2025, 12, 19, tzinfo=UTC)
    first = BarRepository(storage).first_time("DEMO", "5m")
    fetch_and_cache(storage, src, "DEMO", "5m", earlier, later)
    assert src.asked[-2:] == [(earlier, first), (BarRepository(storage).last_time("DEMO", "5m"), later)]
    assert BarRepository(storage).count("DEMO", "5m") == 78 + 2 * 78 + 42 + 78


def test_missing_ranges_when_cache_covers_everything(storage: Storage) -> None:
    repo = BarRepository(storage)
    times = pd.date_range("2025-12-23 14:30", periods=3, freq="5min", tz="UTC")
    repo.upsert_frame("X", "5m", make_frame(times, *([[1.0, 1.0, 1.0]] * 5)))
    end = times[-1].to_pydatetime()
    assert missing_ranges(repo, "X", "5m", times[0].to_pydatetime(), end) == []
    assert fetch_and_cache(storage, CacheSource(storage), "X", "5m", times[0].to_pydatetime(),
                           end + timedelta(days=1)).ranges == []


def test_real_pltr_import(storage: Storage, shared_data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "pltr.csv"
    shutil.copy(shared_data / "PLTR_5m_2025-12-23_2026-03-20.csv", copy)
    s = import_csv(storage, copy, "PLTR", "5m")
    assert (s.accepted, s.rejected, s.new) == (4521, 0, 4521)
    assert s.report.zero_volume == 83 and s.report.half_days == 1
    assert 100 < s.report.missing_bars < 150
    daily = import_csv(storage, shared_data / "PLTR_1d_2020-09-30_2026-03-31_merged.csv", "PLTR", "1d")
    assert daily.accepted == 1381 and daily.report.missing_bars == 0
    first = BarRepository(storage).load_frame("PLTR", "1d").iloc[0]
    assert (first["open"], first["close"]) == (10.0, 9.5)  # SOURCES.md: first day O 10.00 C 9.50


def test_a_backtest_load_says_why_rows_were_rejected_and_where(tmp_path: Path) -> None:
    """The backtest's load names each reason with its lines, as the import does, not a bare count."""
    f = tmp_path / "SPY_5m.csv"
    f.write_text("timestamp,open,high,low,close,volume\n2024-03-05 14:30:00+00:00,1,1,1,1,1\n"
                 "2024-03-05 14:35:00+00:00,1,x,1,1,1\n09:40,1,1,1,1,1\n2024-03-05 14:45:00+00:00,1,1,1,1,1\n")
    _, lines = load_portfolio([f"SPY={f}"], None, "5m")
    assert lines[0] == "SPY: 2 bars from SPY_5m.csv (2 rows rejected)"
    assert set(lines[1:3]) == {"  SPY rejected: text in high: 1 (lines 3)",
                               "  SPY rejected: unreadable date/time: 1 (lines 4)"}
