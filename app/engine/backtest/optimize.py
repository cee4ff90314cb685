"""Optimisation that does not fool the user: a grid through the same engine, walked forward.

A grid search always finds a winner; on the bars it was chosen on, that winner's figures say
how lucky the best of N tries was, not how it will trade. So the search is reported three
ways, side by side:

* the IN-SAMPLE best over all the bars, and the number of combinations tried for it;
* its deflated Sharpe ratio (Bailey and Lopez de Prado, 2014): the probability that its
  true Sharpe is above zero once the best of that many skill-less tries is allowed for;
* the walk-forward result, the honest one: the bars are cut into ``folds + train_blocks``
  equal blocks; each fold picks the best combination on ``train_blocks`` blocks and trades
  it on the next block, which it never saw; those out-of-sample blocks, stitched one after
  the other (each starting from the last one's equity), are the result.

Each run is a full backtest through the live cycle (``run_backtest``): the same bot, risk,
orders and fills. The model's answers are computed once on all the bars (causal: a bar's
answer uses only earlier closes), so a window's first bars are not lost to warm-up.
Runs go to one process per core; where processes cannot be made (inside the desk's own
backtest process) they run one after another.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from app.engine.backtest.config import MAXIMIZE, RULES, STRATEGY_PARAMS, BacktestCancelled, BacktestConfig
from app.engine.backtest.metrics import compute_metrics
from app.engine.backtest.runner import run_backtest, split_symbols
from app.engine.backtest.strategies import make_model
from app.engine.settings import Settings, SettingsError, field_bounds
from app.engine.strategy.base import SignalModel
from app.engine.strategy.sma_cross import SmaCrossModel
from app.engine.types import Bar

MAX_COMBINATIONS = 2_000
MAX_VALUES = 200  # of one parameter


@dataclass(frozen=True)
class Param:
    name: str
    values: tuple[float, ...]


@dataclass
class Fold:
    train: tuple[datetime, datetime]  # first and last bar time
    test: tuple[datetime, datetime]
    best: dict[str, float]
    train_score: float
    test_metrics: dict[str, Any]


@dataclass
class Optimization:
    maximize: str
    params: list[Param]
    tried: int  # combinations run
    skipped: list[str]  # combinations the settings' rules refuse, with why (e.g. fast >= slow)
    scores: dict[tuple[float, ...], float]  # in-sample score of each combination (all the bars)
    best: dict[str, float]
    best_metrics: dict[str, Any]
    deflated_sharpe: float | None
    folds: list[Fold] = field(default_factory=list)
    oos_metrics: dict[str, Any] = field(default_factory=dict)
    oos_times: list[datetime] = field(default_factory=list)
    oos_equity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    workers: int = 1
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # the model's own word (IN-SAMPLE, no edge, uncalibrated)

    def heatmap(self) -> tuple[str, str, list[float], list[float], np.ndarray]:
        """The score over the first two parameters (the best over any others, as backtesting.py's
        heatmaps): x name, y name, x values, y values, and a (len(y), len(x)) grid, NaN where untried."""
        xp = self.params[0]
        yp = self.params[1] if len(self.params) > 1 else Param("", (0.0,))
        grid = np.full((len(yp.values), len(xp.values)), np.nan)
        for combo, score in self.scores.items():
            i = yp.values.index(combo[1]) if len(self.params) > 1 else 0
            j = xp.values.index(combo[0])
            if score > float("-inf") and not score <= grid[i, j]:  # +inf: a profit factor with no loss
                grid[i, j] = score
        return xp.name, yp.name, list(xp.values), list(yp.values), grid

    def to_json(self) -> dict[str, Any]:
        x, y, xs, ys, grid = self.heatmap()
        return {
            "maximize": self.maximize,
            "params": {p.name: list(p.values) for p in self.params},
            "combinations": self.tried,
            "skipped": self.skipped,
            "in_sample_best": {"params": self.best, "metrics": _clean(self.best_metrics),
                               "note": f"IN-SAMPLE: the best of {self.tried} tries on these same bars"},
            "deflated_sharpe": self.deflated_sharpe,
            "walk_forward": {
                "folds": [{"train": [f.train[0].isoformat(), f.train[1].isoformat()],
                           "test": [f.test[0].isoformat(), f.test[1].isoformat()],
                           "best": f.best, "train_score": _finite(f.train_score),
                           "test_metrics": _clean(f.test_metrics)} for f in self.folds],
                "out_of_sample": _clean(self.oos_metrics),
                "equity": [[t.isoformat(), float(e)] for t, e in zip(self.oos_times, self.oos_equity, strict=True)],
            },
            "heatmap": {"x": x, "y": y, "xs": xs, "ys": ys,
                        # JSON has no infinity: a profit factor with no losing trade is the string "inf"
                        "values": [["inf" if v == float("inf") else _finite(v) for v in row]
                                   for row in grid.tolist()]},
            "workers": self.workers,
            "seconds": self.seconds,
        }


def searchable(strategy: str, plain: bool) -> list[str]:
    """The settings a search may vary for this strategy: the ones that change what it does."""
    names = [n for n in RULES if isinstance(getattr(Settings(), n), (int, float))
             and not isinstance(getattr(Settings(), n), bool)]
    if strategy != "ensemble":
        names = [n for n in names if not n.startswith("weight_")]
    if plain:  # the whole cash, no stops or limits: only the signal's threshold still matters
        names = [n for n in names if n == "auto_threshold"]
    return names


def parse_param(text: str, strategy: str, plain: bool = False) -> Param:
    """``name=start:stop:step`` (stop included), ``name=a,b,c`` or ``name=value``."""
    name, sep, spec = text.partition("=")
    name = name.strip()
    if not sep or not spec.strip():
        raise ValueError(f"--optimize {text!r}: NAME=START:STOP:STEP, e.g. fast=5:30:5")
    own = STRATEGY_PARAMS.get(strategy, ())
    numeric = searchable(strategy, plain)
    if name not in own and name not in numeric:
        choices = ", ".join([*own, *numeric])
        why = (" (a plain backtest has no stops, limits or session rules)" if plain and name in RULES
               else " (only the ensemble has weights)" if name.startswith("weight_") else "")
        raise ValueError(f"--optimize {name}: not a parameter of {strategy}{' --plain' if plain else ''}{why}; "
                         f"one of {choices}")
    try:
        if ":" in spec:
            parts = [float(p) for p in spec.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if not all(math.isfinite(p) for p in parts) or step <= 0 or stop < start:
                raise ValueError
            span = (stop - start) / step
            if not math.isfinite(span) or span + 1 > MAX_VALUES:
                raise ValueError(f"--optimize {name}: {start:g} to {stop:g} in steps of {step:g} is more than "
                                 f"{MAX_VALUES} values; at most {MAX_VALUES}")
            count = math.floor(span + 1e-9) + 1
            values = [round(start + k * step, 10) for k in range(count)]
        else:
            cells = [p.strip() for p in spec.split(",")]
            if not all(cells):
                raise ValueError(f"--optimize {name}: an empty value in {spec!r}")
            values = [float(p) for p in cells]
    except ValueError as exc:
        if str(exc):
            raise
        raise ValueError(f"--optimize {text!r}: START:STOP:STEP with STEP > 0 and STOP >= START, "
                         "or a list a,b,c") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"--optimize {name}: values must be numbers")
    whole = name in own or isinstance(getattr(Settings(), name, 0.0), int)
    if whole:
        if any(v != int(v) for v in values):
            raise ValueError(f"--optimize {name}: whole numbers only")
        values = [float(int(v)) for v in values]
    if name not in own:
        bounds = field_bounds(name)
        out = [v for v in values if not bounds["min"] <= v <= bounds["max"]]
        if out:
            raise ValueError(f"--optimize {name}: {out[0]:g} is outside {bounds['min']:g} to {bounds['max']:g}")
    elif min(values) < 1:
        raise ValueError(f"--optimize {name}: at least 1 bar")
    return Param(name, tuple(dict.fromkeys(values)))


def check_grid(params: Sequence[Param]) -> int:
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise ValueError(f"--optimize names a parameter twice: {', '.join(names)}")
    n = math.prod(len(p.values) for p in params)
    if n > MAX_COMBINATIONS:
        raise ValueError(f"{n:,} combinations: at most {MAX_COMBINATIONS:,} (use fewer values or a coarser step)")
    return n


# ------------------------------------------------------------------- the runs, in any process
_shared: dict[str, Any] = {}


def _setup(bars: list[Bar], cfg: BacktestConfig, settings: dict[str, Any], base_models: dict[str, SignalModel],
           ) -> None:
    """Each process's copy of what every run shares (sent once, not with every run)."""
    if mp.parent_process() is not None:  # a pool's process: problems only, as the command's own logging
        # deferred: the log set-up, in the search's worker processes only
        from app.engine import logs

        logs.configure_simulation()
    _shared.update(bars=bars, cfg=cfg, settings=Settings.from_dict(settings), models=base_models, cache={})


