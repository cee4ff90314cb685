"""Market context: what the market did around a symbol's bar, and whether it is calm.

The market here is the watchlist itself: at each bar time, the mean of the 1-bar log returns
of the symbols whose bar closed then (each from its own previous bar). The desk's feed carries
the watchlist and nothing else, so this is the market the live models can see exactly as they
were trained on it; SPY or QQQ count when they are on the watchlist. A one-symbol watchlist is
its own market: its market features repeat its own and the relative move is 0.

The features, strictly causal (a bar's row reads bars up to its own):

* ``vol_ratio``: log of the symbol's 10-bar over its 40-bar volatility (the regime: > 0 when
  the last hour or two is rougher than usual);
* ``mkt_ret_1``, ``mkt_ret_6``: the market's move over the last bar and the last 6;
* ``mkt_vol_ratio``: the market's own volatility regime;
* ``rel_ret_6``: the symbol's 6-bar move less the market's.

:func:`context_features` computes them from arrays, for a whole history (training) and for the
newest rows of the live window alike, so the two paths share one formula.
:class:`MarketTape` is the live side: the bot records every closed bar, the models read the
market's returns at their window's bar times.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from app.engine.types import Bar

CONTEXT_FEATURES: list[str] = ["vol_ratio", "mkt_ret_1", "mkt_ret_6", "mkt_vol_ratio", "rel_ret_6"]
SHORT_VOL, LONG_VOL, MOVE = 10, 40, 6
TAPE_TIMES = 2_000  # bar times the live tape keeps (the live window is 400 bars)


def market_returns(closes: dict[str, pd.Series]) -> pd.Series:
    """The market's 1-bar log return at every bar time of ``closes`` (one close series per
    symbol, indexed by bar time): the mean over the symbols with a bar then of their return
    since their own previous bar. A symbol's first bar has no return and counts for nothing."""
    parts = [np.log(c.astype("float64")).diff() for c in closes.values()]
    if not parts:
        return pd.Series(dtype="float64")
    return pd.concat(parts).groupby(level=0).mean().sort_index()


def context_features(close: np.ndarray, market: np.ndarray, rows: int | None = None) -> np.ndarray:
    """The :data:`CONTEXT_FEATURES` of the newest ``rows`` bars (all of them by default), one
    column each. ``close`` is the symbol's closes, oldest first; ``market`` the market's 1-bar
    log return at each of those bars (NaN where unknown). A row whose windows hold a NaN is NaN."""
    close = np.asarray(close, dtype="float64")
    market = np.asarray(market, dtype="float64")
    n = len(close)
    k = n if rows is None else max(0, min(int(rows), n))
    out = np.full((k, len(CONTEXT_FEATURES)), np.nan)
    if k == 0:
        return out
    with np.errstate(divide="ignore", invalid="ignore"):
        own = np.full(n, np.nan)
        own[1:] = np.diff(np.log(close))
        own6 = _rolling(own, MOVE, k, "sum")
        mkt6 = _rolling(market, MOVE, k, "sum")
        out[:, 0] = _vol_ratio(own, k)
        out[:, 1] = market[n - k:]
        out[:, 2] = mkt6
        out[:, 3] = _vol_ratio(market, k)
        out[:, 4] = own6 - mkt6
    out[~np.isfinite(out)] = np.nan
    return out


def _vol_ratio(r: np.ndarray, k: int) -> np.ndarray:
    return np.asarray(np.log(_rolling(r, SHORT_VOL, k, "std") / _rolling(r, LONG_VOL, k, "std")))


def _rolling(x: np.ndarray, window: int, k: int, how: str) -> np.ndarray:
    """A trailing ``window``-bar sum or population std for the newest ``k`` rows (NaN where the
    window is not full or holds a NaN)."""
    n = len(x)
    out = np.full(k, np.nan)
    m = min(k, n - window + 1)  # tail rows with a full window
    if m <= 0:
        return out
    win = np.lib.stride_tricks.sliding_window_view(x[n - m - window + 1:], window)
    out[k - m:] = win.sum(axis=1) if how == "sum" else win.std(axis=1)
    return out


class MarketTape:
    """Each symbol's 1-bar return at each bar time, as the bars close live; a model reads the
    market it learned (the mean over its training symbols) from it.

    The bot records every closed bar of every symbol before any model speaks for that bar
    time, so a model reading bar ``t`` sees the whole watchlist's move at ``t``, as in
    training. A bar older than its symbol's last one (a replay started over, a symbol put back
    on the watchlist and warmed up) starts that symbol's returns afresh and leaves the others'
    alone; a bar seen before is recorded once.
    """

    RECENT_TIMES = 3  # a symbol with no bar in the newest few bar times has left the desk

    def __init__(self, size: int = TAPE_TIMES) -> None:
        self.size = int(size)
        self._last: dict[str, tuple[int, float]] = {}
        self._moves: dict[int, dict[str, float]] = {}  # epoch s -> symbol -> its 1-bar log return
        self._recent: list[int] = []  # the newest few distinct bar times, oldest first

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols with a bar among the newest few bar times: the desk's market now."""
        if not self._recent:
            return ()
        return tuple(sorted(s for s, (t, _) in self._last.items() if t >= self._recent[0]))

    def record(self, bar: Bar) -> None:
        t = int(bar.time.timestamp())
        prev = self._last.get(bar.symbol)
        if prev is not None and t <= prev[0]:
            if t == prev[0]:
                return  # the same bar again
            prev = None  # back in time: this symbol's returns start again from here
            if self._recent and t < self._recent[0]:
                self._recent = []  # the desk's newest bar times are found again (a replay starting over)
        if prev is not None and prev[1] > 0 and bar.close > 0:
            self._moves.setdefault(t, {})[bar.symbol] = math.log(bar.close / prev[1])
            if len(self._moves) > self.size * 5 // 4:  # trimmed in batches, the oldest times first
                for old in sorted(self._moves)[: len(self._moves) - self.size]:
                    del self._moves[old]
        self._last[bar.symbol] = (t, float(bar.close))
        if not self._recent or t > self._recent[-1]:
            self._recent = [*self._recent, t][-self.RECENT_TIMES:]
        elif t not in self._recent and t > self._recent[0]:
            self._recent = sorted([*self._recent, t])[-self.RECENT_TIMES:]

    def returns(self, times: np.ndarray, members: Sequence[str] | None = None) -> np.ndarray:
        """The market return at each of ``times`` (epoch seconds): the mean over ``members``
        (every symbol when None) with a return then; NaN where none has one."""
        want = None if members is None else {m.upper() for m in members}
        out = np.full(len(times), np.nan)
        for i, t in enumerate(np.asarray(times, dtype="float64")):
            moves = self._moves.get(int(t))
            if not moves:
                continue
            vals = [v for s, v in moves.items() if want is None or s.upper() in want]
            if vals:
                out[i] = sum(vals) / len(vals)
        return out
