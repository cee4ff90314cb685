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
from datetime import timedelta
from typing import Any

import numpy as np

from app.engine.bot import TIMEFRAME_MINUTES, TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import MarketCalendar, SimClock
from app.engine.events import EventBus
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings
from app.engine.strategy.base import SignalModel
from app.engine.types import Bar, Trade

STRATEGIES = ("sma_cross", "momentum", "rules", "ensemble")


class BacktestCancelled(RuntimeError):
    pass


@dataclass(frozen=True)
class BacktestConfig:
    symbol: str = "PLTR"
    timeframe: str = "5m"
    strategy: str = "sma_cross"
    cash: float = 100_000.0
    commission_per_share: float = 0.0
    commission_rate: float = 0.0  # a fraction of traded value
    slippage_bps: float = 0.0
    plain: bool = False
    retrain_every: int = 0  # ensemble: 0 = the saved model; N = walk forward, retrained every N bars


def commission_terms(amount: float, mode: str) -> tuple[float, float]:
    """One commission as the user gives it -> (dollars per share, fraction of traded value)."""
    if mode not in ("per_share", "fraction"):
        raise ValueError(f"commission mode {mode!r}: per_share or fraction")
    return (amount, 0.0) if mode == "per_share" else (0.0, amount)


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


def check_retrain_every(every: int, strategy: str) -> None:
    """0 (the saved model), or from MIN_RETRAIN_BARS up to the setting's maximum; ensemble only."""
    from app.engine.settings import MIN_RETRAIN_BARS, field_bounds

    most = field_bounds("backtest_retrain_bars")["max"]
    if every != 0 and not MIN_RETRAIN_BARS <= every <= most:
        raise ValueError(f"retrain every N bars: N must be 0 (the saved model) or from {MIN_RETRAIN_BARS} "
                         f"to {most:,} (got {every})")
    if every and strategy != "ensemble":
        raise ValueError(f"retraining every N bars applies to the ensemble only, not to {strategy}")


def make_model(strategy: str, bars: list[Bar] | None = None, timeframe: str = "5m",
               symbol: str = "PLTR", models_dir: object = None,
               settings: Settings | None = None, *, retrain_every: int = 0,
               progress: Callable[[float, str], bool] | None = None) -> tuple[SignalModel, list[str]]:
    """The strategy's model and notes for the report. Given ``bars``, ``sma_cross``,
    ``momentum`` and ``ensemble`` are computed for all of them at once (causal).
    ``retrain_every`` > 0 walks the ensemble forward instead of loading the saved
    one; ``progress(fraction, message)`` then follows its training."""
    check_retrain_every(retrain_every, strategy)
    if strategy == "momentum" and bars is not None:
        from app.engine.backtest.strategies import momentum_model

        return momentum_model(bars, timeframe), []
    if strategy == "ensemble" and bars is not None:
        from app.engine.backtest.strategies import ensemble_model, walk_forward_ensemble_model
        from app.engine.ml.models import weights_from

        if retrain_every:
            return walk_forward_ensemble_model(bars, timeframe, symbol, settings or Settings(), retrain_every,
                                               progress)
        if models_dir is None:
            raise ValueError("the ensemble strategy needs a trained model (python main.py train ...)")
        return ensemble_model(bars, timeframe, symbol, models_dir, weights_from(settings or Settings()))
    if strategy == "sma_cross":
        from app.engine.strategy.sma_cross import SmaCrossModel

        return (SmaCrossModel().precompute(bars) if bars is not None else SmaCrossModel()), []
    if strategy == "rules":
        from app.engine.strategy.rules import RulesModel

        return RulesModel(), []
    raise ValueError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")


def run_backtest(bars: list[Bar], cfg: BacktestConfig, settings: Settings | None = None,
                 model: SignalModel | None = None,
                 progress: Callable[[float], bool] | None = None,
                 models_dir: object = None) -> BacktestResult:
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
    bot.plain = cfg.plain
    bot.record_quiet_signals = False
    bar_delta = timedelta(minutes=TIMEFRAME_MINUTES[cfg.timeframe])
    n = len(bars)
    cash: list[float] = []
    held: list[float] = []
    every = max(1, n // 200)
    set_time, fill, close, shares = clock.set, broker.on_bar, bot.on_bar_close, broker.held
    t0 = time.perf_counter()
    for i, bar in enumerate(bars):
        set_time(bar.time)
        fill(bar)  # what was ordered at the last close fills at this bar's open
        set_time(bar.time + bar_delta)
        close(bar)  # the trading cycle, at this bar's close
        cash.append(broker.cash)
        held.append(shares(bar.symbol))
        if progress is not None and i % every == 0 and not progress(i / n):
            raise BacktestCancelled(f"cancelled at bar {i} of {n}")
    elapsed = time.perf_counter() - t0
    closes = np.fromiter((b.close for b in bars), dtype="float64", count=n)
    equity = np.asarray(cash) + np.asarray(held) * closes  # marked at each close
    in_market = np.asarray(held) != 0
    from app.engine.backtest.metrics import compute_metrics

    traded = sum(f.qty * f.price for f in broker.fills)
    metrics = compute_metrics(equity, [b.time for b in bars], records.trades, cfg.timeframe, in_market,
                              bars[0].open, bars[-1].close, traded)
    return BacktestResult(cfg, metrics, list(records.trades), equity, [b.time for b in bars], n, elapsed,
                          notes, model_seconds)


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return None
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    return v
