"""``python main.py backtest ...``: history through the same engine, with a report."""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from app.cli.options import add_date_order
from app.engine.backtest.config import (
    MAXIMIZE,
    STRATEGIES,
    BacktestConfig,
    check_costs,
    check_retrain_every,
    commission_terms,
    describe_used,
    settings_used,
)
from app.engine.backtest.optimize import check_grid, optimize, parse_param
from app.engine.backtest.report import render_html, render_optimization_html
from app.engine.backtest.runner import run_backtest, write_json
from app.engine.data.portfolio import load_portfolio
from app.engine.paths import AppPaths
from app.engine.settings import Settings
from app.engine.types import TIMEFRAMES


def add_backtest_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("backtest", help="run history through the trading engine")
    p.add_argument("--symbol", help="the ticker a lone file holds when it does not say (default PLTR)")
    p.add_argument("--csv", required=True, action="append", metavar="[SYM=]FILE",
                   help="bars to test on (columns found by name); repeat for a portfolio on one account: "
                        "--csv QQQ=a.csv --csv NVDA=b.csv (a bare path: the symbol from the file)")
    p.add_argument("--timeframe", default="5m", choices=list(TIMEFRAMES))
    p.add_argument("--strategy", default="sma_cross", choices=STRATEGIES)
    add_date_order(p)
    p.add_argument("--start", help="first day (YYYY-MM-DD), inclusive")
    p.add_argument("--end", help="last day (YYYY-MM-DD), exclusive")
    p.add_argument("--cash", type=float, default=100_000.0)
    p.add_argument("--commission", type=float,
                   help="commission: dollars per share, or a fraction of traded value (--commission-mode); "
                        "default: the saved setting")
    p.add_argument("--commission-mode", choices=("per_share", "fraction"), default="per_share")
    p.add_argument("--slippage-bps", type=float, help="slippage on each fill (default: the saved setting, 2)")
    p.add_argument("--plain", action="store_true",
                   help="textbook backtest: no risk limits, no session rules, whole cash per trade")
    p.add_argument("--retrain-every", type=int, metavar="N",
                   help="ensemble only: walk forward, retraining every N bars on earlier bars only "
                        "(slow: one training per block); 0 uses the saved model (default: the setting)")
    p.add_argument("--optimize", action="append", metavar="NAME=START:STOP:STEP", default=[],
                   help="search a grid (repeat per parameter): fast=5:30:5, slow=20:100:10 (sma_cross), or a "
                        "risk setting such as stop_loss_pct=0.02:0.05:0.01; walked forward (--folds)")
    p.add_argument("--maximize", default="sharpe", choices=MAXIMIZE, help="what the search maximises")
    p.add_argument("--folds", type=int, default=4,
                   help="walk-forward folds of the search: each picks the best on --train-blocks blocks and "
                        "trades it on the next (0: the in-sample grid only)")
    p.add_argument("--train-blocks", type=int, default=3, help="in-sample blocks of each fold (each as long as "
                                                                  "its out-of-sample block)")
    p.add_argument("--workers", type=int, help="processes for the search (default: one per core)")
    p.add_argument("--json", dest="json_out", help="write metrics, trades, bars and elapsed_seconds here")
    p.add_argument("--html", dest="html_out", help="write a self-contained HTML report here")
    return p


