"""Backtests through the live engine: same bot, same risk, same orders, same stops.

Each bar is played in two beats on a simulated clock: at its open the
simulated broker fills what was ordered at the last close (market orders at
the open plus slippage, stops at the stop, or at the open when the bar gaps
through them); at its close the bot runs its trading cycle. Decisions are
therefore always made at a bar's close and filled at the next bar's open.

``plain`` turns the product's rules off for comparison with textbook
backtesters: no risk limits or stops, no session or end-of-day rules, the
whole available cash in each trade. Even then the order goes through the
same signal, order and fill code.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.backtest.config import BacktestCancelled, BacktestConfig, settings_used
from app.engine.backtest.metrics import compute_metrics
from app.engine.backtest.strategies import make_model
from app.engine.bot import TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import NY, MarketCalendar, SimClock
from app.engine.events import EventBus
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings
from app.engine.strategy.base import SignalModel
from app.engine.types import Bar, Fill, Side, Trade, timeframe_of


@dataclass
class BacktestResult:
    config: BacktestConfig
    metrics: dict[str, Any]
    trades: list[Trade]
    equity: np.ndarray
    times: list[Any]  # one per bar time (a portfolio's symbols share them)
    bars: int  # bar events played: every symbol's bars
    elapsed_seconds: float
    notes: list[str] = field(default_factory=list)
    model_seconds: float = 0.0  # making the model's answers: precomputing, or loading and predicting
    symbols: tuple[str, ...] = ()
    per_symbol: dict[str, dict[str, Any]] = field(default_factory=dict)  # each symbol's sleeve, same keys
    held: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # shares per bar time and symbol
    closes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))  # last close per bar time and symbol
    cash: np.ndarray = field(default_factory=lambda: np.zeros(0))  # cash at each bar time's close
    used: dict[str, Any] = field(default_factory=dict)  # the costs and rules it ran with (settings_used)

    def to_json(self) -> dict[str, Any]:
        with _collector.quieter():  # a row of lists per bar: young collections would rescan the bars
            return self._json()

    def _json(self) -> dict[str, Any]:
        return {
            "config": self.config.__dict__,
            "settings_used": self.used,
            "symbols": list(self.symbols),
            "metrics": _jsonable_dict(self.metrics),
            "per_symbol": {s: _jsonable_dict(m) for s, m in self.per_symbol.items()},
            "trades": [
                {"symbol": t.symbol, "entry_time": t.entry_time.isoformat(), "exit_time": t.exit_time.isoformat(),
                 "entry_price": t.entry_price, "exit_price": t.exit_price, "qty": t.qty, "pnl": t.pnl,
                 "exit_reason": t.exit_reason}
                for t in self.trades
            ],
            # [time, equity, cash] at each bar time's close: the metrics can be recomputed from it
            # tolist: Python floats, not a NumPy scalar each; map(list, zip): rows made in C
            "equity": list(map(list, zip(_iso_times(self.times), self.equity.tolist(), self.cash.tolist(),
                                         strict=True))),
            "bars": self.bars,
            "elapsed_seconds": self.elapsed_seconds,
            "model_seconds": self.model_seconds,
            "notes": self.notes,
        }


def _iso_times(times: list[datetime]) -> list[str]:
    """``t.isoformat()`` of each time, at once for the usual case (whole seconds in UTC), where
    one call each took a fifth of the command line's run on a 100,000-bar file."""
    if not times or not all(t.tzinfo is UTC for t in times):
        return [t.isoformat() for t in times]
    secs = np.fromiter((t.timestamp() for t in times), dtype=np.float64, count=len(times))
    whole = np.floor(secs)
    if not np.array_equal(secs, whole):
        return [t.isoformat() for t in times]
    text = np.datetime_as_string(whole.astype(np.int64).astype("datetime64[s]"), unit="s")
    return [f"{x}+00:00" for x in text.tolist()]


