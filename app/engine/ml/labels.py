"""What the models learn: whether the bot's own trade, entered after a bar, made money.

Triple-barrier labels (Lopez de Prado, *Advances in Financial Machine Learning*, ch. 3)
drawn with the bot's exits rather than generic ones. For a signal at bar ``t``'s close the
entry fills at bar ``t+1``'s open; from there the trade is walked bar by bar with the rules
the live desk applies:

* the **initial stop** ``stop_pct`` below the entry; a bar that opens below the stop fills
  at its open (a gap), otherwise at the stop;
* the **trailing stop**: once a bar's high has reached ``trail_start_pct`` above the entry,
  the stop follows the highest high by ``trail_pct`` (raised after the bar that made the
  high, never within it: the order of a bar's high and low is unknown, so the stop is
  never credited with a high it may have come after);
* **take-profit** when set (a stop and a target in one bar count as the stop: the
  pessimistic reading);
* the **end-of-day flatten**: the trade is closed at the close of the last bar that ends
  ``flatten_minutes`` before the session's end, so no label crosses the close. No entry is
  labelled within ``no_entry_minutes`` of the end, nor across a session boundary, as the
  desk opens none there. Daily bars: the desk flattens only intraday positions, so a daily
  trade runs from the next day's open until one of the exits above ends it (a trade the
  data ends before resolving has no label);
* optionally a time stop of ``max_bars`` bars (the vertical barrier), for research; the
  desk holds to its exits.

The label is 1 when the trade's return after costs (``cost_bps``: slippage both ways plus
commission) is above 0, else 0, and the return is kept beside it: the edge gate scores
trades in basis points, not hit rates. A label is NaN where the trade cannot be walked to
its end within the data.

A label reads prices after its bar by construction; what must be causal is what the models
*see* (the features, see :mod:`app.engine.data.features`), and ``exit_pos`` says up to
which bar each label reads, so the walk-forward can purge every training label that reads
into a test block.

The **primary rule** (:func:`primary_signal`) is the transparent direction the models
meta-label: the rules model's call, the 10-bar SMA above the 20-bar SMA at the bar's close.
The learned models say how likely *that* trade is to end profitable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from app.engine.clock import NY
from app.engine.data.cleaning import default_calendar

if TYPE_CHECKING:
    from app.engine.settings import Settings

PRIMARY_FAST, PRIMARY_SLOW = 10, 20  # the rules model's averages (strategy/rules.py)
PRIMARY_RULE = "SMA10 above SMA20 (the rules model's buy)"
LABELS = "trade"  # what a saved model's P means: the bot's trade ended profitable after costs
TIE = 1e-9  # as the SMA cross: averages within this fraction of the price are a tie, not a call


@dataclass(frozen=True)
class TradeRules:
    """The exits and costs a label's trade is walked with (fractions unless said otherwise)."""

    stop_pct: float = 0.03
    trail_start_pct: float = 0.05
    trail_pct: float = 0.02
    take_profit_pct: float = 0.0  # 0: off
    cost_bps: float = 4.0  # round trip's slippage, both ways
    commission_per_share: float = 0.0  # charged on the way in and out: a share of each trade's own price
    max_bars: int | None = None  # a time stop in bars; None: held to the exits above
    no_entry_minutes: int = 15
    flatten_minutes: int = 5

    @classmethod
    def from_settings(cls, settings: Settings, max_bars: int | None = None) -> TradeRules:
        """The desk's exits and costs."""
        return cls(settings.stop_loss_pct, settings.trailing_start_pct, settings.trailing_pct,
                   settings.take_profit_pct, round(2 * settings.slippage_bps, 2), settings.commission_per_share,
                   max_bars,
                   settings.no_entry_minutes_before_close if settings.eod_flatten else 0,
                   settings.flatten_minutes_before_close if settings.eod_flatten else 0)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"stop_pct": self.stop_pct, "trail_start_pct": self.trail_start_pct,
                "trail_pct": self.trail_pct, "take_profit_pct": self.take_profit_pct,
                "cost_bps": self.cost_bps, "commission_per_share": self.commission_per_share,
                "max_bars": self.max_bars,
                "no_entry_minutes": self.no_entry_minutes, "flatten_minutes": self.flatten_minutes}