def _run_one(task: tuple[tuple[str, ...], tuple[float, ...], int, int]) -> tuple[str, dict[str, Any] | None,
                                                                                   list[float], list[datetime]]:
    """One combination on bars[start:end]: ("", metrics, equity, times), or (why, None, [], []) when the
    settings' rules refuse the combination."""
    names, values, start, end = task
    bars: list[Bar] = _shared["bars"]
    cfg: BacktestConfig = _shared["cfg"]
    params = dict(zip(names, values, strict=True))
    own = {k: int(v) for k, v in params.items() if k in STRATEGY_PARAMS.get(cfg.strategy, ())}
    rest = {k: (int(v) if isinstance(getattr(Settings(), k), int) else v) for k, v in params.items() if k not in own}
    try:
        settings = _shared["settings"].updated(**rest) if rest else _shared["settings"]
        models = _models_for(own)
    except (SettingsError, ValueError) as exc:
        return str(exc), None, [], []
    window = bars[start:end]
    result = run_backtest(window, cfg, settings, models=models)
    return "", result.metrics, result.equity.tolist(), list(result.times)


def _models_for(own: dict[str, int]) -> dict[str, SignalModel]:
    """The strategy's answers for all the bars with these parameters (made once per process)."""
    cfg: BacktestConfig = _shared["cfg"]
    if not own:
        base: dict[str, SignalModel] = _shared["models"]
        return base
    key = tuple(sorted(own.items()))
    cache: dict[Any, dict[str, SignalModel]] = _shared["cache"]
    if key not in cache:
        if cfg.strategy != "sma_cross":
            raise ValueError(f"{cfg.strategy} has no parameters {', '.join(own)}")
        fast, slow = own.get("fast", 10), own.get("slow", 20)
        if not 1 <= fast < slow:
            raise ValueError(f"fast {fast} must be below slow {slow}")
        cache[key] = {s: SmaCrossModel(fast, slow).precompute(b) for s, b in split_symbols(_shared["bars"]).items()}
    return cache[key]


