"""``ai-trader data import|fetch``: fill the local bar cache from the command line.

Headless and scriptable: it prints what was accepted, rejected and why, and
which source was used. Any failure is one ``error: ...`` line on stderr and
exit status 2, never a traceback (the traceback goes to the log file).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from loguru import logger

from app.cli.options import add_date_order
from app.engine.clock import NY, Clock, WallClock
from app.engine.data.frame import DataError
from app.engine.data.service import (
    default_start,
    fetch_and_cache,
    import_file,
    named_in_file,
    normalize_symbol,
)
from app.engine.data.sources import (
    SOURCE_CHOICES,
    CacheSource,
    SimulatedSource,
    choose_source,
    yfinance_reachable,
)
from app.engine.paths import AppPaths
from app.engine.secrets import load_keys
from app.engine.settings import Settings
from app.engine.storage import Storage, StorageError
from app.engine.types import TIMEFRAMES

EXIT_ERROR = 2


def add_data_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``data`` command (with ``import`` and ``fetch``) to a main parser."""
    data = subparsers.add_parser("data", help="import or fetch market data into the local cache")
    sub = data.add_subparsers(dest="data_command", metavar="{import,fetch}")
    sub.required = True
    timeframes = list(TIMEFRAMES)

    imp = sub.add_parser("import", help="import bars from a CSV file")
    imp.add_argument("file", help="CSV with date/time, open, high, low, close, volume columns")
    imp.add_argument("--symbol", help="ticker the file holds, e.g. PLTR (default: its symbol column's, "
                     "each under its own, else from a name like SPY_5m_....csv)")
    imp.add_argument("--timeframe", choices=timeframes, help="bar size (default: from the file's name, else 5m)")
    imp.add_argument("--rename", action="store_true",
                     help="store the bars under --symbol even though the file's name or symbol column "
                     "says another ticker")
    imp.add_argument("--replace", action="store_true",
                     help="overwrite cached bars even where the file's prices differ from them (another "
                     "adjustment); without it such a file is refused as another stock's")
    imp.add_argument("--keep-extended", action="store_true",
                     help="keep pre/post-market bars (dropped by default)")
    add_date_order(imp)

    fetch = sub.add_parser("fetch", help="download bars the cache does not have yet")
    which = fetch.add_mutually_exclusive_group(required=True)
    which.add_argument("--symbol", help="one ticker, e.g. PLTR")
    which.add_argument("--symbols", help="several, comma-separated: PLTR,NVDA,SPY (a watchlist)")
    fetch.add_argument("--timeframe", default="5m", choices=timeframes)
    fetch.add_argument("--source", default="auto", choices=SOURCE_CHOICES)
    fetch.add_argument("--feed", default="iex", choices=("iex", "sip"), help="Alpaca data feed")
    fetch.add_argument("--start", help="first day, YYYY-MM-DD (default: as far back as useful)")
    fetch.add_argument("--end", help="last day, YYYY-MM-DD, included (default: now)")
    fetch.add_argument("--alpaca-url", help=argparse.SUPPRESS)  # a proxy or a test server
    data.set_defaults(handler=run_data_command)
    return data


def run_data_command(args: argparse.Namespace, paths: AppPaths, *, clock: Clock | None = None,
                     probe_yfinance: Callable[[], bool] | None = None,
                     stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run ``data import`` or ``data fetch``; returns the process exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        if args.data_command == "import":
            return _import(args, paths, out)
        if args.data_command == "fetch":
            return _fetch(args, paths, out, clock or WallClock(), probe_yfinance or yfinance_reachable)
        raise DataError(f"unknown data command {args.data_command!r}")
    except (DataError, StorageError, OSError, ValueError) as exc:
        logger.info("data {} failed: {}", getattr(args, "data_command", "?"), exc)
        print(f"error: {_one_line(exc)}", file=err)
    except Exception as exc:  # noqa: BLE001 - the user gets a line, the log the traceback
        logger.opt(exception=exc).info("data {} failed unexpectedly", args.data_command)
        print(f"error: {type(exc).__name__}: {_one_line(exc)}", file=err)
    return EXIT_ERROR


def _import(args: argparse.Namespace, paths: AppPaths, out: TextIO) -> int:
    """Each stock of a symbol column under its own ticker, else the file under --symbol or the
    one its name says; the engine refuses to store a file's SPY bars as PLTR unless --rename."""
    timeframe = args.timeframe or named_in_file(args.file)[1] or "5m"
    paths.ensure()
    storage = Storage(paths.database)
    try:
        summaries = import_file(storage, args.file, timeframe, args.symbol, rename=getattr(args, "rename", False),
                                keep_extended=getattr(args, "keep_extended", False),
                                replace=getattr(args, "replace", False),
                                spike=Settings.load(paths.settings).bad_print_factor)
    finally:
        storage.close()
    print("source: CSV file", file=out)
    for summary in summaries:
        prefix = f"{summary.symbol}: " if len(summaries) > 1 else ""
        for line in summary.lines():
            print(prefix + line, file=out)
    if not any(s.accepted for s in summaries):  # every row refused: not a success, whatever was printed
        raise DataError(f"no usable bars in {Path(args.file).name}: every row was rejected (reasons above)")
    return 0


def _fetch(args: argparse.Namespace, paths: AppPaths, out: TextIO, clock: Clock,
           probe: Callable[[], bool]) -> int:
    named = args.symbols.split(",") if args.symbols else [args.symbol]
    symbols = list(dict.fromkeys(normalize_symbol(s) for s in named if s.strip()))
    if not symbols:
        raise DataError("name at least one symbol, e.g. --symbols PLTR,NVDA")
    end = _day_end(args.end) if args.end else clock.now()
    start = _day_start(args.start) if args.start else default_start(args.timeframe, end)
    paths.ensure()
    storage = Storage(paths.database)
    lines: list[str] = []
    failed: list[str] = []
    try:
        cache = CacheSource(storage)
        keys = load_keys(paths.env_file)
        source, label = choose_source(args.source, keys, cache, probe, feed=args.feed, clock=clock,
                                      alpaca_url=getattr(args, "alpaca_url", None))
        print(f"source: {label}", file=out)
        if isinstance(source, SimulatedSource):
            raise DataError("no market data source is available (no Alpaca keys, Yahoo "
                            "unreachable); import a CSV file with `data import` instead")
        for symbol in symbols:
            prefix = f"{symbol}: " if len(symbols) > 1 else ""
            if isinstance(source, CacheSource):
                n = len(cache.fetch(symbol, args.timeframe, start, end))
                lines.append(f"{prefix}nothing fetched: the cache holds {n} {symbol} {args.timeframe} bars "
                             "in that range")
                continue
            try:
                summary = fetch_and_cache(storage, source, symbol, args.timeframe, start, end)
            except DataError as exc:
                if len(symbols) == 1:
                    raise
                failed.append(f"{symbol} ({exc})")  # one symbol's failure keeps none of the others out
                continue
            lines += [prefix + line for line in summary.lines()]
    finally:
        storage.close()
    for line in lines:
        print(line, file=out)
    if failed:
        raise DataError(f"could not fetch {'; '.join(failed)}; the other symbols were stored")
    return 0


def _parse_day(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise DataError(f"{text!r} is not a date; use YYYY-MM-DD") from None


def _day_start(text: str) -> datetime:
    d = _parse_day(text)
    return datetime(d.year, d.month, d.day, tzinfo=NY).astimezone(UTC)


def _day_end(text: str) -> datetime:
    """The end day is included: bars stop at the following New York midnight."""
    return _day_start((_parse_day(text) + timedelta(days=1)).isoformat())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
