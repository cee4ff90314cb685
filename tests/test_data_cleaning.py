"""Each cleaning rule, on small hand-made defects and on the real fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic

from app.engine.data.cleaning import clean, default_calendar
from app.engine.data.csv_import import read_csv
from app.engine.data.frame import make_frame

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def cal():  # type: ignore[no-untyped-def]
    return default_calendar()


def _bars(times: list[str], closes: list[float] | None = None, volume: float = 100.0) -> pd.DataFrame:
    closes = closes or [10.0 + 0.01 * i for i in range(len(times))]
    c = np.array(closes)
    return make_frame(pd.DatetimeIndex(times, tz="UTC"), c, c + 0.05, c - 0.05, c,
                      np.full(len(c), volume))


def test_defects_file_every_rule_counted(cal) -> None:  # type: ignore[no-untyped-def]
    res = clean(read_csv(DATA / "defects_5m.csv").frame, "5m", cal)
    rep = res.report
    assert rep.input_rows == 11
    assert (rep.duplicates, rep.out_of_order, rep.bad_high_low, rep.extended_hours) == (1, 1, 2, 2)
    assert rep.zero_volume == 1
    assert rep.output_rows == 6 == len(res.frame)
    ny = res.frame.index.tz_convert("America/New_York").strftime("%H:%M").tolist()
    assert ny == ["09:30", "09:35", "09:40", "09:45", "10:20", "10:45"]
    assert res.frame.index.is_monotonic_increasing
    # the duplicate kept is the last one in the file
    assert res.frame.loc[pd.Timestamp("2025-12-23 14:45", tz="UTC"), "volume"] == 850
    assert res.frame["zero_volume"].tolist() == [False] * 4 + [True, False]
    assert rep.missing_bars == 10  # 09:50 .. 10:15 and 10:25 .. 10:40 inside 09:30 .. 10:45
    assert any("duplicate" in line for line in rep.lines())


def test_nan_zero_negative_prices_are_dropped(cal) -> None:  # type: ignore[no-untyped-def]
    f = _bars(["2025-12-23 14:30", "2025-12-23 14:35", "2025-12-23 14:40", "2025-12-23 14:45"])
    f.iloc[1, f.columns.get_loc("open")] = np.nan
    f.iloc[2, f.columns.get_loc("low")] = 0.0
    f.iloc[3, f.columns.get_loc("close")] = -1.0
    res = clean(f, "5m", cal)
    assert res.report.bad_prices == 3 and len(res.frame) == 1


def test_half_day_is_not_a_gap_and_after_early_close_is_extended(cal) -> None:  # type: ignore[no-untyped-def]
    res = clean(read_csv(DATA / "half_day_15m.csv").frame, "15m", cal)
    rep = res.report
    assert rep.half_days == 1  # 2025-12-24 closes at 13:00
    assert rep.extended_hours == 1  # the 13:15 bar on the half day
    assert rep.missing_bars == 1  # 2025-12-26 11:00 only; Christmas is a holiday, not a gap
    assert rep.sessions == 2
    assert rep.gap_examples == ["2025-12-26 11:00 ET (1 bar)"]


def test_keep_extended_keeps_pre_and_post_market(cal) -> None:  # type: ignore[no-untyped-def]
    frame = read_csv(DATA / "defects_5m.csv").frame
    res = clean(frame, "5m", cal, keep_extended=True)
    assert res.report.extended_hours == 0 and len(res.frame) == 8


def test_whole_missing_session_is_counted(cal) -> None:  # type: ignore[no-untyped-def]
    days = ["2025-12-22", "2025-12-24", "2025-12-26"]  # the 23rd is missing; the 25th is a holiday
    f = _bars(days)
    rep = clean(f, "1d", cal).report
    assert (rep.missing_sessions, rep.missing_bars) == (1, 1)


def test_daily_stamps_are_new_york_midnight_whatever_the_source_used(cal) -> None:  # type: ignore[no-untyped-def]
    f = _bars(["2025-12-22 00:00", "2025-12-23 05:00", "2025-12-24 14:30"])
    res = clean(f, "1d", cal)
    ny = res.frame.index.tz_convert("America/New_York")
    assert ny.strftime("%Y-%m-%d %H:%M").tolist() == ["2025-12-22 00:00", "2025-12-23 00:00",
                                                      "2025-12-24 00:00"]


def test_daily_bars_on_days_the_exchange_was_closed_are_said(cal) -> None:  # type: ignore[no-untyped-def]
    """2025-01-09 (a national day of mourning) and a Saturday: kept, but the user is told."""
    f = _bars(["2025-01-08 00:00", "2025-01-09 00:00", "2025-01-10 00:00", "2025-01-11 00:00",
               "2025-01-13 00:00"])
    rep = clean(f, "1d", cal).report
    assert rep.closed_days == 2 and rep.output_rows == 5
    assert "2 daily bars dated on days the exchange was closed (kept: check the dates)" in rep.lines()
    assert clean(_bars(["2025-01-08 00:00", "2025-01-10 00:00"]), "1d", cal).report.closed_days == 0


def test_unadjusted_split_is_reported_not_hidden(cal) -> None:  # type: ignore[no-untyped-def]
    res = clean(read_csv(DATA / "daily_split_unadjusted.csv").frame, "1d", cal)
    [split] = res.report.splits
    assert split.ratio == 10 and not split.adjusted and split.label == "10-for-1"
    assert split.time.tz_convert("America/New_York").date().isoformat() == "2024-06-10"
    assert any("NOT adjusted" in line for line in res.report.lines())
    assert res.frame["close"].iloc[0] == pytest.approx(1150.0)  # left as it was


def test_split_is_adjusted_with_the_adj_close_column(cal) -> None:  # type: ignore[no-untyped-def]
    res = clean(read_csv(DATA / "daily_split_adj_close.csv").frame, "1d", cal)
    [split] = res.report.splits
    assert split.adjusted and res.report.adjusted_by_adj_close
    assert res.frame["close"].iloc[0] == pytest.approx(115.0)
    assert res.frame["open"].iloc[0] == pytest.approx(114.425)
    jumps = np.abs(res.frame["open"].to_numpy()[1:] / res.frame["close"].to_numpy()[:-1] - 1)
    assert jumps.max() < 0.1
    assert "adj_close" not in res.frame.columns


def test_reverse_split_and_ordinary_big_moves(cal) -> None:  # type: ignore[no-untyped-def]
    f = _bars(["2025-12-22", "2025-12-23", "2025-12-24", "2025-12-26"], [2.0, 2.0, 20.1, 30.0])
    f["open"] = [2.0, 2.0, 20.1, 30.0]
    f["high"], f["low"] = f["open"] + 0.1, f["open"] - 0.1
    rep = clean(f, "1d", cal).report
    assert [s.label for s in rep.splits] == ["1-for-10"]  # 20.1 -> 30 is +49%, but no split ratio


def test_hourly_bars_on_the_hour_are_regular_hours(cal) -> None:  # type: ignore[no-untyped-def]
    # Alpaca stamps hourly bars 09:00, 10:00 ...: the 09:00 bar covers the 09:30 open
    times = [f"2025-12-23 {h:02d}:00" for h in range(13, 21)]  # 08:00 .. 15:00 ET
    rep = clean(_bars(times), "1h", cal).report
    assert rep.extended_hours == 1 and rep.missing_bars == 0


def test_shared_pltr_5m_counts_match_sources_md(shared_data: Path, cal) -> None:  # type: ignore[no-untyped-def]
    r = read_csv(shared_data / "PLTR_5m_2025-12-23_2026-03-20.csv")
    assert (r.accepted, r.rejected) == (4521, 0)
    rep = clean(r.frame, "5m", cal).report
    assert rep.sessions == 60 and rep.half_days == 1  # 2025-12-24
    assert rep.zero_volume == 83
    assert rep.extended_hours == 0 and rep.duplicates == 0
    assert 100 < rep.missing_bars < 150  # the 2026-01-30 .. 02-02 hole plus a few single bars
    assert any(g.startswith("2026-01-30 10:35 ET") for g in rep.gap_examples)


def test_shared_spy_extended_hours_dropped(shared_data: Path, cal) -> None:  # type: ignore[no-untyped-def]
    r = read_csv(shared_data / "SPY_5m_2024-03-26_2025-04-02.csv")
    res = clean(r.frame, "5m", cal)
    assert res.report.extended_hours > 0
    ny = res.frame.index.tz_convert("America/New_York")
    minutes = ny.hour * 60 + ny.minute
    assert minutes.min() >= 9 * 60 + 30 and minutes.max() < 16 * 60


def test_isolated_price_spikes_are_dropped_and_splits_and_gaps_are_not() -> None:
    """A close of 0.0001 or 9,999,999 between bars near 100 is a bad print (traded on, it
    "hit" a stop for 20% of the account and set a trailing stop in the millions). A split or
    a real gap moves the bars after it too, so it stays."""
    frame = synthetic(400, seed=4)
    frame.iloc[100, frame.columns.get_loc("close")] = 0.0001
    frame.iloc[100, frame.columns.get_loc("low")] = 0.0001
    frame.iloc[200, frame.columns.get_loc("high")] = 9_999_999.0
    frame.iloc[200, frame.columns.get_loc("close")] = 9_999_999.0
    later = frame.index >= frame.index[300]  # a 1-for-4 reverse split: every bar after moves
    for col in ("open", "high", "low", "close"):
        frame.loc[later, col] = frame.loc[later, col] * 4
    result = clean(frame, "1m", keep_extended=True)
    assert result.report.spikes == 2 and len(result.frame) == 398
    assert frame.index[100] not in result.frame.index and frame.index[200] not in result.frame.index
    assert frame.index[300] in result.frame.index, "the split's first bar is kept"
    assert any("price spike" in line for line in result.report.lines())
    assert result.frame["close"].max() < 1_000 and result.frame["close"].min() > 1


@pytest.mark.parametrize("bad", [9_999_999.0, 0.0001])
def test_a_bad_print_in_the_adjusted_close_column_alone_is_dropped(bad: float) -> None:
    """Adjusting by adj_close/close after the spike check once turned one bad adj_close
    cell into a bar with a high of 10 million (or a low of 0.0001) that a replay traded on."""
    frame = synthetic(400, seed=4)
    frame["adj_close"] = frame["close"] * 0.5  # a dividend-adjusted series, half the raw prices
    frame.iloc[150, frame.columns.get_loc("adj_close")] = bad
    for run in (250, 251, 252):  # a run of three as well
        frame.iloc[run, frame.columns.get_loc("adj_close")] = bad
    res = clean(frame, "1m", keep_extended=True)
    assert res.report.spikes + res.report.bad_prices == 4 and len(res.frame) == 396
    for i in (150, 250, 251, 252):
        assert frame.index[i] not in res.frame.index
    ref = float(frame["close"].median()) * 0.5
    assert res.frame["high"].max() < 3 * ref and res.frame["low"].min() > ref / 3


def test_the_spike_factor_is_a_setting_and_the_report_says_which() -> None:
    frame = synthetic(400, seed=4)
    base = float(frame["close"].iloc[99])
    frame.iloc[100, [frame.columns.get_loc(c) for c in ("close", "high")]] = base * 2.5
    assert clean(frame, "1m", keep_extended=True).report.spikes == 0, "2.5x is kept at the default 3x"
    strict = clean(frame, "1m", keep_extended=True, spike=2.0)
    assert strict.report.spikes == 1 and frame.index[100] not in strict.frame.index
    assert any("x2 off the closes around them" in line for line in strict.report.lines())


def test_bad_prints_two_and_three_in_a_row_are_dropped_and_counted() -> None:
    frame = synthetic(400, seed=5)
    for i in (100, 101):
        frame.iloc[i, [frame.columns.get_loc(c) for c in ("close", "low")]] = 0.0001
    for i in (200, 201, 202):
        frame.iloc[i, [frame.columns.get_loc(c) for c in ("close", "high")]] = 9_999_999.0
    result = clean(frame, "1m", keep_extended=True)
    assert result.report.spikes == 5 and len(result.frame) == 395
    assert result.frame["close"].max() < 1_000 and result.frame["close"].min() > 1
    assert any(line.startswith("5 bars with a price spike") for line in result.report.lines())


@pytest.mark.parametrize("where", ["last", "last two", "first", "four mid-file"])
def test_bad_prints_at_the_edge_of_a_file_or_four_in_a_row_are_dropped(where: str) -> None:
    """A replay's last bar at 0.0001 once "hit" a stop for 20% of the account: an edge has
    closes on one side only, and there a 10x move is a bad print."""
    frame = synthetic(400, seed=6)
    rows = {"last": [399], "last two": [398, 399], "first": [0], "four mid-file": [150, 151, 152, 153]}[where]
    for i in rows:
        frame.iloc[i, [frame.columns.get_loc(c) for c in ("open", "high", "low", "close")]] = 0.0001
    result = clean(frame, "1m", keep_extended=True)
    assert result.report.spikes == len(rows) and result.frame["close"].min() > 1