# ------------------------------------------------------------------------- the search
def optimize(bars: list[Bar], cfg: BacktestConfig, settings: Settings, params: Sequence[Param],
             maximize: str = "sharpe", folds: int = 4, train_blocks: int = 3, workers: int | None = None,
             progress: Callable[[float], bool] | None = None,
             models_dir: Any = None) -> Optimization:
    """The grid on all the bars (in-sample), then walked forward over ``folds`` out-of-sample blocks
    (``folds`` 0: the grid only)."""
    if maximize not in MAXIMIZE:
        raise ValueError(f"--maximize {maximize}: one of {', '.join(MAXIMIZE)}")
    if not params:
        raise ValueError("nothing to optimise: give --optimize NAME=START:STOP:STEP")
    check_grid(params)
    if folds < 0 or folds > 20 or train_blocks < 1 or train_blocks > 20:
        raise ValueError("walk-forward folds: 0 (none) to 20; in-sample blocks: 1 to 20")
    times = sorted({b.time for b in bars})
    blocks = folds + train_blocks if folds else 1
    if len(times) < 50 * blocks:
        what = (f"{folds} walk-forward folds of {train_blocks}+1 blocks (50 bars a block at least); use fewer "
                "--folds" if folds else "a search (50 bars at least)")
        raise ValueError(f"{len(times):,} bar times are too few for {what}")
    started = time.perf_counter()
    bars = sorted(bars, key=lambda b: (b.time, b.symbol))
    cut = [bisect_time(bars, times[len(times) * k // blocks]) for k in range(blocks)] + [len(bars)]
    names = tuple(p.name for p in params)
    combos = list(itertools.product(*(p.values for p in params)))
    base_models, notes = _base_models(bars, cfg, settings, models_dir, names)
    # every task: the whole grid on all the bars, then each fold's grid on its in-sample blocks
    tasks = [(names, c, 0, len(bars)) for c in combos]
    for k in range(folds):
        tasks += [(names, c, cut[k], cut[k + train_blocks]) for c in combos]
    n_workers = _workers(workers, len(tasks))
    results = _map(tasks, n_workers, (bars, cfg, settings.to_dict(), base_models), progress, share=0.9)
    grid = results[: len(combos)]
    skipped = sorted({", ".join(f"{n}={v:g}" for n, v in zip(names, c, strict=True)) + f": {why}"
                      for c, (why, *_) in zip(combos, grid, strict=True)
                      if why})
    scores = {c: _score(m, maximize) for c, (_, m, _, _) in zip(combos, grid, strict=True) if m is not None}
    if not scores:
        raise ValueError(f"every combination was refused: {skipped[0] if skipped else 'no runs'}")
    best_combo = max(scores, key=lambda c: (scores[c], -combos.index(c)))
    best_metrics = grid[combos.index(best_combo)][1] or {}
    best_equity = np.asarray(grid[combos.index(best_combo)][2])
    deflated = _deflated(best_equity, len(scores))
    out = Optimization(maximize, list(params), len(scores), skipped, scores, dict(zip(names, best_combo, strict=True)),
                       best_metrics, deflated, workers=n_workers, notes=notes)
    if folds:
        oos = [(names, _best_of(combos, results[len(combos) * (k + 1): len(combos) * (k + 2)], maximize),
                cut[k + train_blocks], cut[k + train_blocks + 1]) for k in range(folds)]
        tested = _map(oos, n_workers, (bars, cfg, settings.to_dict(), base_models), progress, share=0.1, start=0.9)
        _walk(out, bars, cfg, settings, cut, train_blocks, oos, tested,
              results, combos, maximize)
    out.seconds = time.perf_counter() - started
    return out


def bisect_time(bars: list[Bar], t: datetime) -> int:
    """The index of the first bar at or after ``t`` (bars in time order)."""
    lo, hi = 0, len(bars)
    while lo < hi:
        mid = (lo + hi) // 2
        if bars[mid].time < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _base_models(bars: list[Bar], cfg: BacktestConfig, settings: Settings, models_dir: Any,
                 names: tuple[str, ...]) -> tuple[dict[str, SignalModel], list[str]]:
    """The strategy's answers on all the bars, when no parameter of its own is searched."""
    if any(n in STRATEGY_PARAMS.get(cfg.strategy, ()) for n in names):
        return {}, []
    out: dict[str, SignalModel] = {}
    notes: list[str] = []
    for symbol, own in split_symbols(bars).items():
        out[symbol], said = make_model(cfg.strategy, own, cfg.timeframe, symbol, models_dir, settings,
                                       retrain_every=cfg.retrain_every)
        notes += said
    return out, notes


def _workers(asked: int | None, tasks: int) -> int:
    if mp.current_process().daemon:  # the desk's backtest process may not have children of its own
        return 1
    return max(1, min(asked or os.cpu_count() or 1, tasks))


def _map(tasks: list[Any], workers: int, shared: tuple[Any, ...], progress: Callable[[float], bool] | None,
         share: float, start: float = 0.0) -> list[Any]:
    """Run ``tasks`` in order of the list; ``progress`` between start and start + share."""
    out: list[Any] = []
    if workers == 1:
        _setup(*shared)
        for k, task in enumerate(tasks):
            out.append(_run_one(task))
            if progress is not None and not progress(start + share * (k + 1) / len(tasks)):
                raise BacktestCancelled(f"cancelled after {k + 1} of {len(tasks)} runs")
        return out
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_setup, initargs=shared) as pool:
        for k, result in enumerate(pool.imap(_run_one, tasks, chunksize=max(1, len(tasks) // (workers * 8)))):
            out.append(result)
            if progress is not None and not progress(start + share * (k + 1) / len(tasks)):
                pool.terminate()
                raise BacktestCancelled(f"cancelled after {k + 1} of {len(tasks)} runs")
    return out


def _score(metrics: dict[str, Any] | None, maximize: str) -> float:
    """The figure to maximise; undefined (no trades, no losing bar) ranks last."""
    v = float((metrics or {}).get(maximize, float("nan")))
    if v == float("inf"):
        return v  # a profit factor with no losing trade: the most there is (said "inf" in the report)
    return v if math.isfinite(v) else float("-inf")


def _best_of(combos: list[tuple[float, ...]], results: list[Any], maximize: str) -> tuple[float, ...]:
    """The best combination of one fold's in-sample runs (the first of equals); the first when none ran."""
    scored = [(_score(m, maximize), -k) for k, (_, m, _, _) in enumerate(results) if m is not None]
    if not scored:
        return combos[0]
    return combos[-max(scored)[1]]


def _deflated(equity: np.ndarray, trials: int) -> float | None:
    # deferred: scipy, for the deflated Sharpe only
    from app.engine.ml.edge import deflated_sharpe

    if len(equity) < 3:
        return None
    returns = np.diff(equity) / equity[:-1]
    return deflated_sharpe(returns, max(trials, 1))


def _walk(out: Optimization, bars: list[Bar], cfg: BacktestConfig, settings: Settings, cut: list[int],
          train_blocks: int, oos: list[Any], tested: list[Any], results: list[Any],
          combos: list[tuple[float, ...]], maximize: str) -> None:
    """Each fold's choice and its out-of-sample run; the stitched out-of-sample equity and metrics."""
    names = tuple(p.name for p in out.params)
    equity: list[float] = []
    times: list[datetime] = []
    scale = cfg.cash
    for k, ((_, combo, lo, hi), (why, metrics, eq, ts)) in enumerate(zip(oos, tested, strict=True)):
        fold_runs = results[len(combos) * (k + 1): len(combos) * (k + 2)]
        train_score = max((_score(m, maximize) for _, m, _, _ in fold_runs if m is not None), default=float("nan"))
        start, end = cut[k], cut[k + train_blocks] - 1
        out.folds.append(Fold((bars[start].time, bars[end].time), (bars[lo].time, bars[hi - 1].time),
                              dict(zip(names, combo, strict=True)), train_score,
                              metrics or {"refused": why}))
        if metrics is None:
            continue
        eq_arr = np.asarray(eq) / cfg.cash * scale  # each block starts from the last one's equity
        equity += eq_arr.tolist()
        times += ts
        scale = float(eq_arr[-1])
    out.oos_times, out.oos_equity = times, np.asarray(equity)
    if len(equity) > 1:
        first_open, last_close = _basket(bars[cut[train_blocks]:])
        out.oos_metrics = compute_metrics(out.oos_equity, times, [], cfg.timeframe, np.zeros(len(equity), bool),
                                          first_open, last_close, 0.0, settings.risk_free_rate)
        out.oos_metrics["trades"] = sum(int(f.test_metrics.get("trades", 0)) for f in out.folds)
        for key in ("win_rate", "profit_factor", "avg_win", "avg_loss", "exposure", "turnover"):
            out.oos_metrics.pop(key, None)  # per fold, in the folds' own figures


def _basket(bars: list[Bar]) -> tuple[float, float]:
    """Buy and hold over ``bars`` as (first open, last close): one symbol's own, or an equal-weight
    basket's growth (1, mean of each symbol's last close / first open), as the plain report does."""
    by_symbol = split_symbols(bars)
    if len(by_symbol) == 1:
        own = next(iter(by_symbol.values()))
        return own[0].open, own[-1].close
    return 1.0, float(np.mean([b[-1].close / b[0].open for b in by_symbol.values()]))


def _finite(v: Any) -> Any:
    return v if not isinstance(v, float) or math.isfinite(v) else None


def _clean(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else _finite(v)) for k, v in d.items()}
