"""Getting bars into the local cache: CSV import and incremental fetching.

Everything that reaches the database passes through :func:`clean` first, and
storage is keyed by (symbol, timeframe, bar start), so importing a file twice
or fetching an overlapping range never stores a bar twice. Fetching asks the
source only for what the cache lacks: that keeps yfinance's rate limit and
Alpaca's quota for new bars.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from loguru import logger

from app.engine.clock import MarketCalendar
from app.engine.data.cleaning import SPIKE, CleanReport, CleanResult, clean
from app.engine.data.csv_import import ImportResult, column_symbols, read_csv, read_csv_each
from app.engine.data.frame import (
    DataError,
    check_timeframe,
    epoch_seconds,
    frame_to_bars,
)
from app.engine.data.frame import normalize_symbol as normalize_symbol  # its old home; callers import it here
from app.engine.data.sources import CacheSource, MarketDataSource
from app.engine.storage import BarRepository, Storage
from app.engine.types import TIMEFRAMES, Bar

# history a fetch asks for when the user names no start, per timeframe
DEFAULT_FETCH_DAYS: dict[str, int] = {"1m": 6, "5m": 58, "15m": 58, "1h": 700, "1d": 5 * 365}


_NAMED = re.compile(r"([A-Z][A-Z0-9.]{0,9})[_-](" + "|".join(TIMEFRAMES) + r")(?:[_.-]|$)")  # upper-case tickers only


_TICKER_ONLY = re.compile(r"([A-Z][A-Z0-9.]{0,9})\.csv", re.IGNORECASE)


def named_in_file(path: str | Path) -> tuple[str | None, str | None]:
    """(symbol, timeframe) a file's name says, as the app and most exports name them:
    ``SPY_5m_2024-03-26_2025-04-02.csv`` -> ("SPY", "5m"); ``SPY.csv`` -> ("SPY", None) (an
    upper-case name only: ``bars.csv`` names nothing); (None, None) when it does not."""
    name = Path(path).name
    m = _NAMED.match(name)
    if m is not None:
        return m.group(1).upper(), m.group(2)
    only = _TICKER_ONLY.fullmatch(name)
    stem = name[: -len(".csv")] if only else ""
    return (stem, None) if only and stem == stem.upper() else (None, None)


def symbols_in_file(path: str | Path) -> list[str]:
    """The tickers a CSV of bars holds, so a caller can offer or check them before
    loading: its symbol column's (in order of appearance), else the one its name
    says, else none. Reads the file: a file that is not bars raises DataError."""
    held = column_symbols(path)
    if held:
        return held
    named = named_in_file(path)[0]
    return [named] if named else []


def infer_timeframe(frame: pd.DataFrame) -> str | None:
    """The timeframe the bars' spacing says they are, or None when it cannot tell."""
    if len(frame) < 3:
        return None
    secs = epoch_seconds(frame.index)
    if (np.diff(secs) < 0).any():  # sorted already in nearly every file: no sort paid
        secs = np.sort(secs)
    gaps = np.diff(secs)
    gaps = gaps[(gaps > 0) & (gaps <= 86400)]  # overnight and weekend jumps say nothing (nor duplicates)
    if len(gaps) == 0:
        return None
    typical = int(np.argmax(np.bincount(gaps)))  # the commonest spacing
    return next((tf.name for tf in TIMEFRAMES.values() if tf.seconds == typical), None)


@dataclass
class ImportSummary:
    symbol: str
    timeframe: str
    path: str
    read: int  # data rows in the file
    accepted: int  # bars stored after cleaning
    rejected: int  # unusable rows: parse failures plus impossible bars
    reasons: Counter[str]
    examples: dict[str, list[int]]
    report: CleanReport
    new: int  # bars the cache did not have before
    first: datetime | None
    last: datetime | None

    def lines(self) -> list[str]:
        span = f", {self.first:%Y-%m-%d} .. {self.last:%Y-%m-%d}" if self.first and self.last else ""
        out = [f"imported {self.symbol} {self.timeframe} from {Path(self.path).name}",
               f"rows read: {self.read}, accepted: {self.accepted}, rejected: {self.rejected}"]
        for reason, n in self.reasons.most_common():
            lines = ", ".join(str(x) for x in self.examples.get(reason, []))
            out.append(f"  rejected - {reason}: {n}" + (f" (lines {lines})" if lines else ""))
        out += [f"  cleaning - {line}" for line in self.report.lines(include_rejects=False)]
        out.append(f"stored: {self.accepted} bars ({self.new} new){span}")
        return out