def run_backtest(bars: list[Bar], cfg: BacktestConfig, settings: Settings | None = None,
                 model: SignalModel | None = None,
                 progress: Callable[[float], bool] | None = None,
                 models_dir: Path | None = None,
                 models: Mapping[str, SignalModel] | None = None) -> BacktestResult:
    """Play ``bars`` through the engine. ``progress(fraction)`` returning False cancels.

    ``bars`` may hold several symbols (a portfolio): they trade on one shared account,
    each with its own model (``models[symbol]``, else ``model`` for all, else one made from
    that symbol's bars), and the bars of one
    time close together in one ranked cycle, as live."""
    if len(bars) < 2:
        raise ValueError("a backtest needs at least two bars")
    by_symbol = split_symbols(bars)
    symbols = tuple(by_symbol)
    base = settings or Settings()
    settings = base.updated(mode="auto", timeframe=cfg.timeframe, starting_cash=cfg.cash,
                            slippage_bps=cfg.slippage_bps)
    started = time.perf_counter()
    made, notes = _models(cfg, by_symbol, model, models_dir, settings, models or {})
    model_seconds = time.perf_counter() - started
    with _collector.quieter():  # from the steps on: building them alone ran full collections over the bars
        steps = _steps(bars, len(symbols))
        clock = SimClock(steps[0][0].time)
        broker = SimulatedBroker(clock, cfg.cash, cfg.slippage_bps, cfg.commission_per_share,
                                 commission_rate=cfg.commission_rate, sole_owner=True,  # no one else trades here
                                 whole_cash_at_fill=cfg.plain)
        records = MemoryRecorder()
        calendar = None if cfg.plain else _calendar_for(steps)
        bot = TradingBot(settings, clock, broker, made[symbols[0]], records, EventBus(),
                         calendar, "backtest", sleep=lambda _s: None, models=made.__getitem__)
        bot.core.book.plain = cfg.plain
        bot.record_quiet_signals = False
        t0 = time.perf_counter()
        cash, held = _play(steps, symbols, bot, broker, clock, calendar, settings, progress)
        elapsed = time.perf_counter() - t0
        closes = _closes(steps, symbols)
        equity = np.asarray(cash) + (held * closes).sum(axis=1)  # marked at each close
        times = [g[0].time for g in steps]
        traded = sum(f.qty * f.price for f in broker.fills)
        rf = settings.risk_free_rate
        metrics = compute_metrics(equity, times, records.trades, cfg.timeframe, np.asarray(held.any(axis=1)),
                                  *_first_last(bars, by_symbol), traded, rf, int((held[-1] != 0).sum()))
        per_symbol = ({symbols[0]: dict(metrics)} if len(symbols) == 1  # one symbol's sleeve is the whole account
                      else _per_symbol(symbols, by_symbol, broker.fills, records.trades, times, held, closes, cfg, rf))
        return BacktestResult(cfg, metrics, list(records.trades), equity, times, len(bars), elapsed,
                              notes, model_seconds, symbols, per_symbol, held, closes, np.asarray(cash),
                              settings_used(cfg, settings))


def _calendar_for(steps: list[tuple[Bar, ...]]) -> MarketCalendar:
    """The NYSE calendar, when it knows every day of the bars (the session rules need it)."""
    calendar = MarketCalendar()
    first, last = calendar.span
    start, end = (steps[k][0].time.astimezone(NY).date() for k in (0, -1))
    if start < first or end > last:
        raise ValueError(f"the bars run from {start} to {end}, but the NYSE calendar knows sessions from {first} to "
                         f"{last} only: trade the days it knows (--start/--end), or run --plain (no session rules)")
    return calendar


def split_symbols(bars: list[Bar]) -> dict[str, list[Bar]]:
    """Each symbol's bars, in the order given (symbols sorted)."""
    out: dict[str, list[Bar]] = {}
    for b in bars:
        out.setdefault(b.symbol, []).append(b)
    return {s: out[s] for s in sorted(out)}


def _steps(bars: list[Bar], n_symbols: int) -> list[tuple[Bar, ...]]:
    """The bar times, each with every symbol's bar of that time."""
    if n_symbols == 1:
        return [(b,) for b in bars]
    ordered = sorted(bars, key=lambda b: (b.time, b.symbol))
    return [tuple(g) for _, g in groupby(ordered, key=attrgetter("time"))]


def _models(cfg: BacktestConfig, by_symbol: dict[str, list[Bar]], model: SignalModel | None,
            models_dir: Path | None, settings: Settings,
            given: Mapping[str, SignalModel]) -> tuple[dict[str, SignalModel], list[str]]:
    """One model per symbol, made from that symbol's bars where not given; notes say which symbol's."""
    if model is not None:
        return dict.fromkeys(by_symbol, model), []
    models: dict[str, SignalModel] = dict(given)
    notes: list[str] = []
    for symbol, bars in by_symbol.items():
        if symbol in models:
            continue
        models[symbol], said = make_model(cfg.strategy, bars, cfg.timeframe, symbol, models_dir, settings,
                                          retrain_every=cfg.retrain_every)
        notes += [f"{symbol}: {n}" for n in said] if len(by_symbol) > 1 else said
    return models, notes


