"""Benchmark the market-data layer on ~100k one-minute bars, and a 1M-row CSV.

Targets: loading 100k bars from the SQLite cache < 0.5 s (the chart and the
trainer load whole histories), computing features for 100k bars < 2 s, and
reading and cleaning a 1,000,000-row CSV (``read_clean``, what every command's
``--csv`` does) in <= 2x the time of ``pandas.read_csv`` on the same file
(issue #16), the two alternated five times, medians compared.
Run: ``.venv/bin/python bench/bench_data.py [csv_rows]``; exits 1 when a target is missed.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine.data.cleaning import clean, default_calendar  # noqa: E402
from app.engine.data.features import compute_features  # noqa: E402
from app.engine.data.frame import make_frame  # noqa: E402
from app.engine.data.service import read_clean  # noqa: E402
from app.engine.storage import BarRepository, Storage  # noqa: E402

N_BARS = 100_000
LOAD_TARGET_S = 0.5
FEATURES_TARGET_S = 2.0


def session_minutes(n: int) -> pd.DatetimeIndex:
    """Start times of ``n`` one-minute bars inside real NYSE sessions (half days included)."""
    cal = default_calendar()
    out: list[pd.DatetimeIndex] = []
    total, day = 0, date(2024, 1, 2)
    while total < n:
        s = cal.session(day)
        day += timedelta(days=1)
        if s is None:
            continue
        idx = pd.date_range(s.open, s.close, freq="1min", inclusive="left")
        out.append(idx)
        total += len(idx)
    return out[0].append(out[1:])[:n]


def synthetic_bars(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(42)
    c = 25 * np.exp(np.cumsum(rng.normal(0, 0.0008, n)))
    o = np.r_[c[0], c[:-1]]
    h = np.maximum(o, c) * (1 + np.abs(rng.normal(0, 0.0004, n)))
    lo = np.minimum(o, c) * (1 - np.abs(rng.normal(0, 0.0004, n)))
    v = rng.integers(0, 50_000, n).astype(float)
    return make_frame(session_minutes(n), o, h, lo, c, v)


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


LAYOUTS = ("ISO UTC", "New York offsets", "unnamed first column (pandas to_csv)", "epoch seconds",
           "date and time columns (mm/dd/yyyy, HH:MM)", "ISO UTC, one unreadable time near the end")


def write_layout(frame: pd.DataFrame, layout: str, path: Path) -> None:
    """``frame`` as a CSV in one of the layouts exports come in."""
    out = frame.round(2)
    ny = out.index.tz_convert("America/New_York")
    if layout.startswith("ISO UTC"):
        out.index = out.index.strftime("%Y-%m-%d %H:%M:%S+00:00")
        if layout != "ISO UTC":  # one bad cell: the parser leaves the column as text, to be read cell by cell
            out.index = out.index.where(np.arange(len(out)) != len(out) - 100, "garbage")
    elif layout == "New York offsets":
        out.index = ny.strftime("%Y-%m-%dT%H:%M:%S%z").str.replace(r"(\d\d)$", r":\1", regex=True)
    elif layout.startswith("unnamed"):
        out.index = ny.tz_localize(None)
        out.index.name = None
        out.to_csv(path)
        return
    elif layout == "epoch seconds":
        out.index = out.index.as_unit("s").asi8
    else:
        out = out.reset_index(drop=True)
        out.insert(0, "Time", ny.strftime("%H:%M"))
        out.insert(0, "Date", ny.strftime("%m/%d/%Y"))
        out.to_csv(path, index=False)
        return
    out.index.name = "timestamp"
    out.to_csv(path)


def csv_against_pandas(rows: int, repeat: int = 5, layout: str = "ISO UTC") -> tuple[float, float]:
    """Medians of ``read_clean`` and ``pandas.read_csv`` on one file of ``rows`` one-minute bars."""
    import statistics

    frame = synthetic_bars(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "BENCH_1m.csv"
        write_layout(frame, layout, path)
        got = read_clean(path, "1m")[1].frame  # the calendar is built once per process: not timed
        expected = rows - ("unreadable" in layout)
        assert len(got) == expected, f"{layout}: {len(got)} of {rows} rows read"
        ours, theirs = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            pd.read_csv(path)
            theirs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            read_clean(path, "1m")
            ours.append(time.perf_counter() - t0)
    return statistics.median(ours), statistics.median(theirs)


def main() -> int:
    from loguru import logger

    logger.remove()
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    frame = synthetic_bars(N_BARS)
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "bench.db")
        repo = BarRepository(storage)
        t0 = time.perf_counter()
        repo.upsert_frame("BENCH", "1m", frame, "bench")
        store_s = time.perf_counter() - t0
        load_s = best_of(3, lambda: repo.load_frame("BENCH", "1m"))
        loaded = repo.load_frame("BENCH", "1m")
        bars_s = best_of(1, lambda: repo.load("BENCH", "1m"))
        storage.close()
    assert len(loaded) == N_BARS
    features_s = best_of(3, lambda: compute_features(loaded, intraday=True))
    clean_s = best_of(1, lambda: clean(loaded, "1m"))

    ok_load, ok_feat = load_s < LOAD_TARGET_S, features_s < FEATURES_TARGET_S
    print(f"bars: {N_BARS} one-minute bars in NYSE sessions")
    print(f"store (upsert_frame, one transaction): {store_s:.3f} s")
    print(f"load_frame from SQLite cache:          {load_s:.3f} s "
          f"(target < {LOAD_TARGET_S} s) {'OK' if ok_load else 'SLOW'}")
    print(f"load as list[Bar] (for comparison):    {bars_s:.3f} s")
    print(f"compute_features (intraday):           {features_s:.3f} s "
          f"(target < {FEATURES_TARGET_S} s) {'OK' if ok_feat else 'SLOW'}")
    print(f"clean (all rules, calendar warm):      {clean_s:.3f} s")
    ok_csv = True
    for layout in LAYOUTS:
        ours, theirs = csv_against_pandas(rows, layout=layout)
        ok = ours <= 2 * theirs
        ok_csv &= ok or layout != LAYOUTS[0]  # the exit status follows the common layout
        print(f"CSV of {rows:,} rows, {layout}: read and clean {ours:.2f} s, pandas.read_csv {theirs:.2f} s: "
              f"{ours / theirs:.2f}x (target <= 2x, medians of 5) {'OK' if ok else 'SLOW'}")
    return 0 if ok_load and ok_feat and ok_csv else 1


if __name__ == "__main__":
    raise SystemExit(main())