@dataclass
class FetchSummary:
    symbol: str
    timeframe: str
    source: str
    ranges: list[tuple[datetime, datetime]] = field(default_factory=list)
    received: int = 0
    stored: int = 0
    new: int = 0
    reports: list[CleanReport] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"fetched {self.symbol} {self.timeframe} from {self.source}"]
        if not self.ranges:
            out.append("the cache already covers the requested range; nothing to fetch")
        for a, b in self.ranges:
            out.append(f"  asked for {a:%Y-%m-%d %H:%M} .. {b:%Y-%m-%d %H:%M} UTC")
        out.append(f"received: {self.received}, stored: {self.stored} ({self.new} new)")
        for rep in self.reports:
            out += [f"  cleaning - {line}" for line in rep.lines()]
        return out


def read_clean(path: str | Path, timeframe: str, calendar: MarketCalendar | None = None,
               keep_extended: bool = False, hint: str = "use",
               symbol: str | None = None, spike: float = SPIKE) -> tuple[ImportResult, CleanResult]:
    """Read a CSV of bars and clean it: the one way every command loads a file.
    ``symbol`` picks one stock's rows from a file with a symbol column."""
    check_timeframe(timeframe)
    result = read_csv(path, symbol)
    return result, _clean_checked(result, path, timeframe, calendar, keep_extended, hint, spike)


def _clean_checked(result: ImportResult, path: str | Path, timeframe: str, calendar: MarketCalendar | None,
                   keep_extended: bool, hint: str, spike: float = SPIKE) -> CleanResult:
    """A file holding bars of another spacing is refused, saying which it holds."""
    seen = infer_timeframe(result.frame)
    if seen is not None and seen != timeframe:
        whose = f" of {result.symbol}" if result.symbol else ""
        fix = hint.format(tf=seen) if "{tf}" in hint else f"{hint} --timeframe {seen}"
        raise DataError(f"{Path(path).name} holds {seen} bars{whose}, not {timeframe}: {fix}")
    return clean(result.frame, timeframe, calendar, keep_extended, spike)


def load_bars(path: str | Path, symbol: str, timeframe: str,
              keep_extended: bool = False, hint: str = "use") -> tuple[list[Bar], ImportResult, CleanReport]:
    """Clean bars from a CSV for a replay or a backtest (nothing is cached), with what the
    reading and the cleaning did. From a file with a symbol column, only ``symbol``'s rows;
    one without them is refused naming those it holds. ``hint`` tells how to ask for another
    timeframe ("{tf}": the one the file holds)."""
    result, cleaned = read_clean(path, timeframe, keep_extended=keep_extended, symbol=symbol, hint=hint)
    bars = frame_to_bars(cleaned.frame, normalize_symbol(symbol))
    if not bars:
        raise DataError(f"{Path(path).name} has no usable bars after cleaning")
    return bars, result, cleaned.report


def import_file(storage: Storage, path: str | Path, timeframe: str, symbol: str | None = None,
                rename: bool = False, calendar: MarketCalendar | None = None,
                keep_extended: bool = False, replace: bool = False, spike: float = SPIKE,
                hint: str = "import it with") -> list[ImportSummary]:
    """Import a CSV as ``data import`` does: each stock of a symbol column under its own
    ticker, else the whole file under ``symbol`` or the one its name says. Bars the file
    calls SPY are never stored as PLTR unless ``rename``; every part is read and cleaned
    before any is stored, so a refused file leaves the cache as it was. ``hint``: how to ask
    for the timeframe the file holds ("{tf}"), in the words of the command line or the window."""
    wanted = normalize_symbol(symbol) if symbol else None
    check_timeframe(timeframe)
    parts = read_csv_each(path)
    held = [p.symbol for p in parts if p.symbol is not None]
    name, named = Path(path).name, named_in_file(path)[0]
    targets: dict[str | None, str] = (_column_targets(name, held, named, wanted, rename) if held
                                      else {None: _name_target(name, named, wanted, rename)})
    return _store(storage, path, timeframe, parts, targets, calendar, keep_extended, replace, spike, hint)


