"""One backtest in a child process: what the Backtest tab's worker thread drives.

Why a process and not only a thread: a backtest is pure-Python work that
holds the interpreter lock for seconds, and its hundreds of thousands of bar
objects make each garbage collection pause every thread. Measured on the
demo desk at 30000x, a backtest in a ``QThread`` stalled the GUI thread for up
to 3.4 s (and 0.3 s typically); in a child process it costs the GUI nothing.
The tab's ``QThread`` worker starts the child, relays its progress and result
as Qt signals, and cancels it through the progress callback, as before.

Qt-free: the child imports only the engine. Everything sent back is plain
data (numpy arrays, frozen dataclasses, the HTML report already rendered), so
nothing needs 300k bar objects rebuilt on the GUI's side.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from app.engine.backtest.config import (
    MAX_SLIPPAGE_BPS,
    MAXIMIZE,
    STRATEGIES,
    BacktestCancelled,
    BacktestConfig,
    check_costs,
    commission_terms,
    describe_used,
    heat_color,
)
from app.engine.settings import Settings
from app.engine.strategy.base import SignalModel
from app.engine.types import TIMEFRAMES, Bar, Trade

# what the tab uses
__all__ = ["MAXIMIZE", "MAX_SLIPPAGE_BPS", "STRATEGIES", "TIMEFRAMES", "BacktestOutcome", "BacktestRequest",
           "child_main", "heat_color"]

TRAIN_SHARE = 0.9  # of the progress bar, for a walk-forward ensemble's training: it takes minutes


@dataclass(frozen=True)
class BacktestRequest:
    """What the user asked for, read from the tab's fields on the GUI thread."""

    csv_path: str  # one file, or several "[SYM=]FILE" separated by ";" (a portfolio on one account)
    symbol: str = "PLTR"
    timeframe: str = "5m"
    strategy: str = "sma_cross"
    cash: float = 100_000.0
    commission: float = 0.0
    commission_mode: str = "per_share"  # or "fraction" (of traded value)
    slippage_bps: float = 0.0
    plain: bool = False
    models_dir: str | None = None  # where a trained ensemble lives (the app home's models/)
    retrain_every: int = 0  # ensemble: 0 = the saved model; N = walk forward, retrained every N bars
    settings: dict[str, Any] | None = None  # the saved settings (thresholds, weights, risk rules, risk-free rate)
    optimize: tuple[str, ...] = ()  # "NAME=START:STOP:STEP" each: a grid search, walked forward
    maximize: str = "sharpe"
    folds: int = 4  # walk-forward folds of a search (0: in-sample only)
    cache_dir: str | None = None  # the app home's cache (the exchange's session table, kept between runs)

    def config(self) -> BacktestConfig:
        per_share, rate = commission_terms(self.commission, self.commission_mode)
        return BacktestConfig(self.symbol.strip().upper() or "PLTR", self.timeframe, self.strategy, self.cash,
                              per_share, rate, self.slippage_bps, self.plain, self.retrain_every)


@dataclass(frozen=True, eq=False)
class BacktestOutcome:
    """A finished run as the tab shows it: arrays to plot, metrics, trades, the report."""

    request: BacktestRequest
    config: BacktestConfig
    metrics: dict[str, Any]
    trades: tuple[Trade, ...]
    equity: np.ndarray
    drawdown: np.ndarray  # fraction below the running peak, <= 0
    buy_and_hold: np.ndarray  # equity had the cash bought the stock (each symbol alike) at the first open
    epochs: np.ndarray  # bar start times, epoch seconds (for the time axis)
    bars: int
    elapsed_seconds: float
    notes: tuple[str, ...]
    html: str  # the self-contained report, rendered in the child
    per_symbol: dict[str, dict[str, Any]] = field(default_factory=dict)  # each symbol's sleeve (a portfolio)
    used: tuple[str, ...] = ()  # the costs and rules the run used, as the report says them
    optimization: dict[str, Any] | None = None  # a search's figures (Optimization.to_json), else None


