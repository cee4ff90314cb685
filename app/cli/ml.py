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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import pandas as pd
from loguru import logger

from app.cli.options import add_date_order
from app.engine.clock import Clock, WallClock
from app.engine.data.frame import DataError
from app.engine.data.service import default_start, fetch_and_cache, normalize_symbol
from app.engine.data.sources import SOURCE_CHOICES, CacheSource, SimulatedSource, choose_source, yfinance_reachable
from app.engine.ml.artifacts import ArtifactError, load_bundle, save_bundle
from app.engine.ml.dataset import load_csv_bars
from app.engine.ml.live import predict_frame
from app.engine.ml.models import TrainingCancelled
from app.engine.ml.train import SMALL_OVERRIDES, TrainConfig, train
from app.engine.paths import AppPaths
from app.engine.secrets import load_keys
from app.engine.settings import Settings
from app.engine.storage import BarRepository, Storage, StorageError
from app.engine.types import TIMEFRAMES

EXIT_ERROR = 2
EXIT_CANCELLED = 130


def add_ml_parsers(subparsers: Any) -> None:
    """Add ``train`` and ``predict`` to a main parser's subcommands."""

    timeframes = list(TIMEFRAMES)
    train = subparsers.add_parser("train", help="train and evaluate the prediction ensemble")
    train.add_argument("--symbol", required=True, help="ticker, e.g. PLTR")
    src = train.add_mutually_exclusive_group()
    src.add_argument("--csv", metavar="FILE", help="bars from a CSV file")
    src.add_argument("--source", choices=SOURCE_CHOICES, default=None,
                     help="bars from a data source via the local cache (default: auto)")
    train.add_argument("--timeframe", default="5m", choices=timeframes)
    train.add_argument("--horizon", type=int, help="a time stop in bars on the labelled trades, for research "
                       "(default: none; a trade ends at its stop, trailing stop, take-profit or the flatten)")
    train.add_argument("--folds", type=int, default=5, help="walk-forward test folds (default 5)")
    train.add_argument("--json", metavar="FILE", help="write the walk-forward metrics as JSON")
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

    symbol = normalize_symbol(args.symbol)
    if args.horizon is not None and args.horizon < 1:
        raise DataError(f"--horizon {args.horizon}: a time stop on the labelled trades must be at least 1 bar")
    if args.folds < 1:
        raise DataError(f"--folds {args.folds}: the walk-forward needs at least 1 test fold")
    frame, label = _bars(args, paths, symbol, clock, probe, out)
    print(f"training {symbol} {args.timeframe} on {len(frame)} bars from {label}", file=out)
    settings = Settings.load(paths.settings)
    config = TrainConfig(symbol=symbol, timeframe=args.timeframe, horizon=args.horizon, folds=args.folds,
                         overrides=dict(SMALL_OVERRIDES) if getattr(args, "small", False) else {})
    result = train(frame, settings, config, _printer(err))
    for line in result.report.lines():
        print(line, file=out)
    metrics = result.report.to_dict()
    folder = save_bundle(paths.model_dir(symbol, args.timeframe), result.ensemble,
                         result.info, metrics, saved_at=clock.now())
    if result.info["skipped"]:
        for name, why in result.info["skipped"].items():
            print(f"warning: {name} was not trained: {why}", file=err)
    print(f"saved {', '.join(result.ensemble.components)} to {folder} "
          f"({result.info['seconds']:.0f} s)", file=out)
    verdict = result.verdict
    if verdict.edge:
        print(f"edge: yes ({verdict.reason}); the app trades this model", file=out)
    else:
        print(f"edge: NO ({verdict.reason}); saved with edge: false, it never trades: the app trades its "
              "rules model instead", file=out)
    if args.json:
        Path(args.json).write_text(json.dumps({**verdict.to_dict(), "info": result.info, **metrics}, indent=2,
                                              default=str), encoding="utf-8")
    return 0


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
