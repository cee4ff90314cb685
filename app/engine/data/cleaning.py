"""Cleaning bars before anything learns from or trades on them.

Real feeds repeat bars, deliver them out of order, leave holes, print
impossible candles, mix in pre/post-market prints and sometimes forget a
split. Each rule here fixes or drops what it can, and every rule counts what
it did into a :class:`CleanReport`, so the user sees "3 duplicates, 1 bad
candle, 123 missing bars" instead of a silently different history. Sessions
come from the NYSE calendar, so a 13:00 early close is a short day, not a
gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd
from loguru import logger

from app.engine.clock import NY, MarketCalendar
from app.engine.data.frame import (
    ADJ_CLOSE,
    MAX_PRICE,
    OHLCV,
    PRICES,
    ZERO_VOLUME,
    check_timeframe,
    epoch_seconds,
    normalize_frame,
)

SPLIT_JUMP = 0.35  # a close-to-open move smaller than this is a market move, not a split
SPLIT_TOLERANCE = 0.05  # how close the jump must be to a split ratio
SPLIT_RATIOS: tuple[float, ...] = (2, 3, 4, 5, 8, 10, 15, 20, 25, 30, 40, 50)
GAP_EXAMPLES = 5
SPIKE = 3.0  # a bar this many times above (or below a third of) the closes around it, which agree: a bad print
SPIKE_RUN = 6  # bad prints in a row that are still told from a real move (the closes around them agree)
SPIKE_EDGE = 10.0  # at a file's first or last bars (one side only): this many times off is a bad print
EDGE_REF = 5  # the closes the edge's bars are compared with


@dataclass(frozen=True)
class SplitEvent:
    time: pd.Timestamp  # the first bar after the split
    ratio: float  # old shares -> new shares: 2.0 is a 2-for-1, 0.1 a 1-for-10 reverse split
    adjusted: bool

    @property
    def label(self) -> str:
        if self.ratio >= 1:
            return f"{self.ratio:g}-for-1"
        return f"1-for-{1 / self.ratio:g}"


@dataclass
class CleanReport:
    timeframe: str
    input_rows: int = 0
    output_rows: int = 0
    duplicates: int = 0
    out_of_order: int = 0
    bad_prices: int = 0
    bad_high_low: int = 0
    bad_volume: int = 0
    spikes: int = 0
    spike: float = SPIKE  # the factor that made a price a spike
    zero_volume: int = 0
    extended_hours: int = 0
    sessions: int = 0
    missing_bars: int = 0
    missing_sessions: int = 0
    half_days: int = 0
    closed_days: int = 0  # daily bars dated on a day the exchange was closed (a holiday, a weekend)
    adjusted_by_adj_close: bool = False
    splits: list[SplitEvent] = field(default_factory=list)
    gap_examples: list[str] = field(default_factory=list)

    @property
    def dropped(self) -> int:
        return self.input_rows - self.output_rows

    @property
    def unadjusted_splits(self) -> list[SplitEvent]:
        return [s for s in self.splits if not s.adjusted]

    def lines(self, include_rejects: bool = True, max_gaps: int | None = None) -> list[str]:
        """What cleaning did, one short line per rule that fired (``include_rejects``
        False leaves out the dropped bad bars, for callers that list them already), and
        the gaps found, at most ``max_gaps`` of them by name (the rest counted)."""
        rejects = [
            (self.bad_prices, "bars with missing, zero or negative prices (dropped)"),
            (self.bad_high_low, "bars with high/low outside open/close (dropped)"),
            (self.bad_volume, "bars with negative volume (dropped)"),
            (self.spikes, f"bars with a price spike (x{self.spike:g} off the closes around them, up to {SPIKE_RUN} "
                          "in a row; dropped as bad prints)"),
        ]
        items = [
            (self.duplicates, "duplicate timestamps (kept the last)"),
            (self.out_of_order, "rows out of order (sorted)"),
            *(rejects if include_rejects else []),
            (self.extended_hours, "pre/post-market bars (dropped)"),
            (self.zero_volume, "zero-volume bars (kept, flagged)"),
            (self.missing_bars, "missing bars inside sessions"),
            (self.missing_sessions, "whole sessions missing"),
            (self.half_days, "half days (early close, not counted as gaps)"),
            (self.closed_days, "daily bars dated on days the exchange was closed (kept: check the dates)"),
        ]
        out = [f"{n} {what}" for n, what in items if n]
        if self.adjusted_by_adj_close:
            out.append("prices adjusted with the adjusted-close column")
        for s in self.splits:
            state = "adjusted" if s.adjusted else "NOT adjusted: prices before it are not comparable"
            out.append(f"split {s.label} detected at {s.time:%Y-%m-%d} ({state})")
        shown = self.gap_examples if max_gaps is None else self.gap_examples[:max_gaps]
        out += [f"gap: {g}" for g in shown]
        if len(shown) < len(self.gap_examples):
            out.append(f"... {len(self.gap_examples) - len(shown)} more gaps (`data import` lists them)")
        return out


@dataclass
class CleanResult:
    frame: pd.DataFrame
    report: CleanReport


@lru_cache(maxsize=1)
def default_calendar() -> MarketCalendar:
    """One shared NYSE calendar: building one costs a few hundred milliseconds."""
    return MarketCalendar()


def clean(frame: pd.DataFrame, timeframe: str, calendar: MarketCalendar | None = None,
          keep_extended: bool = False, spike: float = SPIKE) -> CleanResult:
    """Apply every rule in order and return the clean frame with what was done. ``spike``:
    the bad-print factor (the setting ``bad_print_factor``)."""
    step = check_timeframe(timeframe)
    intraday = step < 86400
    cal = calendar or default_calendar()
    rep = CleanReport(timeframe, input_rows=len(frame), spike=spike)
    df = normalize_frame(frame)
    df = _rows(df, ~df.index.isna())
    if not intraday:
        df.index = _daily_stamp(df.index)
    df = _order(df, rep)
    df = _valid_prices(df, rep)
    df = _spikes(df, rep)
    df = _splits(df, rep)
    if rep.adjusted_by_adj_close:  # a bad print in the adjusted-close column alone shows only now
        df = _valid_prices(df, rep)
        df = _spikes(df, rep)
    if intraday and not keep_extended and len(df):
        df = _regular_hours(df, step, cal, rep)
    zero = df["volume"].to_numpy() == 0
    df[ZERO_VOLUME] = zero
    rep.zero_volume = int(zero.sum())
    if len(df):
        _count_gaps(df, step, cal, rep)
        if not intraday:
            rep.closed_days = _closed_days(df.index, cal)
    rep.output_rows = len(df)
    _log(rep)
    return CleanResult(df[[*OHLCV, ZERO_VOLUME]], rep)


# ---------------------------------------------------------------- rules
def _daily_stamp(idx: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Daily bars are stamped at New York midnight of their date (Alpaca's and
    yfinance's convention), whatever stamp the source used; the date is read in
    UTC, which is right for midnight-UTC, midnight-NY and session-time stamps."""
    days = idx.tz_convert("UTC").normalize().tz_localize(None)
    out = days.tz_localize(NY).tz_convert("UTC").as_unit("ns")
    out.name = idx.name
    return out