def run_backtest_command(args: argparse.Namespace, paths: AppPaths, out: TextIO | None = None) -> int:
    try:
        return _run(args, paths, out or sys.stdout)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stopped (Ctrl+C): nothing was written", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, paths: AppPaths, out: TextIO) -> int:
    saved = Settings.load(paths.settings)  # thresholds, weights, risk rules and costs, as the desk trades
    if args.commission is None:
        if args.commission_mode == "fraction":
            raise ValueError("--commission-mode fraction needs --commission (the saved setting is per share)")
        args.commission = saved.commission_per_share
    if args.slippage_bps is None:
        args.slippage_bps = saved.slippage_bps
    check_costs(args.commission, args.commission_mode, args.slippage_bps, args.cash, flags=True)
    for flag, target in (("--json", args.json_out), ("--html", args.html_out)):
        folder = Path(target).expanduser().parent if target else None
        if folder is not None and not folder.is_dir():  # said now, not after a long run
            raise ValueError(f"{flag} {target}: no folder {folder}")
        if target and Path(target).expanduser().is_dir():
            raise ValueError(f"{flag} {target} is a folder: name the file to write")
    if args.retrain_every is None:  # the saved setting, for the strategy it applies to
        args.retrain_every = saved.backtest_retrain_bars if args.strategy == "ensemble" else 0
    check_retrain_every(args.retrain_every, args.strategy)
    # plain: no session rules, so no hours are cut either
    bars, loaded = load_portfolio(args.csv, args.symbol, args.timeframe, keep_extended=args.plain)
    if args.start and args.end and _day(args.start) >= _day(args.end):
        raise ValueError(f"--start {args.start} is not before --end {args.end} (--end is exclusive)")
    loaded_symbols = {b.symbol for b in bars}
    if args.start:
        bars = [b for b in bars if b.time >= _day(args.start)]
    if args.end:
        bars = [b for b in bars if b.time < _day(args.end)]
    if len(bars) < 2:
        raise ValueError("fewer than two bars in the chosen window")
    for gone in sorted(loaded_symbols - {b.symbol for b in bars}):
        print(f"note: {gone} has no bars in the chosen window: left out", file=out)
    per_share, rate = commission_terms(args.commission, args.commission_mode)
    symbols = sorted({b.symbol for b in bars})
    cfg = BacktestConfig(",".join(symbols), args.timeframe, args.strategy, args.cash, per_share, rate,
                         args.slippage_bps, args.plain, retrain_every=args.retrain_every)
    if cfg.retrain_every:
        print(f"training the ensemble every {cfg.retrain_every} bars (walk-forward): this takes a while",
              file=out, flush=True)
    for line in loaded:  # one file too: its rows read and rejected are said
        print(line, file=out)
    if args.optimize:
        return _optimize(args, bars, cfg, saved, paths, out, loaded)
    result = run_backtest(bars, cfg, saved, models_dir=paths.models)
    for note in result.notes:
        print(f"note: {note}", file=out)
    for line in describe_used(result.used):
        print(line, file=out)
    m = result.metrics
    of = f" of {len(symbols)} symbols" if len(symbols) > 1 else ""
    print(f"{len(bars):,} bars{of}, {m['trades']} trades in {result.elapsed_seconds:.2f} s "
          f"({len(bars) / max(result.elapsed_seconds, 1e-9):,.0f} bars/s through the engine; the model's "
          f"answers took {result.model_seconds:.2f} s more)", file=out)
    print(f"total return {m['total_return']:+.2%} (buy and hold {m['buy_and_hold_return']:+.2%}), "
          f"max drawdown {m['max_drawdown']:.2%}, Sharpe {_num(m['sharpe'])}, Sortino {_num(m['sortino'])}, "
          f"Calmar {_num(m['calmar'])}, win rate {_num(m['win_rate'], '.1%')}", file=out)
    if cfg.commission_per_share or cfg.commission_rate:
        print("note: the return is after commissions; win rate, profit factor and the trades' P&L are before "
              "them (price moves only)", file=out)
    if m["open_positions"]:
        print(f"open at the end: {m['open_positions']} position(s), marked to market at the last close (in the "
              "return, not in the win rate)", file=out)
    if len(symbols) > 1:
        for symbol, sm in result.per_symbol.items():
            print(f"  {symbol}: {sm['trades']} trades, return {sm['total_return']:+.2%} of the account, "
                  f"buy and hold {sm['buy_and_hold_return']:+.2%}", file=out)
    if args.json_out:
        write_json({**result.to_json(), "data": loaded}, Path(args.json_out))  # "data": what reading each file did
        print(f"wrote {args.json_out}", file=out)
    if args.html_out:
        Path(args.html_out).write_text(render_html(result, bars))
        print(f"wrote {args.html_out}", file=out)
    return 0


