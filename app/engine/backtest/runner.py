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

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.backtest.config import BacktestCancelled, BacktestConfig
from app.engine.backtest.metrics import compute_metrics
from app.engine.backtest.strategies import make_model
from app.engine.bot import TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import NY, MarketCalendar, SimClock
from app.engine.events import EventBus
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings
from app.engine.strategy.base import SignalModel
from app.engine.types import Bar, Trade, timeframe_of


@dataclass
class BacktestResult:
    config: BacktestConfig
    metrics: dict[str, Any]
    trades: list[Trade]
    equity: np.ndarray
    times: list[Any]
    bars: int
    elapsed_seconds: float
    notes: list[str] = field(default_factory=list)
    model_seconds: float = 0.0  # making the model's answers: precomputing, or loading and predicting

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.__dict__,
            "metrics": {k: _jsonable(v) for k, v in self.metrics.items()},
            "trades": [
                {"entry_time": t.entry_time.isoformat(), "exit_time": t.exit_time.isoformat(),
                 "entry_price": t.entry_price, "exit_price": t.exit_price, "qty": t.qty, "pnl": t.pnl,
                 "exit_reason": t.exit_reason}
                for t in self.trades
            ],
            "bars": self.bars,
            "elapsed_seconds": self.elapsed_seconds,
            "model_seconds": self.model_seconds,
            "notes": self.notes,
        }


def run_backtest(bars: list[Bar], cfg: BacktestConfig, settings: Settings | None = None,
                 model: SignalModel | None = None,
                 progress: Callable[[float], bool] | None = None,
                 models_dir: Path | None = None) -> BacktestResult:
    """Play ``bars`` through the engine. ``progress(fraction)`` returning False cancels."""
    if len(bars) < 2:
        raise ValueError("a backtest needs at least two bars")
    base = settings or Settings()
    settings = base.updated(mode="auto", timeframe=cfg.timeframe, starting_cash=cfg.cash,
                            slippage_bps=cfg.slippage_bps)
    clock = SimClock(bars[0].time)
    broker = SimulatedBroker(clock, cfg.cash, cfg.slippage_bps, cfg.commission_per_share,
                             commission_rate=cfg.commission_rate)
    records = MemoryRecorder()
    calendar = None if cfg.plain else MarketCalendar()
    notes: list[str] = []
    started = time.perf_counter()
    if model is None:
        model, notes = make_model(cfg.strategy, bars, cfg.timeframe, cfg.symbol, models_dir, settings,
                                  retrain_every=cfg.retrain_every)
    model_seconds = time.perf_counter() - started
    bot = TradingBot(settings, clock, broker, model, records, EventBus(),
                     calendar, "backtest", sleep=lambda _s: None)
    bot.core.book.plain = cfg.plain
    bot.record_quiet_signals = False
    bar_delta = timeframe_of(cfg.timeframe).delta
    n = len(bars)
    cash: list[float] = []
    held: list[float] = []
    every = max(1, n // 200)
    set_time, fill, close, shares = clock.set, broker.on_bar, bot.on_bar_close, broker.held
    session_ends = _early_session_ends(bars, bar_delta, calendar, settings) if calendar is not None else {}
    daily_opens = _session_opens(bars, calendar) if calendar is not None and bar_delta >= timedelta(days=1) else {}
    t0 = time.perf_counter()
    for i, bar in enumerate(bars):
        set_time(bar.time)
        if i in daily_opens:  # daily bars: entries decided at the last close go out at this open
            set_time(daily_opens[i])
            bot.on_clock()
        fill(bar)  # what was ordered at the last close fills at this bar's open
        set_time(bar.time + bar_delta)
        close(bar)  # the trading cycle, at this bar's close
        for when in session_ends.get(i, ()):  # bars stopped before the close: the clock runs on
            set_time(when)
            bot.on_clock()
        cash.append(broker.cash)
        held.append(shares(bar.symbol))
        if progress is not None and i % every == 0 and not progress(i / n):
            raise BacktestCancelled(f"cancelled at bar {i} of {n}")
    elapsed = time.perf_counter() - t0
    closes = np.fromiter((b.close for b in bars), dtype="float64", count=n)
    equity = np.asarray(cash) + np.asarray(held) * closes  # marked at each close
    in_market = np.asarray(held) != 0
    traded = sum(f.qty * f.price for f in broker.fills)
    metrics = compute_metrics(equity, [b.time for b in bars], records.trades, cfg.timeframe, in_market,
                              bars[0].open, bars[-1].close, traded)
    return BacktestResult(cfg, metrics, list(records.trades), equity, [b.time for b in bars], n, elapsed,
                          notes, model_seconds)


def _session_opens(bars: list[Bar], calendar: MarketCalendar) -> dict[int, datetime]:
    """Each daily bar's session open (daily bars are stamped at New York midnight)."""
    out: dict[int, datetime] = {}
    for i, b in enumerate(bars):
        session = calendar.session(b.time.astimezone(NY).date())
        if session is not None:
            out[i] = session.open
    return out


def _early_session_ends(bars: list[Bar], bar_delta: timedelta, calendar: MarketCalendar,
                        settings: Settings) -> dict[int, tuple[datetime, ...]]:
    """For each day whose bars stop before its end-of-day flatten (a gap in the data), the
    last bar's index and the times the live clock would still have struck that day: the
    flatten and the close. Live, the engine flattens on time whatever the data do; the
    backtest does too, and the sell fills at the next bar's open, the first price there is."""
    if bar_delta >= timedelta(days=1) or not settings.eod_flatten:
        return {}
    out: dict[int, tuple[datetime, ...]] = {}
    last_of_day: dict[date, int] = {}
    for i, b in enumerate(bars):
        last_of_day[b.time.astimezone(NY).date()] = i
    for day, i in last_of_day.items():
        session = calendar.session(day)
        if session is None:
            continue
        cutoff = session.close - timedelta(minutes=settings.flatten_minutes_before_close)
        end = bars[i].time + bar_delta
        if end < cutoff:
            out[i] = (cutoff, session.close)
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