def load_bars(path: str, symbol: str, timeframe: str, plain: bool) -> tuple[list[Bar], list[str]]:
    """Read and clean a CSV exactly as ``python main.py backtest`` does; notes say what was dropped.
    Several ``[SYM=]FILE`` separated by ";" load a portfolio, as repeated ``--csv`` do."""
    # deferred: pandas and the data layer load in the backtest's child process, not at the window's start-up
    from app.engine.data.frame import DataError, frame_to_bars
    from app.engine.data.portfolio import load_portfolio
    from app.engine.data.service import read_clean, symbols_in_file

    specs = [s.strip() for s in path.split(";") if s.strip()]
    if not specs:
        raise DataError("choose a CSV file of bars first")
    named = "=" in specs[0] and not Path(specs[0]).exists()
    held = [] if named else symbols_in_file(specs[0])
    if len(specs) > 1 or named or len(held) > 1:
        return load_portfolio(specs, None, timeframe, keep_extended=plain)
    path = specs[0]
    symbol = held[0] if held else symbol  # the file's own word (its symbol column or name) over the box
    imported, cleaned = read_clean(Path(path).expanduser(), timeframe, keep_extended=plain)  # plain: no sessions
    bars = frame_to_bars(cleaned.frame, symbol.strip().upper() or "PLTR")
    notes = [f"{imported.accepted:,} rows read" + (f", {imported.rejected:,} rejected" if imported.rejected else "")]
    notes += imported.reason_lines()[:3] + cleaned.report.lines()[:4]
    if len(bars) < 2:
        raise DataError(f"{Path(path).name}: fewer than two usable {timeframe} bars after cleaning"
                        + (f" ({'; '.join(notes[1:])})" if len(notes) > 1 else ""))
    return bars, notes


def run_request(req: BacktestRequest, progress: Any) -> BacktestOutcome:
    """Load, run and render; ``progress(fraction[, message]) -> bool`` as in ``run_backtest``.

    A walk-forward ensemble is trained first, here, so that its training (the
    slow part) fills the first ``TRAIN_SHARE`` of the progress bar and can be
    cancelled like the run itself."""
    # deferred: the engine and its models load in the backtest's child process, not at the window's start-up
    from app.engine.backtest.report import render_html
    from app.engine.backtest.runner import run_backtest, split_symbols
    from app.engine.backtest.strategies import make_model

    bars, notes = load_bars(req.csv_path, req.symbol, req.timeframe, req.plain)
    if not progress(0.0):
        raise BacktestCancelled("cancelled before the first bar")
    if req.optimize:
        return _optimize(req, bars, notes, progress)
    cfg, run_share = req.config(), (0.0, 1.0)
    models: dict[str, SignalModel] = {}
    model_notes: list[str] = []
    if cfg.retrain_every:  # one walk-forward model per symbol, each on its own bars
        by_symbol = split_symbols(bars)
        share = TRAIN_SHARE / len(by_symbol)
        for k, (symbol, own) in enumerate(by_symbol.items()):
            stage = f"{symbol} walk-forward " if len(by_symbol) > 1 else "walk-forward "
            models[symbol], said = make_model(cfg.strategy, own, cfg.timeframe, symbol,
                                              retrain_every=cfg.retrain_every,
                                              progress=_share(progress, k * share, (k + 1) * share, stage))
            model_notes += [f"{symbol}: {n}" for n in said] if len(by_symbol) > 1 else said
        run_share = (TRAIN_SHARE, 1.0)
        if not progress(TRAIN_SHARE, "running the backtest"):
            raise BacktestCancelled("cancelled after training, before the first bar")
    check_costs(req.commission, req.commission_mode, req.slippage_bps, req.cash)
    saved = Settings.from_dict(req.settings) if req.settings else Settings()
    result = run_backtest(bars, cfg, saved, models=models,
                          progress=_share(progress, *run_share),
                          models_dir=Path(req.models_dir) if req.models_dir else None)
    result.notes[:0] = model_notes
    result.notes.extend(notes)
    eq = result.equity
    peak = np.maximum.accumulate(eq)
    return BacktestOutcome(
        replace(req, symbol=",".join(result.symbols)), result.config, result.metrics, tuple(result.trades), eq,
        eq / np.where(peak > 0, peak, 1.0) - 1.0, _buy_and_hold(result.closes, bars, result.symbols, req.cash),
        np.array([t.timestamp() for t in result.times]), result.bars, result.elapsed_seconds, tuple(result.notes),
        render_html(result, bars), result.per_symbol if len(result.symbols) > 1 else {},
        tuple(describe_used(result.used)))


