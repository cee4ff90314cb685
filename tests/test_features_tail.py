"""The live path's NumPy features equal ``compute_features`` and stay causal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import synthetic

from app.engine.clock import NY
from app.engine.data.features import compute_features, compute_features_tail, feature_columns
from app.engine.data.frame import make_frame
from app.engine.ml.live import BarWindow
from app.engine.types import Bar

TOL = 1e-9  # relative to max(1, |value|); the pandas and NumPy paths differ by float rounding only


def sessions_5m(days: int, start: str, seed: int = 3) -> pd.DataFrame:
    """Regular-hours 5-minute bars (78 a day, overnight and weekend gaps), like the bot's feed."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=days)
    opens = dates.tz_localize(NY) + pd.Timedelta(hours=9, minutes=30)
    idx = opens.repeat(78) + pd.to_timedelta(np.tile(np.arange(78) * 5, days), unit="m")
    n = len(idx)
    c = 30 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    o = np.r_[c[0], c[:-1]] * (1 + rng.normal(0, 0.001, n))
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.002, n)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.002, n)))
    return make_frame(idx.tz_convert("UTC"), o, h, lo, c, rng.integers(1_000, 900_000, n))


def as_rows(frame: pd.DataFrame) -> np.ndarray:
    secs = frame.index.as_unit("ns").asi8 // 1_000_000_000
    return np.column_stack([secs, frame[["open", "high", "low", "close", "volume"]].to_numpy(float)])


def assert_tail_equal(frame: pd.DataFrame, intraday: bool, rows: int) -> None:
    ref = compute_features(frame, intraday).to_numpy()[-rows:]
    for data in (frame, as_rows(frame)):
        got = compute_features_tail(data, intraday, rows)
        assert got.shape == ref.shape
        assert np.array_equal(np.isnan(got), np.isnan(ref)), "warm-up rows differ"
        diff = np.abs(np.nan_to_num(got) - np.nan_to_num(ref)) / np.maximum(1.0, np.abs(np.nan_to_num(ref)))
        assert diff.max() <= TOL, f"columns {np.array(feature_columns(intraday))[diff.max(axis=0) > TOL]}"


@pytest.mark.parametrize("intraday", [True, False])
@pytest.mark.parametrize("n", [1, 2, 13, 14, 15, 20, 25, 26, 27, 34, 49, 50, 51, 60, 61, 120, 400, 1500])
def test_tail_equals_compute_features_on_random_bars(intraday: bool, n: int) -> None:
    frame = synthetic(n, seed=n)
    for rows in (1, 4, 60, n):
        assert_tail_equal(frame, intraday, rows)


@pytest.mark.parametrize("start", ["2025-02-24", "2025-10-20"])  # windows crossing a DST change
def test_tail_equals_compute_features_on_session_bars(start: str) -> None:
    frame = sessions_5m(25, start)
    for end in (60, 400, 1000, len(frame)):
        part = frame.iloc[max(0, end - 400): end]
        for intraday in (True, False):
            assert_tail_equal(part, intraday, 60)
    # the DST change itself inside the 60-row tail
    dst = frame.index.tz_convert(NY).map(lambda t: t.utcoffset()).to_numpy()
    change = int(np.flatnonzero(dst[1:] != dst[:-1])[0]) + 1
    assert_tail_equal(frame.iloc[change - 330: change + 30], True, 60)


def test_tail_equals_compute_features_on_real_bars(shared_data: Path) -> None:
    from app.engine.ml.dataset import load_csv_bars

    frame = load_csv_bars(shared_data / "PLTR_5m_2025-12-23_2026-03-20.csv", "5m")
    for end in (100, 400, 2000, len(frame)):
        assert_tail_equal(frame.iloc[max(0, end - 400): end], True, 60)
    daily = load_csv_bars(shared_data / "PLTR_1d_2020-09-30_2026-03-31_merged.csv", "1d")
    assert_tail_equal(daily.iloc[-400:], False, 60)
    assert_tail_equal(daily, False, 60)


