"""``ai-trader train`` and ``ai-trader predict``: the models from the command line.

``train`` reads bars (a CSV file, or a data source through the local cache),
runs the walk-forward evaluation, trains the final calibrated ensemble and
saves it where the app looks for it (``models/SYMBOL_TIMEFRAME``).
``predict`` writes one JSON object per bar with enough history. A failure is
one ``error: ...`` line on stderr and a non-zero exit status, never a
traceback (that goes to the log); Ctrl-C cancels training cleanly.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
from loguru import logger

from app.cli.options import add_date_order
from app.engine.clock import Clock, WallClock
from app.engine.data.frame import DataError
from app.engine.data.portfolio import bar_files
from app.engine.data.service import default_start, fetch_and_cache, normalize_symbol
from app.engine.data.sources import SOURCE_CHOICES, CacheSource, SimulatedSource, choose_source, yfinance_reachable
from app.engine.files import not_a_file
from app.engine.ml.artifacts import ArtifactError, load_bundle, save_bundle
from app.engine.ml.dataset import load_csv_bars
from app.engine.ml.live import edge_of, market_note, predict_frame
from app.engine.ml.models import TrainingCancelled
from app.engine.ml.pooled import train_pooled
from app.engine.ml.train import SMALL_OVERRIDES, TrainConfig, train
from app.engine.paths import AppPaths
from app.engine.secrets import load_keys
from app.engine.settings import Settings
from app.engine.storage import BarRepository, Storage, StorageError
from app.engine.types import TIMEFRAMES

EXIT_ERROR = 2
MAX_FOLDS = 50
MAX_HORIZON = 10_000
EXIT_CANCELLED = 130


def add_ml_parsers(subparsers: Any) -> None:
    """Add ``train`` and ``predict`` to a main parser's subcommands."""

    timeframes = list(TIMEFRAMES)
    train = subparsers.add_parser("train", help="train and evaluate the prediction ensemble")
    train.add_argument("--symbol", help="ticker, e.g. PLTR (with --source, or a lone CSV that does not say)")
    src = train.add_mutually_exclusive_group()
    src.add_argument("--csv", metavar="[SYM=]FILE", action="append",
                     help="bars from a CSV file; repeat it for a watchlist: one model learns from every "
                          "symbol's trades and is judged on each")
    src.add_argument("--source", choices=SOURCE_CHOICES, default=None,
                     help="bars from a data source via the local cache (default: auto)")
    train.add_argument("--timeframe", default="5m", choices=timeframes)
    train.add_argument("--horizon", type=int, help="a time stop in bars on the labelled trades, for research "
                       "(default: none; a trade ends at its stop, trailing stop, take-profit or the flatten)")
    train.add_argument("--folds", type=int, default=5, help="walk-forward test folds (default 5)")
    train.add_argument("--json", metavar="FILE", help="write the walk-forward metrics as JSON")
    train.add_argument("--jobs", type=int, default=None,
                       help="cores the forest grows its trees on (default: all of them)")
    train.add_argument("--small", action="store_true", help=argparse.SUPPRESS)  # tiny models: smoke tests
    add_date_order(train)
    train.set_defaults(handler=run_ml_command, ml_command="train")

    pred = subparsers.add_parser("predict", help="P(up) for every bar of a file with the trained ensemble")
    pred.add_argument("--symbol", required=True)
    pred.add_argument("--csv", metavar="FILE", help="bars to predict (default: the local cache)")
    pred.add_argument("--timeframe", default="5m", choices=timeframes)
    pred.add_argument("--json", metavar="FILE", help="write the predictions here instead of stdout")
    add_date_order(pred)
    pred.set_defaults(handler=run_ml_command, ml_command="predict")