def _optimize(req: BacktestRequest, bars: list[Bar], notes: list[str], progress: Any) -> BacktestOutcome:
    """A grid search walked forward: the curve is the stitched out-of-sample equity."""
    # deferred: the engine loads in the backtest's child process, not at the window's start-up
    from app.engine.backtest.config import settings_used
    from app.engine.backtest.optimize import check_grid, optimize, parse_param
    from app.engine.backtest.report import render_optimization_html

    cfg = req.config()
    check_costs(req.commission, req.commission_mode, req.slippage_bps, req.cash)
    saved = Settings.from_dict(req.settings) if req.settings else Settings()
    params = [parse_param(t, cfg.strategy, cfg.plain) for t in req.optimize]
    check_grid(params)
    opt = optimize(bars, cfg, saved, params, req.maximize, req.folds,
                   models_dir=Path(req.models_dir) if req.models_dir else None, progress=progress)
    used = settings_used(cfg, saved)
    eq = opt.oos_equity if len(opt.oos_equity) > 1 else np.full(2, req.cash)
    times = opt.oos_times if len(opt.oos_equity) > 1 else [bars[0].time, bars[-1].time]
    first, last = min(b.time for b in bars), max(b.time for b in bars)
    close_at: dict[Any, list[float]] = {}
    for b in bars:
        close_at.setdefault(b.time, []).append(b.close)
    marks = np.array([float(np.mean(close_at.get(t, [np.nan]))) for t in times])
    hold = req.cash * marks / marks[0] if len(marks) and np.isfinite(marks[0]) and marks[0] > 0 else eq
    peak = np.maximum.accumulate(eq)
    chosen = ", ".join(f"{k}={v:g}" for k, v in opt.best.items())
    fold_notes = [f"fold {k}: chose {', '.join(f'{a}={v:g}' for a, v in f.best.items())} on "
                  f"{f.train[0]:%Y-%m-%d}..{f.train[1]:%Y-%m-%d}, traded {f.test[0]:%Y-%m-%d}..{f.test[1]:%Y-%m-%d}"
                  for k, f in enumerate(opt.folds, start=1)]
    deflated = "n/a" if opt.deflated_sharpe is None else f"{opt.deflated_sharpe:.2f}"
    notes = [*opt.notes, *notes]
    said = [f"IN-SAMPLE best of {opt.tried} combinations: {chosen} (deflated Sharpe {deflated}; 0.95 would be "
            "evidence)", *fold_notes, *(f"refused: {s}" for s in opt.skipped[:3]), *notes]
    return BacktestOutcome(
        replace(req, symbol=cfg.symbol), cfg, opt.oos_metrics or opt.best_metrics, (), eq,
        eq / np.where(peak > 0, peak, 1.0) - 1.0, np.asarray(hold, dtype=float),
        np.array([t.timestamp() for t in times]), len(bars), opt.seconds, tuple(said),
        render_optimization_html(opt, cfg, used, len(bars), f"{first:%Y-%m-%d %H:%M}", f"{last:%Y-%m-%d %H:%M}"),
        {}, tuple(describe_used(used)), opt.to_json())


def _buy_and_hold(closes: np.ndarray, bars: list[Bar], symbols: tuple[str, ...], cash: float) -> np.ndarray:
    """The cash put into the stocks at their first opens, in equal parts, marked at each close."""
    from app.engine.backtest.runner import split_symbols  # deferred: in the child, like run_request's

    first_open = {s: own[0].open for s, own in split_symbols(bars).items()}
    growth = np.column_stack([np.where(closes[:, k] > 0, closes[:, k] / (first_open[s] or 1.0), 1.0)
                              for k, s in enumerate(symbols)])
    return growth.mean(axis=1) * cash


def _share(progress: Any, lo: float, hi: float, prefix: str = "") -> Any:
    """``progress`` mapped onto [lo, hi] of the bar; a stage message passes through."""
    def call(fraction: float, stage: str = "") -> bool:
        at = lo + (hi - lo) * fraction
        return bool(progress(at, prefix + stage) if stage else progress(at))

    return call


def child_main(req: BacktestRequest, conn: Any, cancel: Any) -> None:
    """Entry point of the child: messages ``(kind, value)`` go back through ``conn``.

    kinds: progress (percent), stage (what training is doing), done (BacktestOutcome),
    cancelled, error (text)."""
    from loguru import logger

    if hasattr(os, "nice"):
        os.nice(10)  # background work: on a busy machine the desk's own threads go first
    logger.remove()  # the simulated fills are not the desk's record: keep only real problems
    logger.add(sys.stderr, level="ERROR", diagnose=False)
    if req.cache_dir:
        from app.engine.clock import keep_sessions_in  # deferred: the engine loads in the child

        keep_sessions_in(Path(req.cache_dir))
    last: list[Any] = [-1, ""]

    def progress(fraction: float, stage: str = "") -> bool:
        percent = int(fraction * 100)
        if percent != last[0]:  # at most ~100 messages a run, whatever its length
            last[0] = percent
            conn.send(("progress", percent))
        if stage and stage != last[1]:  # training: a few a second at most (one per LSTM epoch)
            last[1] = stage
            conn.send(("stage", stage))
        return not cancel.is_set()

    try:
        conn.send(("done", run_request(req, progress)))
    except BacktestCancelled as exc:
        conn.send(("cancelled", str(exc)))
    except (ValueError, OSError) as exc:  # DataError is a ValueError: a bad file, a bad choice
        conn.send(("error", str(exc)))
    except Exception as exc:  # noqa: BLE001 - never lost: logged with its traceback, shown in the tab in words
        logger.exception("Backtest failed")
        conn.send(("error", f"unexpected error: {type(exc).__name__}: {exc}"))
    finally:
        conn.close()