@pytest.mark.parametrize("at", [0, 30, 100, 130, 150, 185])
def test_flat_stretches_match(at: int) -> None:
    """A halted or untraded stretch, before, inside or at the end of the tail."""
    for volume, price in ((0.1, None), (0.0, None), (None, 100.3), (0.0, 100.3)):
        frame = synthetic(200)
        span = frame.index[at: at + 25]
        if volume is not None:
            frame.loc[span, "volume"] = volume
        if price is not None:
            frame.loc[span, ["open", "high", "low", "close"]] = price
        for intraday in (True, False):
            assert_tail_equal(frame, intraday, 60)


def test_missing_values_match() -> None:
    frame = synthetic(200)
    gappy = frame.copy()
    gappy.loc[gappy.index[180], "close"] = np.nan  # not a clean frame: the pandas path answers
    gappy.loc[gappy.index[185], "volume"] = np.inf
    assert_tail_equal(gappy, True, 60)


def test_naive_index_is_utc() -> None:
    frame = synthetic(120)
    naive = frame.copy()
    naive.index = frame.index.tz_localize(None)
    assert np.array_equal(compute_features_tail(naive, True, 60), compute_features_tail(frame, True, 60),
                          equal_nan=True)
    assert_tail_equal(naive, True, 60)


@pytest.mark.parametrize("intraday", [True, False])
def test_tail_is_causal(intraday: bool) -> None:
    frame = synthetic(600)
    rng = np.random.default_rng(7)
    full = compute_features(frame, intraday).to_numpy()
    for t in (10, 59, 200, 450, 598):
        changed = frame.copy()
        later = changed.index > changed.index[t]
        for col in ("open", "high", "low", "close", "volume"):
            changed.loc[later, col] = changed.loc[later, col] * rng.uniform(0.5, 2.0, later.sum())
        # a row's features come from bars up to it only: the tail ending at t is the
        # full history's rows up to t, whatever happens after t
        cut = compute_features_tail(changed.iloc[: t + 1], intraday, 60)
        ref = full[max(0, t + 1 - 60): t + 1]
        assert np.allclose(cut, ref, rtol=TOL, atol=TOL, equal_nan=True)
        # and rewriting later bars moves later rows only
        after = compute_features_tail(changed, intraday, 600)
        assert np.allclose(after[: t + 1], full[: t + 1], rtol=TOL, atol=TOL, equal_nan=True)
        assert not np.allclose(after[t + 1:], full[t + 1:], equal_nan=True)


def _bars(frame: pd.DataFrame) -> list[Bar]:
    from app.engine.data.frame import frame_to_bars

    return frame_to_bars(frame, "PLTR")


def test_bar_window_keeps_the_newest_bars() -> None:
    frame = synthetic(1000)
    bars = _bars(frame)
    rows = as_rows(frame)
    win = BarWindow(100)
    for t in range(0, 1000, 7):  # one to seven new bars a call, through several slides
        win.update(bars[max(0, t - 30): t + 1])
        lo = max(0, t + 1 - 100)
        assert len(win) == t + 1 - lo
        assert np.array_equal(win.rows(), rows[lo: t + 1])
    win.update(bars)
    assert np.array_equal(win.rows(), rows[-100:])
    assert np.array_equal(win.frame()["close"].to_numpy(), frame["close"].to_numpy()[-100:])
    assert win.frame().index.equals(frame.index[-100:])
    win.update(bars[:20])  # a replay restarted: the window starts over
    assert np.array_equal(win.rows(), rows[:20])
    win.update(bars[:500])  # more new bars than the window holds
    assert np.array_equal(win.rows(), rows[400:500])
    win.update(bars[:500])  # nothing new
    assert len(win) == 100


def test_time_features_match_new_york_clock_across_dst() -> None:
    utc = UTC
    times = [datetime(2025, 3, 7, 14, 30, tzinfo=utc) + timedelta(days=d, minutes=m)
             for d in range(0, 4) for m in (0, 5, 385)]
    secs = np.array([t.timestamp() for t in times])
    rows = np.column_stack([secs, np.ones((len(secs), 4)) * 10, np.ones(len(secs))])
    got = compute_features_tail(rows, True, len(secs))
    cols = feature_columns(True)
    for i, t in enumerate(times):
        ny = t.astimezone(NY)
        minute = ny.hour * 60 + ny.minute
        assert got[i, cols.index("session_frac")] == pytest.approx((minute - 570) / 390)
        assert got[i, cols.index("day_of_week")] == pytest.approx(ny.weekday() / 4)