def run_ml_command(args: argparse.Namespace, paths: AppPaths, *, clock: Clock | None = None,
                   probe_yfinance: Callable[[], bool] | None = None,
                   stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``train`` or ``predict``; returns the process exit status."""

    out, err = stdout or sys.stdout, stderr or sys.stderr
    command = getattr(args, "ml_command", None) or getattr(args, "command", "?")
    try:
        if command == "train":
            return _train(args, paths, out, err, clock or WallClock(), probe_yfinance)
        if command == "predict":
            return _predict(args, paths, out, err)
        raise DataError(f"unknown command {command!r}")
    except (TrainingCancelled, KeyboardInterrupt):
        print("error: training cancelled; the previous model (if any) is unchanged", file=err)
        return EXIT_CANCELLED
    except (DataError, ArtifactError, StorageError, OSError, ValueError) as exc:
        logger.info("{} failed: {}", command, exc)
        print(f"error: {_one_line(exc)}", file=err)
    except Exception as exc:  # noqa: BLE001 - the user gets a line, the log the traceback
        logger.opt(exception=exc).info("{} failed unexpectedly", command)
        print(f"error: {type(exc).__name__}: {_one_line(exc)}", file=err)
    return EXIT_ERROR


def _train(args: argparse.Namespace, paths: AppPaths, out: TextIO, err: TextIO, clock: Clock,
           probe: Callable[[], bool] | None) -> int:

    if args.horizon is not None and not 1 <= args.horizon <= MAX_HORIZON:
        raise DataError(f"--horizon {args.horizon}: a time stop on the labelled trades is 1 to {MAX_HORIZON:,} bars")
    if not 1 <= args.folds <= MAX_FOLDS:
        raise DataError(f"--folds {args.folds}: the walk-forward takes 1 to {MAX_FOLDS} test folds")
    if getattr(args, "jobs", None) is not None and not 1 <= args.jobs <= 256:
        raise DataError(f"--jobs {args.jobs}: the forest grows its trees on 1 to 256 cores")
    if args.json:  # said before minutes of training, not after
        target = Path(args.json).expanduser()
        why = not_a_file(target) or (None if target.parent.is_dir() else f"no folder {target.parent}")
        if why:
            raise DataError(f"--json {args.json}: {why}")
    if args.symbol:
        normalize_symbol(args.symbol)  # a bad ticker is said before any file is read
    if args.csv:
        files = bar_files(args.csv, args.symbol)
        if args.symbol and normalize_symbol(args.symbol) not in {s for s, _ in files}:
            raise DataError(f"--symbol {normalize_symbol(args.symbol)} is not among the files' symbols "
                            f"({', '.join(s for s, _ in files)}): name the file {normalize_symbol(args.symbol)}=FILE")
        frames = {s: load_csv_bars(path, args.timeframe, s) for s, path in files}
        for s, f in frames.items():
            print(f"{s}: {len(f):,} bars", file=out)
    else:
        if not args.symbol:
            raise DataError("name the stock: --symbol TICKER (or give its bars with --csv FILE)")
        symbol = normalize_symbol(args.symbol)
        frames = {symbol: _cached_bars(args, paths, symbol, clock, probe, out)[0]}
    settings = Settings.load(paths.settings)
    config = TrainConfig(symbol=next(iter(frames)), timeframe=args.timeframe, horizon=args.horizon,
                         folds=args.folds, overrides=dict(SMALL_OVERRIDES) if getattr(args, "small", False) else {},
                         jobs=args.jobs or os.cpu_count() or 1)  # by default the command has the machine
    print(f"training {', '.join(frames)} {args.timeframe} on {sum(len(f) for f in frames.values()):,} bars",
          file=out)
    if len(frames) > 1:
        return _train_pooled(args, paths, frames, settings, config, out, err, clock)
    result = train(next(iter(frames.values())), settings, config, _printer(err))
    for line in result.report.lines():
        print(line, file=out)
    metrics = result.report.to_dict()
    folder = save_bundle(paths.model_dir(config.symbol, args.timeframe), result.ensemble,
                         result.info, metrics, saved_at=clock.now())
    _skipped(result.info, err)
    print(f"saved {', '.join(result.ensemble.components)} to {folder} "
          f"({result.info['seconds']:.0f} s)", file=out)
    _say_verdict(config.symbol, result.verdict.edge, result.verdict.reason, out)
    if args.json:
        verdict = result.verdict.to_dict()
        Path(args.json).write_text(json.dumps({**verdict, "per_symbol": {config.symbol: verdict},
                                               "info": result.info, **metrics}, indent=2, default=str),
                                   encoding="utf-8")
    return 0


def _train_pooled(args: argparse.Namespace, paths: AppPaths, frames: dict[str, pd.DataFrame], settings: Settings,
                  config: TrainConfig, out: TextIO, err: TextIO, clock: Clock) -> int:
    started = time.perf_counter()
    result = train_pooled(frames, settings, config, _printer(err))
    for line in result.report.lines():
        print(line, file=out)
    metrics = result.report.to_dict()
    _skipped(result.info, err)
    cs = result.cross_sectional
    print(f"across symbols: rank IC {cs['rank_ic']} {cs['rank_ic_ci']} over {cs['times']} bar times with "
          f"trades of {cs['min_symbols']}+ symbols", file=out)
    v = result.verdict
    print(f"pooled: edge {'yes' if v.edge else 'NO'} ({v.reason})", file=out)
    for s in frames:
        info = {**result.info_for(s), "seconds": round(time.perf_counter() - started, 2)}
        folder = save_bundle(paths.model_dir(s, args.timeframe), result.ensemble, info, metrics, saved_at=clock.now())
        print(f"saved {s}'s copy to {folder}", file=out)
        _say_verdict(s, info["edge"], info["edge_reason"], out)
    if args.json:
        Path(args.json).write_text(json.dumps({**result.to_dict(), "info": result.info, **metrics}, indent=2,
                                              default=str), encoding="utf-8")
    return 0


def _skipped(info: dict[str, Any], err: TextIO) -> None:
    for name, why in (info.get("skipped") or {}).items():
        print(f"warning: {name} was not trained: {why}", file=err)


def _say_verdict(symbol: str, edge: bool, reason: str, out: TextIO) -> None:
    if edge:
        print(f"edge: yes ({reason}); the app trades this model for {symbol}", file=out)
    else:
        print(f"edge: NO ({reason}); saved with edge: false, it never trades: the app trades its rules model "
              f"for {symbol} instead", file=out)


def _printer(err: TextIO) -> Callable[[float, str], bool]:
    """Progress on stderr, so stdout stays the report."""
    def show(fraction: float, message: str) -> bool:
        print(f"[{fraction:6.1%}] {message}", file=err)
        return True

    return show


def _bars(args: argparse.Namespace, paths: AppPaths, symbol: str, clock: Clock,
          probe: Callable[[], bool] | None, out: TextIO) -> tuple[pd.DataFrame, str]:

    if getattr(args, "csv", None):
        return load_csv_bars(args.csv, args.timeframe, symbol), Path(args.csv).name
    return _cached_bars(args, paths, symbol, clock, probe, out)


def _cached_bars(args: argparse.Namespace, paths: AppPaths, symbol: str, clock: Clock,
                 probe: Callable[[], bool] | None, out: TextIO) -> tuple[pd.DataFrame, str]:
    """Fill the cache from the chosen source (only what it lacks), then read it."""

    paths.ensure()
    storage = Storage(paths.database)
    try:
        preference = getattr(args, "source", None) or ("cache" if args.ml_command == "predict" else "auto")
        cache = CacheSource(storage)
        source, label = choose_source(preference, load_keys(paths.env_file), cache,
                                      probe or yfinance_reachable, clock=clock)
        if isinstance(source, SimulatedSource):
            raise DataError("no market data source is available (no Alpaca keys, Yahoo unreachable, "
                            "empty cache); pass --csv FILE")
        if not isinstance(source, CacheSource):
            end = clock.now()
            for line in fetch_and_cache(storage, source, symbol, args.timeframe,
                                        default_start(args.timeframe, end), end).lines():
                print(line, file=out)
        frame = BarRepository(storage).load_frame(symbol, args.timeframe)
    finally:
        storage.close()
    if frame.empty:
        raise DataError(f"the local cache holds no {symbol} {args.timeframe} bars; pass --csv FILE")
    return frame, label


def _predict(args: argparse.Namespace, paths: AppPaths, out: TextIO, err: TextIO) -> int:
    symbol = normalize_symbol(args.symbol)
    bundle = load_bundle(paths.model_dir(symbol, args.timeframe), symbol=symbol,
                         timeframe=args.timeframe)
    frame, _ = _bars(args, paths, symbol, WallClock(), None, out)
    preds = predict_frame(bundle, frame, (Settings.load(paths.settings)).ensemble_weights())
    rows = prediction_records(preds)
    start, end = bundle.meta.get("train_start"), bundle.meta.get("train_end")
    if start and end:
        lo, hi = pd.Timestamp(start), pd.Timestamp(end)
        for row in rows:
            row["in_sample"] = bool(lo <= pd.Timestamp(row["timestamp"]) <= hi)
        inside = sum(r["in_sample"] for r in rows)
        if inside:
            print(f"IN-SAMPLE: {inside:,} of {len(rows):,} bars lie in the model's training window "
                  f"({start[:10]} .. {end[:10]}): it learned from them, so their predictions say nothing about "
                  "how it does on new bars", file=err)
    text = json.dumps(rows, indent=1)
    if args.json:
        Path(args.json).write_text(text, encoding="utf-8")
        last = rows[-1] if rows else None
        tail = f"; last {last['timestamp']} {last['signal']} {last['confidence']:.2f}" if last else ""
        print(f"wrote {len(rows)} predictions to {args.json}{tail}", file=out)
    else:
        print(text, file=out)
    for name, why in bundle.problems.items():
        print(f"warning: {name} left out: {why}", file=err)
    if (note := market_note(bundle.meta.get("market") or [symbol], {symbol})) is not None:
        print(f"warning: {note} (this file alone): its market features are not the ones it learned", file=err)
    no_edge = edge_of(bundle.meta)
    if no_edge:
        print(f"warning: NO DEMONSTRATED EDGE ({no_edge}): the app never trades this model; these are its "
              "answers, for study", file=err)
    return 0


def prediction_records(preds: pd.DataFrame) -> list[dict[str, Any]]:
    """One JSON object per bar; probabilities rounded to 6 places, null when absent."""
    def num(v: float) -> float | None:
        return round(float(v), 6) if math.isfinite(v) else None

    return [{"timestamp": ts.isoformat(), "p_lstm": num(r.p_lstm), "p_rf": num(r.p_random_forest),
             "p_hist_gb": num(r.p_hist_gb), "p_momentum": num(r.p_momentum), "p_up": num(r.p_up),
             "confidence": num(r.confidence), "primary_buy": bool(r.primary),
             "expected_bps": num(r.expected_bps), "signal": r.signal}
            for ts, r in zip(preds.index, preds.itertuples(index=False), strict=True)]


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
