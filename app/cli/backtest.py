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
    STRATEGIES,
    BacktestConfig,
    check_costs,
    check_retrain_every,
    commission_terms,
    describe_used,
)
from app.engine.backtest.report import render_html
from app.engine.backtest.runner import run_backtest
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
    p.add_argument("--json", dest="json_out", help="write metrics, trades, bars and elapsed_seconds here")
    p.add_argument("--html", dest="html_out", help="write a self-contained HTML report here")
    return p


def run_backtest_command(args: argparse.Namespace, paths: AppPaths, out: TextIO | None = None) -> int:
    try:
        return _run(args, paths, out or sys.stdout)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, paths: AppPaths, out: TextIO) -> int:
    saved = Settings.load(paths.settings)  # thresholds, weights, risk rules and costs, as the desk trades
    if args.commission is None:
        if args.commission_mode == "fraction":
            raise ValueError("--commission-mode fraction needs --commission (the saved setting is per share)")
        args.commission = saved.commission_per_share
    if args.slippage_bps is None:
        args.slippage_bps = saved.slippage_bps
    check_costs(args.commission, args.commission_mode, args.slippage_bps, args.cash)
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
    if len(loaded) > 1:
        for line in loaded:
            print(line, file=out)
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
        Path(args.json_out).write_text(json.dumps(result.to_json(), indent=2))
        print(f"wrote {args.json_out}", file=out)
    if args.html_out:
        Path(args.html_out).write_text(render_html(result, bars))
        print(f"wrote {args.html_out}", file=out)
    return 0


def _num(value: float, spec: str = ".2f") -> str:
    """A metric, or "n/a" where it is undefined (no trades, no losing bar): never a made-up 0."""
    return format(value, spec) if math.isfinite(value) else "n/a"


def _day(text: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None