def _closed_days(idx: pd.DatetimeIndex, cal: MarketCalendar) -> int:
    """Daily bars on dates the calendar knows the exchange was closed (within what it knows)."""
    first, last = cal.span
    days = [d for d in idx.tz_convert(NY).date if first <= d <= last]
    return sum(cal.session(d) is None for d in days)


def _order(df: pd.DataFrame, rep: CleanReport) -> pd.DataFrame:
    """Sorted, one bar a time: bars are stamped to the second (as they are played), so two rows
    a fraction of a second apart are one time, and the later row is kept like any duplicate."""
    if (pd.DatetimeIndex(df.index).as_unit("ns").asi8 % 1_000_000_000).any():
        df = df.set_axis(df.index.floor("s"))
    secs = epoch_seconds(df.index)
    rep.out_of_order = int((np.diff(secs) < 0).sum()) if len(secs) > 1 else 0
    dup = df.index.duplicated(keep="last")
    rep.duplicates = int(dup.sum())
    df = _rows(df, ~dup)
    return df.sort_index(kind="stable") if rep.out_of_order else df


def _rows(df: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    """The rows ``keep`` marks; the frame itself when that is all of them (most files: a copy of
    a million rows saved at each rule)."""
    return df if keep.all() else df[keep]


def _valid_prices(df: pd.DataFrame, rep: CleanReport) -> pd.DataFrame:
    p = df[list(PRICES)].to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        bad = ~((p > 0) & (p <= MAX_PRICE)).all(axis=1)  # NaN fails both, and inf the second
    rep.bad_prices += int(bad.sum())
    vol = df["volume"].to_numpy(dtype="float64")
    neg = vol < 0
    rep.bad_volume += int((neg & ~bad).sum())
    unknown = ~np.isfinite(vol)
    if unknown.any():  # an unknown volume is no volume; it gets flagged below
        df = df.assign(volume=np.where(unknown, 0.0, vol))
    o, h, lo, c = p.T
    with np.errstate(invalid="ignore"):
        top, bottom = np.maximum(o, c), np.minimum(o, c)
        bad_hl = ((h < top * (1 - 1e-9)) | (lo > bottom * (1 + 1e-9))) & ~bad & ~neg
    rep.bad_high_low += int(bad_hl.sum())
    return _rows(df, ~(bad | neg | bad_hl))


def _spikes(df: pd.DataFrame, rep: CleanReport) -> pd.DataFrame:
    """Drop runs of up to ``SPIKE_RUN`` bars with a price far off the closes on both sides of
    the run while those two agree: a close of 0.0001 or 9,999,999 between bars near 190 is a
    bad print (two in a row too), and traded on it moves money (a stop "hit", a trailing stop
    set in the millions). A split or a real gap moves the following bars too, so it is not
    bracketed by agreeing closes and is kept."""
    n = len(df)
    if n < 3:
        return df
    p = df[list(PRICES)].to_numpy(dtype="float64")
    c, top, bottom = p[:, 3], p.max(axis=1), p.min(axis=1)
    bad = np.zeros(n, dtype=bool)
    # A run's first bar is off its left close by more than spike / sqrt(1.5) (that close and the
    # right one agree within 1.5x): with no such bar anywhere, no run need be looked for.
    least = rep.spike / math.sqrt(1.5)
    with np.errstate(invalid="ignore", divide="ignore"):
        jumps = bool(((top[1:] > c[:-1] * least) | (bottom[1:] < c[:-1] / least)).any())
    for run in range(1, min(SPIKE_RUN, n - 2) + 1) if jumps else ():
        prev, nxt = c[: n - run - 1], c[run + 1:]  # the closes bracketing the run starting at each bar
        agree = np.maximum(prev, nxt) / np.minimum(prev, nxt) < 1.5
        ref = np.sqrt(prev * nxt)[:, None]
        tops = np.lib.stride_tricks.sliding_window_view(top[1: n - 1], run)
        bottoms = np.lib.stride_tricks.sliding_window_view(bottom[1: n - 1], run)
        off = ((tops > ref * rep.spike) | (bottoms < ref / rep.spike)).all(axis=1) & agree
        for k in range(run):  # every bar of a run that is off
            bad[1 + k: n - run + k] |= off
    _edge_spikes(c, top, bottom, bad)
    found = int(bad.sum())
    rep.spikes += found
    return df[~bad] if found else df


def _edge_spikes(c: np.ndarray, top: np.ndarray, bottom: np.ndarray, bad: np.ndarray) -> None:
    """A file's first or last bars have no close on one side: there a run of up to
    ``SPIKE_RUN`` bars is a bad print when it is ``SPIKE_EDGE`` times off (no listed stock
    moves 10x in a few bars) the agreeing closes on its other side."""
    n = len(c)
    for run in range(1, min(SPIKE_RUN, n - EDGE_REF) + 1):
        ends = ((slice(n - run, n), c[n - run - EDGE_REF: n - run]), (slice(0, run), c[run: run + EDGE_REF]))
        for span, ref_closes in ends:
            if ref_closes.max() / ref_closes.min() >= 1.5:
                continue
            ref = float(np.median(ref_closes))
            if ((top[span] > ref * SPIKE_EDGE) | (bottom[span] < ref / SPIKE_EDGE)).all():
                bad[span] = True


def _splits(df: pd.DataFrame, rep: CleanReport) -> pd.DataFrame:
    """Find close-to-open jumps that look like a split; adjust with adj_close when given."""
    before = _detect_splits(df)
    if ADJ_CLOSE in df.columns:
        ratio = (df[ADJ_CLOSE] / df["close"]).to_numpy()
        ratio = np.where(np.isfinite(ratio) & (ratio > 0), ratio, 1.0)
        if np.any(np.abs(ratio - 1.0) > 1e-9):
            df = df.copy()
            for c in PRICES:
                df[c] = df[c].to_numpy() * ratio
            rep.adjusted_by_adj_close = True
        df = df.drop(columns=[ADJ_CLOSE])
    after = {t for t, _ in _detect_splits(df)}
    rep.splits = [SplitEvent(t, r, adjusted=t not in after) for t, r in before]
    return df


def _detect_splits(df: pd.DataFrame) -> list[tuple[pd.Timestamp, float]]:
    if len(df) < 2:
        return []
    close, open_ = df["close"].to_numpy(), df["open"].to_numpy()
    jump = close[:-1] / open_[1:]
    idx = np.flatnonzero(np.abs(open_[1:] / close[:-1] - 1.0) > SPLIT_JUMP)
    out = []
    candidates = np.array(SPLIT_RATIOS + tuple(1.0 / r for r in SPLIT_RATIOS))
    for i in idx:
        rel = np.abs(jump[i] / candidates - 1.0)
        k = int(np.argmin(rel))
        if rel[k] < SPLIT_TOLERANCE:
            out.append((df.index[i + 1], float(candidates[k])))
    return out


def _session_table(secs: np.ndarray, cal: MarketCalendar) -> tuple[np.ndarray, np.ndarray]:
    """For each bar start (epoch seconds, sorted), the open and close of the first session that
    closes after it (-1 past the last). A bar inside a session gets that session; one on a closed
    day or after a close gets the next one, which it cannot overlap (the gap is hours; bars are at
    most an hour long)."""
    first = datetime.fromtimestamp(int(secs[0]), NY).date()
    last = datetime.fromtimestamp(int(secs[-1]), NY).date()
    spans = []
    day = first
    while day <= last:
        s = cal.session(day)
        if s is not None:
            spans.append((int(s.open.timestamp()), int(s.close.timestamp())))
        day += timedelta(days=1)
    table = np.array([*spans, (-1, -1)], dtype="int64")
    k = np.searchsorted(table[:-1, 1], secs, side="right")  # past the last session: the (-1, -1) row
    return table[k, 0], table[k, 1]


def _regular_hours(df: pd.DataFrame, step: int, cal: MarketCalendar,
                   rep: CleanReport) -> pd.DataFrame:
    """Keep bars that overlap the session (an hourly 09:00 bar covers 09:30)."""
    secs = epoch_seconds(df.index)
    opens, closes = _session_table(secs, cal)
    inside = (opens >= 0) & (secs < closes) & (secs + step > opens)
    rep.extended_hours = int((~inside).sum())
    return _rows(df, inside)


def _count_gaps(df: pd.DataFrame, step: int, cal: MarketCalendar, rep: CleanReport) -> None:
    """Count expected bars that are absent between the first and the last bar."""
    secs = epoch_seconds(df.index)
    first, last = int(secs[0]), int(secs[-1])
    start_day = df.index[0].tz_convert(NY).date()
    end_day = df.index[-1].tz_convert(NY).date()
    offset = _grid_offset(secs, step)
    spans = []  # each session's first slot and its end
    day = start_day
    while day <= end_day:
        s = cal.session(day)
        day += timedelta(days=1)
        if s is None:
            continue
        rep.sessions += 1
        rep.half_days += int(s.is_early_close)
        if step >= 86400:
            stamp = int(pd.Timestamp(s.day).tz_localize(NY).timestamp())
            spans.append((stamp, stamp + 1))
        else:
            o = int(s.open.timestamp())
            spans.append((o - (o - offset) % step, int(s.close.timestamp())))
    gaps = _absent(secs, spans, step, first, last, rep)
    rep.missing_bars = len(gaps)
    rep.gap_examples = _gap_ranges(gaps, step)


def _absent(have: np.ndarray, spans: list[tuple[int, int]], step: int, first: int, last: int,
            rep: CleanReport) -> np.ndarray:
    """The slots (every ``step`` from each span's first slot to its end) from ``first`` to ``last``
    that ``have`` (sorted and distinct: _order made it so) lacks, every session in one pass;
    sessions with every slot absent are counted in ``rep``."""
    if not spans:
        return np.array([], dtype="int64")
    table = np.array(spans, dtype="int64")
    begins, closes = table[:, 0], table[:, 1]
    counts = np.maximum((closes - begins + step - 1) // step, 0)
    session = np.repeat(np.arange(len(table)), counts)
    starts = np.cumsum(counts) - counts
    slots = begins[session] + step * (np.arange(int(counts.sum()), dtype="int64") - starts[session])
    inside = (slots >= first) & (slots <= last)
    slots, session = slots[inside], session[inside]
    # a binary search per slot, not a pass over every bar per day (np.isin made a million-row
    # import take minutes)
    pos = np.minimum(np.searchsorted(have, slots), len(have) - 1)
    lacking = have[pos] != slots
    wanted = np.bincount(session, minlength=len(table))
    lacked = np.bincount(session[lacking], minlength=len(table))
    rep.missing_sessions += int(((wanted > 0) & (lacked == wanted)).sum())
    absent: np.ndarray = slots[lacking]
    return absent


def _grid_offset(secs: np.ndarray, step: int) -> int:
    """Where this source starts its bars within a step (09:30 vs 09:00 for hourly bars)."""
    if step >= 86400 or len(secs) == 0:
        return 0
    return int(np.argmax(np.bincount(secs % step)))  # the commonest start within a step


def _gap_ranges(gaps: np.ndarray, step: int) -> list[str]:
    if len(gaps) == 0:
        return []
    breaks = np.flatnonzero(np.diff(gaps) > step * 1.5) + 1  # a session boundary also breaks
    out = []
    fmt = "%Y-%m-%d %H:%M ET" if step < 86400 else "%Y-%m-%d"
    for run in np.split(gaps, breaks)[:GAP_EXAMPLES]:
        a = pd.Timestamp(int(run[0]), unit="s", tz="UTC").tz_convert(NY)
        b = pd.Timestamp(int(run[-1]), unit="s", tz="UTC").tz_convert(NY)
        end = b.strftime("%H:%M ET") if step < 86400 and a.date() == b.date() else b.strftime(fmt)
        label = a.strftime(fmt) if len(run) == 1 else f"{a.strftime(fmt)} .. {end}"
        out.append(f"{label} ({len(run)} bar{'s' if len(run) > 1 else ''})")
    return out


def _log(rep: CleanReport) -> None:
    dropped = rep.bad_prices + rep.bad_high_low + rep.bad_volume
    if dropped or rep.duplicates or rep.out_of_order:
        logger.info("Cleaning {}: {} duplicates, {} out of order, {} bad bars dropped",
                    rep.timeframe, rep.duplicates, rep.out_of_order, dropped)
    if rep.extended_hours:
        logger.info("Cleaning {}: dropped {} pre/post-market bars", rep.timeframe, rep.extended_hours)
    if rep.zero_volume:
        logger.info("Cleaning {}: {} zero-volume bars flagged", rep.timeframe, rep.zero_volume)
    if rep.missing_bars:
        logger.info("Cleaning {}: {} bars missing in {} sessions ({} whole sessions), {} half days",
                    rep.timeframe, rep.missing_bars, rep.sessions, rep.missing_sessions, rep.half_days)
    for s in rep.unadjusted_splits:
        logger.warning("Possible unadjusted {} split on {:%Y-%m-%d}: prices before it are not "
                       "comparable", s.label, s.time.tz_convert(NY))
