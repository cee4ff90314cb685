"""``python main.py run --headless``: the same engine with no window.

Logs to the same files and writes the same database as the GUI. SIGINT and
SIGTERM stop it cleanly (the simulated clock and the record are saved);
after a SIGKILL the next start reconciles with the broker and recovers.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from loguru import logger

from app.cli.options import add_date_order
from app.engine import logs
from app.engine.bootstrap import build_engine, build_live_engine
from app.engine.broker.base import BrokerError
from app.engine.core import EngineHalted
from app.engine.data.frame import DataError
from app.engine.data.portfolio import load_portfolio
from app.engine.events import AlertEvent, Event, EventBus, OrderEvent, SignalEvent, TradeEvent
from app.engine.instance import AlreadyRunning, InstanceLock
from app.engine.paths import AppPaths
from app.engine.settings import Settings, SettingsError
from app.engine.storage import StorageError
from app.engine.types import OrderStatus, SignalStatus


def add_run_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser("run", help="run the trading engine without a window")
    p.add_argument("--headless", action="store_true", help="no window (the only mode of this command)")
    p.add_argument("--broker", choices=("sim", "alpaca-paper"), default="sim")
    p.add_argument("--symbol", default=None, help="symbol to trade (default: the settings' symbol)")
    p.add_argument("--replay", metavar="[SYM=]FILE", action="append",
                   help="replay recorded bars instead of the simulated market; repeat for several symbols "
                        "(--replay QQQ=a.csv --replay NVDA=b.csv; a bare path: the symbol from the file)")
    p.add_argument("--speed", type=float, default=None,
                   help="x real time; 0 = as fast as possible (default: the settings' demo speed)")
    p.add_argument("--max-bars", type=int, default=None, help="stop after this many bars")
    add_date_order(p)
    p.add_argument("--alpaca-url", help=argparse.SUPPRESS)  # a proxy or a test server
    return p


def run_headless(args: argparse.Namespace, paths: AppPaths,
                 install_signals: bool = True, out: Callable[[str], None] = print) -> int:

    if args.max_bars is not None and args.max_bars < 1:
        out(f"error: --max-bars {args.max_bars}: at least 1 (leave it out to run until stopped)")
        return 2
    if args.speed is not None and not (math.isfinite(args.speed) and (args.speed == 0 or 1 <= args.speed <= 100_000)):
        out(f"error: --speed {args.speed:g}: 0 (as fast as possible) or 1 to 100000 times real time")
        return 2
    paths.ensure()
    logs.configure(paths.logs, console_level="WARNING")
    try:
        settings = Settings.load(paths.settings)
        if args.symbol:
            settings = settings.updated(symbol=args.symbol)
    except SettingsError as exc:
        out(f"error: {exc}")
        return 2
    try:
        lock = InstanceLock(paths.lock_file).acquire()
    except AlreadyRunning as exc:
        out(f"error: {exc}")
        return 3
    try:
        return _run(args, paths, settings, install_signals, out)
    finally:
        lock.release()


def _run(args: argparse.Namespace, paths: AppPaths, settings: Any, install_signals: bool,
         out: Callable[[str], None]) -> int:

    bars = None
    if args.replay:
        bars = _load_replay(args.replay, args.symbol or settings.symbol, settings.timeframe, out)
        if bars is None:
            return 2
        settings = settings.updated(watchlist=tuple(sorted({b.symbol for b in bars})))  # what the files hold

    bus = EventBus()
    bus.subscribe(lambda e: _report(e, out))
    live = args.broker == "alpaca-paper" and not args.replay
    try:
        if live:
            ctx = build_live_engine(paths, settings, bus=bus, alpaca_url=getattr(args, "alpaca_url", None))
        else:
            ctx = build_engine(paths, settings, bus=bus, replay_bars=bars)
    except (StorageError, ValueError, BrokerError) as exc:
        out(f"error: {exc}")
        return 2
    stop = {"now": False}
    if install_signals:
        def _stop(signum: int, _frame: object) -> None:
            stop["now"] = True
            logger.warning("Signal {} received: stopping after this step", signum)

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
    speed = settings.demo_speed if args.speed is None else args.speed
    pause = 0.0 if speed <= 0 else ctx.bot.bar_minutes * 60 / ctx.replay_ticks / speed
    if live:
        pause = float(settings.stop_check_seconds)
    for notice in ctx.notices:  # what the window shows at start: the model in charge, records replayed...
        out(f"note: {notice}")
    out(f"engine running: {ctx.bot.data_source} market {', '.join(settings.watchlist)}, "
        f"broker {ctx.broker.kind.value}, "
        f"{'polling every ' + str(int(pause)) + ' s' if live else 'speed ' + ('max' if pause == 0 else f'{speed:g}x')}"
        "; Ctrl+C stops")
    pushed = threading.Event()  # the broker pushed order updates: acted on between checks
    ctx.broker.on_trade_update(pushed.set)
    code = 0
    try:
        while not stop["now"]:
            if not ctx.replay.step():
                break
            if args.max_bars is not None and ctx.replay.bars_played >= args.max_bars:
                break
            if pause:
                _sleep_unless(stop, pause, pushed, ctx.bot.on_trade_updates)
    except EngineHalted:
        code = EXIT_STOPPED  # what happened and what to do was said (an error alert) as it stopped
    else:
        if ctx.records.failing:  # it ran on without new positions: the record is not whole
            out(f"error: the trading record could not be written ({ctx.records.failing}); its orders, trades "
                f"and state are kept in {ctx.records.backup_path.name} and replayed at the next start")
            code = EXIT_RECORD_FAILING
    finally:
        try:  # the broker may be down: stopping must not fail for that
            equity = f"equity {ctx.broker.account().equity:,.2f}"
        except BrokerError as exc:
            equity = f"equity unknown ({exc})"
        out(f"stopped after {ctx.replay.bars_played} bars: {equity}, "
            f"{len(ctx.records.trades)} trades this run")
        ctx.close()
    return code


EXIT_STOPPED = 4  # the engine stopped itself: its record was lost
EXIT_RECORD_FAILING = 5  # it ran to the end, but some of its record could not be written


def _sleep_unless(stop: dict[str, bool], seconds: float, pushed: threading.Event | None = None,
                  on_push: Callable[[], None] | None = None) -> None:
    """Sleep in short slices so a signal stops a 30-second wait promptly, and pushed order
    updates (a fill) are acted on within a slice."""
    end = time.monotonic() + seconds
    while not stop["now"] and time.monotonic() < end:
        if pushed is not None and on_push is not None and pushed.is_set():
            pushed.clear()
            on_push()
        time.sleep(min(0.2, max(0.0, end - time.monotonic())))


def _load_replay(specs: list[str], symbol: str, timeframe: str, out: Callable[[str], None]) -> list | None:
    try:
        bars, lines = load_portfolio(specs, symbol if len(specs) == 1 else None, timeframe,
                                     hint='set the timeframe to {tf} in Settings ("timeframe": "{tf}") to replay it')
    except (DataError, OSError) as exc:
        out(f"error: {exc}")
        return None
    for line in lines:
        out(f"replaying {line}")
    return bars


def _report(e: Event, out: Callable[[str], None]) -> None:
    if isinstance(e, TradeEvent):
        t = e.trade
        out(f"trade {t.symbol} {t.qty:g} {t.entry_price:.2f} -> {t.exit_price:.2f} P&L {t.pnl:+.2f} "
            f"({t.exit_reason})")
    elif isinstance(e, OrderEvent) and e.order.status in (OrderStatus.FILLED, OrderStatus.REJECTED):
        o = e.order
        out(f"order {o.client_order_id} {o.side.value} {o.qty:g} {o.status.value}")
    elif isinstance(e, SignalEvent) and e.status == SignalStatus.PENDING:
        out(f"signal {e.signal.signal_id} waits for approval (no window: it will expire)")
    elif isinstance(e, AlertEvent):
        out(f"{e.level}: {e.message}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(2)