def _name_target(name: str, named: str | None, wanted: str | None, rename: bool) -> str:
    """The ticker for a file without a symbol column: as given, else as its name says."""
    if wanted is None:
        if named is None:
            raise DataError(f"cannot tell which ticker {name} holds: name it with --symbol "
                            "(or name the file like PLTR_5m_....csv)")
        return named
    if named is not None and named != wanted and not rename:
        raise DataError(f"{name} says {named}, not {wanted}: import it with "
                        f"--symbol {named}, or add --rename to store it as {wanted}")
    return wanted


def _column_targets(name: str, held: list[str], named: str | None, wanted: str | None,
                    rename: bool) -> dict[str | None, str]:
    """{ticker in the symbol column: ticker to store it under}. The content beats the
    name; only the user's word (``wanted``, with ``rename``) beats the content."""
    listed = ", ".join(held)
    if wanted is None:
        if named is not None and named not in held:
            fix = (f"say which with --symbol {held[0]}, or --symbol {named} --rename" if len(held) == 1
                   else "rename the file if its column is right")
            raise DataError(f"{name}'s name says {named} but its symbol column says {listed}: {fix}")
        return {s: s for s in held}
    if held == [wanted]:
        return {wanted: wanted}
    if len(held) > 1:
        why = ("--rename can store only a one-symbol file as" if rename
               else "import it without --symbol to store each under its own ticker, not all as")
        raise DataError(f"{name} holds several symbols ({listed}): {why} {wanted}")
    if not rename:
        raise DataError(f"{name}'s symbol column says {held[0]}, not {wanted}: import it with "
                        f"--symbol {held[0]}, or add --rename to store it as {wanted}")
    return {held[0]: wanted}


def _store(storage: Storage, path: str | Path, timeframe: str, parts: list[ImportResult],
           targets: dict[str | None, str], calendar: MarketCalendar | None,
           keep_extended: bool, replace: bool = False, spike: float = SPIKE,
           hint: str = "import it with") -> list[ImportSummary]:
    """Clean every part first, then store: one part's refusal stores nothing."""
    ready = [(targets[r.symbol], r, _clean_checked(r, path, timeframe, calendar, keep_extended, hint, spike))
             for r in parts if r.symbol in targets]
    if not replace:
        for symbol, _, cleaned in ready:
            _check_overlap(storage, path, symbol, timeframe, cleaned.frame)
    return [_save(storage, path, symbol, timeframe, r, cleaned) for symbol, r, cleaned in ready]


OVERWRITE_LIMIT = 0.10  # a median close this far from the cached bars' at the same times: not the same stock's


def _check_overlap(storage: Storage, path: str | Path, symbol: str, timeframe: str, frame: pd.DataFrame) -> None:
    """Importing over cached bars replaces them. Bars whose closes are far from the cached
    ones at the same times are another stock's (or differently adjusted): refused, so a
    mislabelled file never overwrites good history unless the user says ``replace``."""
    if frame.empty:
        return
    cached = BarRepository(storage).load_frame(symbol, timeframe, frame.index[0].to_pydatetime(),
                                               frame.index[-1].to_pydatetime() + timedelta(seconds=1))
    common = frame.index.intersection(cached.index)
    if len(common) == 0:
        return
    mine, theirs = frame.loc[common, "close"].to_numpy(), cached.loc[common, "close"].to_numpy()
    off = np.abs(mine / theirs - 1.0)
    if float(np.median(off)) <= OVERWRITE_LIMIT:
        return
    k = int(np.argmax(off))
    raise DataError(f"{Path(path).name}: its bars differ from the cached {symbol} {timeframe} bars at the same "
                    f"times by a median of {float(np.median(off)):.0%} (at {common[k]:%Y-%m-%d %H:%M}: cached "
                    f"{theirs[k]:.2f}, file {mine[k]:.2f}); another stock's, or adjusted differently? Nothing "
                    "was stored; --replace overwrites the cached bars")