class _Collector:
    """A run makes many short-lived objects while the bars and models made before it live on:
    those are kept out of the collector's scans (``gc.freeze``), and young objects are
    collected every 100,000 allocations instead of 700 (a fifth of a 10-symbol run's time went
    to collections). Restored when the last run going (a GUI thread may run another) ends."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved = gc.get_threshold()

    @contextmanager
    def quieter(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._saved = gc.get_threshold()
                gc.freeze()
                gc.set_threshold(100_000, *self._saved[1:])
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0:
                    gc.set_threshold(*self._saved)
                    gc.unfreeze()


_collector = _Collector()


def _play(steps: list[tuple[Bar, ...]], symbols: tuple[str, ...], bot: TradingBot, broker: SimulatedBroker,
          clock: SimClock, calendar: MarketCalendar | None, settings: Settings,
          progress: Callable[[float], bool] | None) -> tuple[list[float], np.ndarray]:
    """Each bar time in two beats: fills at the open, the trading cycle at the close.
    Returns the cash and the shares of each symbol held after each bar time.

    Cash and shares move only with a fill, so they are read from the broker only after a bar
    time that had one, and carried forward over the rest (most bars have none)."""
    bar_delta = timeframe_of(settings.timeframe).delta
    n = len(steps)
    every = max(1, n // 200)
    set_time, fill = clock.set, broker.on_bar
    close_one, close_many = bot.on_bar_close, bot.on_bars_close
    session_ends = _early_session_ends(steps, bar_delta, calendar, settings) if calendar is not None else {}
    daily_opens = _session_opens(steps, calendar) if calendar is not None and bar_delta >= timedelta(days=1) else {}
    single = len(symbols) == 1
    flattens = calendar is not None and bar_delta < timedelta(days=1) and settings.eod_flatten
    day_ends = _day_ends(steps) if not single and flattens else set()
    fills = broker.fills
    seen = len(fills)
    changed: list[tuple[int, float, dict[str, float]]] = [(-1, broker.cash, broker.holdings())]
    for i, group in enumerate(steps):
        first = group[0]
        set_time(first.time)
        if daily_opens and i in daily_opens:  # daily bars: entries decided at the last close go out at this open
            set_time(daily_opens[i])
            bot.on_clock()
        if single:
            fill(first)  # what was ordered at the last close fills at this bar's open
            set_time(first.time + bar_delta)
            close_one(first)  # the trading cycle, at this bar's close
        else:
            for bar in group:
                fill(bar)
            set_time(first.time + bar_delta)
            close_many(group)
        if session_ends:
            for when in session_ends.get(i, ()):  # bars stopped before the close: the clock runs on
                set_time(when)
                bot.on_clock()
        # a symbol whose bars stopped earlier that day still holds: its end-of-day sell fills now
        if i in day_ends and broker.fill_stranded({b.symbol for b in group}, clock.now()):
            bot.on_clock()  # the fills booked: trades recorded, stops cancelled
        if len(fills) != seen:
            seen = len(fills)
            changed.append((i, broker.cash, broker.holdings()))
        if progress is not None and i % every == 0 and not progress(i / n):
            raise BacktestCancelled(f"cancelled at bar time {i} of {n}")
    return _carried(changed, n, symbols)


def _carried(changed: list[tuple[int, float, dict[str, float]]], n: int,
             symbols: tuple[str, ...]) -> tuple[list[float], np.ndarray]:
    """Cash and shares per bar time from their values after each bar time that changed them
    (the first entry: before the first bar), each carried forward to the next change."""
    column = {s: k for k, s in enumerate(symbols)}
    cash = np.empty(n)
    held = np.zeros((n, len(symbols)))
    for (i, c, h), (nxt, _, _) in zip(changed, [*changed[1:], (n, 0.0, {})], strict=True):
        start = max(i, 0)
        cash[start:nxt] = c
        for s, qty in h.items():
            held[start:nxt, column[s]] = qty
    return cash.tolist(), held


def _day_ends(steps: list[tuple[Bar, ...]]) -> set[int]:
    """The index of each New York day's last bar time."""
    last: dict[date, int] = {}
    for i, (b, *_) in enumerate(steps):
        last[b.time.astimezone(NY).date()] = i
    return set(last.values())


def _closes(steps: list[tuple[Bar, ...]], symbols: tuple[str, ...]) -> np.ndarray:
    """Each symbol's last close at each bar time (carried over a bar it lacks; 0 before its first)."""
    column = {s: k for k, s in enumerate(symbols)}
    out = np.full((len(steps), len(symbols)), np.nan)
    for i, group in enumerate(steps):
        for b in group:
            out[i, column[b.symbol]] = b.close
    for k in range(len(symbols)):
        col = out[:, k]
        seen = np.where(np.isnan(col), 0, np.arange(len(col)))
        np.maximum.accumulate(seen, out=seen)
        out[:, k] = np.nan_to_num(col[seen], nan=0.0)
    return out


