"""The chart's data as numpy arrays, kept up to date by appending.

The chart used to rebuild an array from every ``Bar`` object on each new bar,
which costs O(history) Python work per update and stalls the GUI thread once
history reaches 100k candles. :class:`BarSeries` keeps growable column buffers
instead: a new bar is one row written, and a display timeframe (15m, 30m out
of 5m bars) is aggregated incrementally, re-doing only the last, possibly
partial, bucket. The forming bar is merged into a view without copying the
history. The indicator helpers work on a slice (the visible range plus a
warm-up), so their cost follows what is on screen.

No Qt here: it is plain numpy, testable without an event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from app.engine.types import Bar

COLUMNS = 5  # open, high, low, close, volume
O, H, L, C, V = range(COLUMNS)  # noqa: E741 - the OHLCV column names, as every chart library spells them


@dataclass
class Candles:
    """A display view: ``ohlcv`` rows and bucket start times (epoch seconds).

    ``first`` maps each row to the index of the first base bar in it, which is
    how markers placed on base bars find their candle."""

    ohlcv: np.ndarray
    times: np.ndarray
    first: np.ndarray

    def __len__(self) -> int:
        return len(self.ohlcv)


class _Buffer:
    """Rows of float columns plus an int64 time column, with spare capacity."""

    def __init__(self, capacity: int = 1024) -> None:
        self.data = np.empty((capacity, COLUMNS))
        self.times = np.empty(capacity, dtype=np.int64)
        self.first = np.empty(capacity, dtype=np.int64)
        self.n = 0

    def reserve(self, n: int) -> None:
        if n <= len(self.data):
            return
        cap = max(n, 2 * len(self.data))
        for name in ("data", "times", "first"):
            old = getattr(self, name)
            new = np.empty((cap, *old.shape[1:]), dtype=old.dtype)
            new[: self.n] = old[: self.n]
            setattr(self, name, new)

    def view(self, extra: int = 0) -> Candles:
        m = self.n + extra
        return Candles(self.data[:m], self.times[:m], self.first[:m])


class BarSeries:
    """Closed bars as arrays, with cached aggregated views per factor."""

    def __init__(self, bar_seconds: int = 300) -> None:
        self.bar_seconds = bar_seconds
        self.base = _Buffer()
        self._agg: dict[int, _Buffer] = {}

    def __len__(self) -> int:
        return self.base.n

    def reset(self, bars: Sequence[Bar]) -> None:
        self.base = _Buffer(max(1024, 2 * len(bars)))
        self._agg = {}
        self.append(bars)

    def append(self, bars: Iterable[Bar]) -> None:
        rows = [(b.open, b.high, b.low, b.close, b.volume, b.time.timestamp()) for b in bars]
        if not rows:
            return
        arr = np.asarray(rows, dtype=float)
        b, n, k = self.base, self.base.n, len(rows)
        b.reserve(n + k + 1)  # +1: room for the forming bar in a view
        b.data[n:n + k] = arr[:, :COLUMNS]
        b.times[n:n + k] = arr[:, COLUMNS].astype(np.int64)
        b.first[n:n + k] = np.arange(n, n + k)
        b.n = n + k

    def index_of(self, epoch: int) -> int | None:
        """The base index of the bar starting at ``epoch``, if there is one."""
        t = self.base.times[: self.base.n]
        i = int(np.searchsorted(t, epoch))
        return i if i < len(t) and t[i] == epoch else None

    def view(self, factor: int = 1, forming: Bar | None = None) -> Candles:
        """Candles at ``factor`` x the base timeframe, the forming bar merged in."""
        buf = self.base if factor == 1 else self._aggregate(factor)
        if forming is None:
            return buf.view()
        row = np.array([forming.open, forming.high, forming.low, forming.close, forming.volume])
        t = int(forming.time.timestamp())
        bucket = t - t % (self.bar_seconds * factor)
        if factor > 1 and buf.n and buf.times[buf.n - 1] == bucket:
            # The forming bar belongs to the last bucket: merge it in place. The
            # next _aggregate call rebuilds that bucket from closed bars anyway.
            last = buf.data[buf.n - 1]
            last[H], last[L] = max(last[H], row[H]), min(last[L], row[L])
            last[C], last[V] = row[C], last[V] + row[V]
            return buf.view()
        buf.reserve(buf.n + 1)
        buf.data[buf.n], buf.times[buf.n], buf.first[buf.n] = row, bucket, self.base.n
        return buf.view(extra=1)

    def _aggregate(self, factor: int) -> _Buffer:
        agg = self._agg.setdefault(factor, _Buffer())
        base, span = self.base, self.bar_seconds * factor
        start = int(agg.first[agg.n - 1]) if agg.n else 0  # redo the last (maybe partial) bucket
        agg.n = max(agg.n - 1, 0)
        if start >= base.n:
            return agg
        times = base.times[start:base.n]
        buckets = times - times % span
        cut = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
        d = base.data[start:base.n]
        k = len(cut)
        agg.reserve(agg.n + k + 1)
        out = agg.data[agg.n:agg.n + k]
        out[:, O] = d[cut, O]
        out[:, H] = np.maximum.reduceat(d[:, H], cut)
        out[:, L] = np.minimum.reduceat(d[:, L], cut)
        out[:, C] = d[np.r_[cut[1:] - 1, len(d) - 1], C]
        out[:, V] = np.add.reduceat(d[:, V], cut)
        agg.times[agg.n:agg.n + k] = buckets[cut]
        agg.first[agg.n:agg.n + k] = cut + start
        agg.n += k
        return agg


def display_index(candles: Candles, base_index: np.ndarray | int) -> np.ndarray:
    """Which candle of a view holds each base bar index."""
    return np.searchsorted(candles.first, base_index, side="right") - 1


# ----------------------------------------------------------------- indicators
def sma(x: np.ndarray, n: int) -> np.ndarray:
    """Simple moving average; NaN until ``n`` values are in."""
    out = np.full(len(x), np.nan)
    if len(x) >= n:
        c = np.cumsum(np.r_[0.0, x])
        out[n - 1:] = (c[n:] - c[:-n]) / n
    return out


def ema(x: np.ndarray, n: int, chunk: int = 256) -> np.ndarray:
    """Exponential moving average (alpha = 2/(n+1), seeded with the first value).

    Vectorised in chunks: inside a chunk y_j = d_j (y_prev + a * cumsum(x_i / d_i))
    with d_j = (1-a)^(j+1); chunking keeps 1/d_i far from overflow."""
    out = np.empty(len(x))
    if not len(x):
        return out
    a = 2.0 / (n + 1)
    prev = float(x[0])
    for s in range(0, len(x), chunk):
        part = x[s:s + chunk]
        d = (1.0 - a) ** np.arange(1, len(part) + 1)
        out[s:s + len(part)] = d * (prev + a * np.cumsum(part / d))
        prev = float(out[s + len(part) - 1])
    return out


def bollinger(x: np.ndarray, n: int = 20, k: float = 2.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Middle (SMA n), upper and lower bands at ``k`` population standard deviations."""
    mid = sma(x, n)
    std = np.full(len(x), np.nan)
    if len(x) >= n:  # exact windows, not E[x^2] - E[x]^2 (which cancels badly)
        std[n - 1:] = np.lib.stride_tricks.sliding_window_view(x, n).std(axis=1)
    return mid, mid + k * std, mid - k * std