def _optimize(args: argparse.Namespace, bars: list[Any], cfg: BacktestConfig, saved: Settings, paths: AppPaths,
              out: TextIO, loaded: list[str]) -> int:
    """The grid, walked forward: the out-of-sample result first, the in-sample best beside it."""
    params = [parse_param(text, cfg.strategy, cfg.plain) for text in args.optimize]
    combos = check_grid(params)
    if args.workers is not None and not 1 <= args.workers <= 64:
        raise ValueError(f"--workers {args.workers}: 1 to 64")
    told = [-1]

    def progress(fraction: float) -> bool:  # a long grid says how far it is, every tenth
        tenth = int(fraction * 10)
        if tenth != told[0] and tenth < 10:
            told[0] = tenth
            print(f"  {tenth * 10}% of the runs done", file=out, flush=True)
        return True

    print(f"optimising {args.maximize} over {combos} combinations of "
          + ", ".join(f"{p.name} ({len(p.values)} values)" for p in params)
          + (f", walked forward over {args.folds} folds" if args.folds else " (in-sample only: --folds 0)"),
          file=out, flush=True)
    opt = optimize(bars, cfg, saved, params, args.maximize, args.folds, args.train_blocks, args.workers,
                   models_dir=paths.models, progress=progress)
    for note in opt.notes:
        print(f"note: {note}", file=out)
    if any("IN-SAMPLE" in n for n in opt.notes):
        print("note: the saved model was trained on these bars, so no block below is truly out of sample",
              file=out)
    used = settings_used(cfg, saved.updated(mode="auto", slippage_bps=cfg.slippage_bps))
    for line in describe_used(used):
        print(line, file=out)
    if opt.skipped:
        print(f"note: {len(opt.skipped)} combination(s) refused by the rules, e.g. {opt.skipped[0]}", file=out)
    print(f"{opt.tried} combinations run in {opt.seconds:.1f} s on {opt.workers} process(es)", file=out)
    best, m = opt.best, opt.best_metrics
    chosen = ", ".join(f"{k}={v:g}" for k, v in best.items())
    figure = _figure(args.maximize, float(m[args.maximize]))
    print(f"IN-SAMPLE best ({chosen}): return {m['total_return']:+.2%}, {args.maximize.replace('_', ' ')} "
          f"{figure}, max drawdown {m['max_drawdown']:.2%}, {m['trades']} trades: the best of "
          f"{opt.tried} tries on the bars it is scored on, not a forecast", file=out)
    deflated = "n/a" if opt.deflated_sharpe is None else f"{opt.deflated_sharpe:.2f}"
    print(f"deflated Sharpe ratio {deflated}: P(true Sharpe > 0) after {opt.tried} tries (0.95 would be evidence)",
          file=out)
    for k, f in enumerate(opt.folds, start=1):
        tm = f.test_metrics
        said = (f"return {tm['total_return']:+.2%}, Sharpe {_num(float(tm['sharpe']))}, {tm['trades']} trades"
                if "total_return" in tm else f"refused: {tm.get('refused', '?')}")
        print(f"  fold {k}: chose {', '.join(f'{a}={v:g}' for a, v in f.best.items())} on "
              f"{f.train[0]:%Y-%m-%d}..{f.train[1]:%Y-%m-%d}; out of sample "
              f"{f.test[0]:%Y-%m-%d}..{f.test[1]:%Y-%m-%d}: {said}", file=out)
    if opt.oos_metrics:
        o = opt.oos_metrics
        print(f"walk-forward (out of sample, stitched): return {o['total_return']:+.2%}, Sharpe {_num(o['sharpe'])}, "
              f"max drawdown {o['max_drawdown']:.2%}, {o['trades']} trades "
              f"(buy and hold {o['buy_and_hold_return']:+.2%})", file=out)
    if args.json_out:
        doc = {"config": cfg.__dict__, "settings_used": used, "bars": len(bars), "data": loaded,
               "optimization": opt.to_json()}
        Path(args.json_out).write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json_out}", file=out)
    if args.html_out:
        first, last = min(b.time for b in bars), max(b.time for b in bars)
        Path(args.html_out).write_text(render_optimization_html(opt, cfg, used, len(bars), f"{first:%Y-%m-%d %H:%M}",
                                                                f"{last:%Y-%m-%d %H:%M}"))
        print(f"wrote {args.html_out}", file=out)
    return 0


def _figure(name: str, value: float) -> str:
    """A maximised figure as the report says it: rates as percentages, a profit factor with no
    losing trade as "inf"."""
    if value == math.inf:
        return "inf (no losing trade)"
    return _num(value, "+.2%" if name == "total_return" else ".1%" if name == "win_rate" else ".2f")


def _num(value: float, spec: str = ".2f") -> str:
    """A metric, or "n/a" where it is undefined (no trades, no losing bar): never a made-up 0."""
    return format(value, spec) if math.isfinite(value) else "n/a"


def _day(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None