def _first_last(bars: list[Bar], by_symbol: dict[str, list[Bar]]) -> tuple[float, float]:
    """Buy and hold's first open and last close: a portfolio's as one equal-weight basket."""
    if len(by_symbol) == 1:
        return bars[0].open, bars[-1].close
    growth = float(np.mean([b[-1].close / b[0].open for b in by_symbol.values()]))
    return 1.0, growth


def _per_symbol(symbols: tuple[str, ...], by_symbol: dict[str, list[Bar]], fills: list[Fill],
                trades: list[Trade], times: list[datetime], held: np.ndarray, closes: np.ndarray,
                cfg: BacktestConfig, risk_free_rate: float = 0.0) -> dict[str, dict[str, Any]]:
    """Each symbol's figures as its sleeve of the one account: the starting cash plus that
    symbol's cash flows and marked shares, so the symbols' returns add up to the portfolio's."""
    out: dict[str, dict[str, Any]] = {}
    epochs = np.array([t.timestamp() for t in times])
    for k, symbol in enumerate(symbols):
        flow = np.zeros(len(times))
        mine = [f for f in fills if f.symbol == symbol]
        for f in mine:
            i = max(int(np.searchsorted(epochs, f.time.timestamp(), side="right")) - 1, 0)
            flow[i] += (f.qty * f.price if f.side == Side.SELL else -f.qty * f.price) - f.commission
        equity = cfg.cash + np.cumsum(flow) + held[:, k] * closes[:, k]
        own = by_symbol[symbol]
        out[symbol] = compute_metrics(equity, times, [t for t in trades if t.symbol == symbol], cfg.timeframe,
                                      held[:, k] != 0, own[0].open, own[-1].close,
                                      sum(f.qty * f.price for f in mine), risk_free_rate, int(held[-1, k] != 0))
    return out


def _session_opens(steps: list[tuple[Bar, ...]], calendar: MarketCalendar) -> dict[int, datetime]:
    """Each daily bar's session open (daily bars are stamped at New York midnight)."""
    out: dict[int, datetime] = {}
    for i, (b, *_) in enumerate(steps):
        session = calendar.session(b.time.astimezone(NY).date())
        if session is not None:
            out[i] = session.open
    return out


def _early_session_ends(steps: list[tuple[Bar, ...]], bar_delta: timedelta, calendar: MarketCalendar,
                        settings: Settings) -> dict[int, tuple[datetime, ...]]:
    """For each day whose bars stop before its end-of-day flatten (a gap in the data), the
    last bar's index and the times the live clock would still have struck that day: the
    flatten and the close. Live, the engine flattens on time whatever the data do; the
    backtest does too, and the sell fills at the next bar's open, the first price there is."""
    if bar_delta >= timedelta(days=1) or not settings.eod_flatten:
        return {}
    out: dict[int, tuple[datetime, ...]] = {}
    last_of_day: dict[date, int] = {}
    for i, (b, *_) in enumerate(steps):
        last_of_day[b.time.astimezone(NY).date()] = i
    for day, i in last_of_day.items():
        session = calendar.session(day)
        if session is None:
            continue
        cutoff = session.close - timedelta(minutes=settings.flatten_minutes_before_close)
        end = steps[i][0].time + bar_delta
        if end < cutoff:
            out[i] = (cutoff, session.close)
    return out


def write_json(doc: dict[str, Any], path: Path) -> None:
    """``doc`` indented, with each row of its ``equity`` on one line (100,000 rows of five lines
    each made the file 40% bigger and twice as slow to write)."""
    rows = doc.get("equity")
    if not isinstance(rows, list) or not rows:
        path.write_text(json.dumps(doc, indent=2))
        return
    marker = "__equity_rows__"
    with _collector.quieter():
        text = json.dumps({**doc, "equity": marker}, indent=2).replace(f'"{marker}"', _rows_text(rows), 1)
    path.write_text(text)


def _rows_text(rows: list[Any]) -> str:
    """The rows as a JSON list, one row a line. All of them in one ``json.dumps`` (a call per
    row took a tenth of a 100,000-bar command line), cut into lines where one row ends and the
    next starts. Between two lists that is a "], ["; when the text holds no other (none inside
    a row), every one of them is such a boundary."""
    if all(type(r) is list for r in rows):
        flat = json.dumps(rows)
        if flat.count("], [") == len(rows) - 1:
            return "[\n    " + flat[1:-1].replace("], [", "],\n    [") + "\n  ]"
    return "[\n" + ",\n".join("    " + json.dumps(r) for r in rows) + "\n  ]"


def _jsonable_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _jsonable(v) for k, v in d.items()}


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