@dataclass(frozen=True)
class Outcomes:
    """Per bar: ``win`` (1/0/NaN), ``ret`` (the trade's return after costs, a fraction, NaN
    where unknown) and ``exit_pos`` (the bar the trade ended in; -1 where unknown)."""

    win: np.ndarray
    ret: np.ndarray
    exit_pos: np.ndarray

    @property
    def reach(self) -> int:
        """The most bars any label reads past its own bar (the purge a test block needs)."""
        ok = self.exit_pos >= 0
        return int((self.exit_pos[ok] - np.flatnonzero(ok)).max()) if ok.any() else 1


def trade_outcomes(frame: pd.DataFrame, intraday: bool, rules: TradeRules) -> Outcomes:
    """The outcome of a long entered after each bar of a clean OHLC frame (see the module)."""
    o, h, lo, c = (frame[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close"))
    n = len(frame)
    ret, exit_pos = np.full(n, np.nan), np.full(n, -1, dtype="int64")
    if n < 2:
        return Outcomes(ret.copy(), ret, exit_pos)
    if intraday:
        for s, e, last_signal, whole in _sessions(pd.DatetimeIndex(frame.index), rules):
            _walk_session(o, h, lo, c, (s, e, last_signal), rules, ret, exit_pos, whole)
    else:
        _walk_days(o, h, lo, c, rules, ret, exit_pos)
    win = np.where(np.isfinite(ret), (ret > 0).astype("float64"), np.nan)
    return Outcomes(win, ret, exit_pos)


def primary_signal(close: np.ndarray, fast: int = PRIMARY_FAST, slow: int = PRIMARY_SLOW) -> np.ndarray:
    """True where the primary rule says buy at the bar's close: the ``fast``-bar SMA above the
    ``slow``-bar one (causal: each row reads its own close and earlier ones)."""
    s = pd.Series(np.asarray(close, dtype="float64"))
    f, sl = s.rolling(fast).mean().to_numpy(), s.rolling(slow).mean().to_numpy()
    with np.errstate(invalid="ignore"):
        return np.asarray((f - sl) > TIE * np.abs(sl))


def _sessions(index: pd.DatetimeIndex, rules: TradeRules) -> list[tuple[int, int, int, bool]]:
    """Per session: its first bar, the last bar a trade may be held in (the last that ends
    ``flatten_minutes`` before the session's close, from the NYSE calendar: half days
    included), the last bar whose close may signal an entry (more than ``no_entry_minutes``
    before the close), and whether the data reaches the flatten (a session whose last bars
    are missing cannot say where a trade held to the flatten ended)."""
    if len(index) < 2:
        return []
    index = index.as_unit("ns")
    step = int(np.median(np.diff(index.asi8)))  # ns per bar
    day = index.tz_convert(NY).normalize().asi8
    starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
    ends = np.r_[starts[1:], len(index)] - 1
    out = []
    calendar = default_calendar()
    for s, e in zip(starts, ends, strict=True):
        session = calendar.session(index[s].tz_convert(NY).date())
        close_ns = pd.Timestamp(session.close).value if session is not None else index.asi8[e] + step
        bar_ends = index.asi8[s : e + 1] + step
        held = np.flatnonzero(bar_ends <= close_ns - rules.flatten_minutes * 60 * 10**9)
        # the desk refuses an entry with no_entry_minutes or fewer to go (risk.check_entry)
        signals = np.flatnonzero(bar_ends < close_ns - rules.no_entry_minutes * 60 * 10**9)
        if len(held) and len(signals):
            whole = bool(bar_ends[held[-1]] + step > close_ns - rules.flatten_minutes * 60 * 10**9)
            out.append((int(s), int(s + held[-1]), int(s + signals[-1]), whole))
    return out


def _walk_session(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, bounds: tuple[int, int, int],
                  rules: TradeRules, ret: np.ndarray, exit_pos: np.ndarray, whole: bool = True) -> None:
    """Every entry in one session at once: rows are entries (at bars s+1..e), columns the bars
    held; bars before an entry, or past its time stop, are masked."""
    s, e, last_signal = bounds
    m = min(e, last_signal + 1) - s + 1
    if m < 2:
        return
    cols = np.arange(e - s + 1)
    entry_rows = np.arange(1, m)  # entry bar (relative); the signal bar is the one before
    span = cols[None, :] >= entry_rows[:, None]
    last = np.full(len(entry_rows), e - s)
    if rules.max_bars is not None:
        last = np.minimum(last, entry_rows + rules.max_bars - 1)
        span &= cols[None, :] <= last[:, None]
    entry = o[s + entry_rows]
    hs = np.where(span, h[s : e + 1][None, :], -np.inf)
    ends = _exits(entry, hs, o[s : e + 1][None, :], lo[s : e + 1][None, :], span, rules)
    final, price = ends
    fall_back = final < 0
    timed = last < e - s  # a time stop inside the session: its close is known
    final = np.where(fall_back, last, final)
    price = np.where(fall_back, c[s + last], price)
    known = ~fall_back | timed | whole  # held to a flatten the data does not reach: no label
    ret[s + entry_rows - 1] = np.where(known, _net(price, entry, rules), np.nan)
    exit_pos[s + entry_rows - 1] = np.where(known, s + final, -1)


def _walk_days(o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, rules: TradeRules,
               ret: np.ndarray, exit_pos: np.ndarray, chunk: int = 128) -> None:
    """Daily bars: the signal at day t's close buys day t+1's open and is held, as the desk
    holds a daily position, until its stop, trailing stop or take-profit (or the time stop,
    when one is set). A trade the data ends before resolving has no label."""
    n = len(o)
    for t0 in range(0, n - 1, chunk):
        rows = np.arange(t0, min(t0 + chunk, n - 1))
        first = t0 + 1
        cols = np.arange(first, n)
        entry_at = rows + 1
        span = cols[None, :] >= entry_at[:, None]
        last = np.full(len(rows), n - 1)
        if rules.max_bars is not None:
            last = np.minimum(last, entry_at + rules.max_bars - 1)
            span &= cols[None, :] <= last[:, None]
        entry = o[entry_at]
        hs = np.where(span, h[first:][None, :], -np.inf)
        final, price = _exits(entry, hs, o[first:][None, :], lo[first:][None, :], span, rules)
        timed = (final < 0) & (rules.max_bars is not None) & (entry_at + (rules.max_bars or 0) - 1 <= n - 1)
        price = np.where(timed, c[last], price)
        ends = np.where(final >= 0, first + final, np.where(timed, last, -1))
        ret[rows] = np.where(ends >= 0, _net(price, entry, rules), np.nan)
        exit_pos[rows] = ends


def _net(exit_price: np.ndarray, entry: np.ndarray, rules: TradeRules) -> np.ndarray:
    """A trade's return after its costs: slippage both ways, and the commission per share in
    and out as a share of its own entry price."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(exit_price / entry - 1.0 - rules.cost_bps / 1e4 - 2 * rules.commission_per_share / entry)


def _exits(entry: np.ndarray, hs: np.ndarray, op: np.ndarray, low: np.ndarray, span: np.ndarray,
           rules: TradeRules) -> tuple[np.ndarray, np.ndarray]:
    """(the column each row's trade was stopped or took profit in, -1 where neither, and the
    fill price there). ``hs`` holds the highs inside each row's span, -inf elsewhere."""
    seen = np.maximum.accumulate(hs, axis=1)
    before = np.concatenate([np.full((len(entry), 1), -np.inf), seen[:, :-1]], axis=1)  # highs before
    stop = np.broadcast_to((entry * (1 - rules.stop_pct))[:, None], hs.shape)
    trailing = before >= (entry * (1 + rules.trail_start_pct))[:, None]
    stop = np.where(trailing, np.maximum(stop, before * (1 - rules.trail_pct)), stop)
    hit = span & (low <= stop)
    target = np.full(len(entry), np.inf)
    if rules.take_profit_pct > 0:
        target = entry * (1 + rules.take_profit_pct)
    took = span & (hs >= target[:, None]) & ~hit
    event = hit | took
    first = np.where(event.any(axis=1), event.argmax(axis=1), -1)
    rows = np.arange(len(entry))
    k = np.maximum(first, 0)
    opened = np.broadcast_to(op, hs.shape)[rows, k]
    stop_fill = np.minimum(opened, stop[rows, k])
    target_fill = np.maximum(opened, target)
    price = np.where(hit[rows, k], stop_fill, target_fill)
    return first, np.where(first >= 0, price, np.nan)