def _save(storage: Storage, path: str | Path, symbol: str, timeframe: str, result: ImportResult,
          cleaned: CleanResult) -> ImportSummary:
    """Cache one stock's cleaned bars and say what was kept, dropped and new."""
    rep = cleaned.report
    repo = BarRepository(storage)
    before = repo.count(symbol, timeframe)
    repo.upsert_frame(symbol, timeframe, cleaned.frame, source="csv")
    new = repo.count(symbol, timeframe) - before
    reasons = Counter(result.reasons)
    for n, why in ((rep.bad_prices, "missing, zero or negative price"),
                   (rep.bad_high_low, "high/low outside open/close"),
                   (rep.spikes, f"price spike (a bad print: x{rep.spike:g} off the bars around it)"),
                   (rep.bad_volume, "negative volume")):
        if n:
            reasons[why] += n
    frame = cleaned.frame
    summary = ImportSummary(
        symbol, timeframe, str(path), read=result.accepted + result.rejected,
        accepted=len(frame), rejected=result.rejected + rep.bad_prices + rep.bad_high_low + rep.bad_volume + rep.spikes,
        reasons=reasons, examples=dict(result.examples), report=rep, new=new,
        first=frame.index[0].to_pydatetime() if len(frame) else None,
        last=frame.index[-1].to_pydatetime() if len(frame) else None)
    logger.info("Imported {} {} from {}: {} accepted, {} rejected, {} new",
                symbol, timeframe, Path(path).name, summary.accepted, summary.rejected, new)
    return summary


def missing_ranges(repo: BarRepository, symbol: str, timeframe: str, start: datetime,
                   end: datetime) -> list[tuple[datetime, datetime]]:
    """What the cache lacks of [start, end): history before its first bar, and
    everything from its last bar on. The last cached bar is asked for again
    because it may have been stored while it was still forming."""
    first = repo.first_time(symbol, timeframe)
    last = repo.last_time(symbol, timeframe)
    if first is None or last is None:
        return [(start, end)]
    out = []
    if start < first:
        out.append((start, min(first, end)))
    tail = max(start, last)
    if tail < end:
        out.append((tail, end))
    return out


def fetch_and_cache(storage: Storage, source: MarketDataSource, symbol: str, timeframe: str,
                    start: datetime, end: datetime, calendar: MarketCalendar | None = None
                    ) -> FetchSummary:
    """Fetch only what the cache is missing, clean it, and store it."""
    symbol = normalize_symbol(symbol)
    check_timeframe(timeframe)
    if start.tzinfo is None or end.tzinfo is None:
        raise DataError("start and end must be timezone-aware")
    repo = BarRepository(storage)
    summary = FetchSummary(symbol, timeframe, source.name)
    if isinstance(source, CacheSource):
        return summary  # the cache is the destination; there is nothing to fetch from it
    summary.ranges = missing_ranges(repo, symbol, timeframe, start, end)
    for a, b in summary.ranges:
        frame = source.fetch(symbol, timeframe, a, b)
        summary.received += len(frame)
        if frame.empty:
            continue
        cleaned = clean(frame, timeframe, calendar)
        before = repo.count(symbol, timeframe)
        summary.stored += repo.upsert_frame(symbol, timeframe, cleaned.frame, source=source.name)
        summary.new += repo.count(symbol, timeframe) - before
        summary.reports.append(cleaned.report)
    logger.info("Fetched {} {} from {}: {} received, {} new", symbol, timeframe, source.name,
                summary.received, summary.new)
    return summary


def default_start(timeframe: str, end: datetime) -> datetime:
    """How much history a fetch asks for when the user names no start: what Yahoo
    still serves for intraday bars, five years of daily bars."""
    return end - timedelta(days=DEFAULT_FETCH_DAYS[timeframe])
