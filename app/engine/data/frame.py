"""The one shape bars take inside the data layer: a canonical OHLCV DataFrame.

Every source (CSV, yfinance, Alpaca, the cache, the simulated market) returns
this shape, so cleaning, features and storage are written once. The index is
a UTC, timezone-aware ``DatetimeIndex`` of bar *start* times named ``time``;
the columns are float ``open, high, low, close, volume``. Two optional
columns travel with it: ``adj_close`` (only between import and cleaning,
where it is used to adjust for splits) and the boolean ``zero_volume`` flag
that cleaning adds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from app.engine.types import Bar, timeframe_of

OHLCV: tuple[str, ...] = ("open", "high", "low", "close", "volume")
PRICES: tuple[str, ...] = ("open", "high", "low", "close")
MAX_PRICE = 1e7  # above this a "price" is a mis-parsed number (or a bad adjustment), not a stock
ADJ_CLOSE = "adj_close"
ZERO_VOLUME = "zero_volume"
INDEX_NAME = "time"
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.\-^=]{0,11}")


class DataError(ValueError):
    """Bad input or an unusable source; the message is one line a user can act on."""


def check_timeframe(timeframe: str) -> int:
    """Seconds per bar, or a :class:`DataError` naming the valid choices."""
    try:
        return timeframe_of(timeframe).seconds
    except ValueError as exc:
        raise DataError(str(exc)) from None


def normalize_symbol(symbol: str) -> str:
    """Upper-case ticker, or a :class:`DataError`: here, not in the service, because the CSV
    reader checks a file's symbol column with the same rule the command line uses."""
    s = symbol.strip().upper()
    if not _SYMBOL.fullmatch(s):
        raise DataError(f"{symbol!r} is not a ticker symbol (letters, digits, . or -, up to 12)")
    return s


def is_intraday(timeframe: str) -> bool:
    check_timeframe(timeframe)
    return timeframe_of(timeframe).intraday


def empty_frame() -> pd.DataFrame:
    """A zero-row frame with the canonical columns and index type."""
    idx = pd.DatetimeIndex([], tz="UTC", name=INDEX_NAME)
    return pd.DataFrame({c: pd.Series([], dtype="float64", index=idx) for c in OHLCV}, index=idx)


def make_frame(times: Iterable[object] | pd.DatetimeIndex, open_: object, high: object,
               low: object, close: object, volume: object) -> pd.DataFrame:
    """Build a canonical frame from array-likes; naive times are taken as UTC."""
    idx = pd.DatetimeIndex(times)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    idx.name = INDEX_NAME
    data = {
        "open": np.asarray(open_, dtype="float64"),
        "high": np.asarray(high, dtype="float64"),
        "low": np.asarray(low, dtype="float64"),
        "close": np.asarray(close, dtype="float64"),
        "volume": np.asarray(volume, dtype="float64"),
    }
    return pd.DataFrame(data, index=idx)


def normalize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Coerce an OHLCV-ish frame into the canonical dtypes and index (no row changes).

    Sources differ in index resolution (ns, us, s) and column dtype; making
    them agree here means equality checks and concatenation just work.
    """
    missing = [c for c in OHLCV if c not in frame.columns]
    if missing:
        raise DataError(f"frame lacks columns: {', '.join(missing)}")
    idx = pd.DatetimeIndex(frame.index)
    idx = idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")
    idx = idx.as_unit("ns")
    idx.name = INDEX_NAME
    keep = list(OHLCV) + [c for c in (ADJ_CLOSE, ZERO_VOLUME) if c in frame.columns]
    out = frame.loc[:, keep].copy()
    out.index = idx
    for c in keep:
        out[c] = out[c].astype(bool if c == ZERO_VOLUME else "float64")
    return out


def bars_to_frame(bars: Iterable[Bar]) -> pd.DataFrame:
    """list[Bar] -> canonical frame (the symbol is dropped: a frame is one symbol)."""
    rows = list(bars)
    if not rows:
        return empty_frame()
    return make_frame(
        [b.time for b in rows], [b.open for b in rows], [b.high for b in rows],
        [b.low for b in rows], [b.close for b in rows], [b.volume for b in rows],
    ).pipe(normalize_frame)


def frame_to_bars(frame: pd.DataFrame, symbol: str) -> list[Bar]:
    """Canonical frame -> list[Bar] with timezone-aware UTC times."""
    if frame.empty:
        return []
    secs = epoch_seconds(frame.index).tolist()  # Python numbers: NumPy scalars cost a conversion each
    cols = [frame[c].to_numpy(dtype="float64").tolist() for c in OHLCV]
    return [Bar(symbol, datetime.fromtimestamp(t, UTC), o, h, lo, c, v)
            for t, o, h, lo, c, v in zip(secs, *cols, strict=True)]


def epoch_seconds(index: pd.DatetimeIndex) -> np.ndarray:
    """Whole epoch seconds of a tz-aware index, whatever its resolution (pandas 3 uses us)."""
    idx = pd.DatetimeIndex(index)
    if idx.tz is None:
        idx = idx.tz_localize("UTC")
    return np.asarray(idx.as_unit("ns").asi8 // 1_000_000_000)


def from_epoch_seconds(secs: np.ndarray | list[int]) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(pd.to_datetime(np.asarray(secs, dtype="int64"), unit="s", utc=True))
    idx = idx.as_unit("ns")
    idx.name = INDEX_NAME
    return idx
