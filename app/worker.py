"""The one bridge between the engine and the GUI.

:class:`EngineWorker` lives in its own ``QThread``. It builds the engine there
(so TensorFlow, pandas calendars and SQLite never load on the GUI thread),
drives the market replay with a timer, subscribes to the engine's event bus
and re-emits each event as a Qt signal. Fast-changing state (status,
portfolio, the forming bar) is coalesced and emitted at most every 100 ms.

Commands from the GUI arrive as queued signal calls to the worker's slots, so
engine methods only ever run on the worker's thread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from datetime import time as dt_time
from typing import Any

from loguru import logger
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from app.engine.core import EngineHalted
from app.engine.events import (
    AlertEvent,
    BarEvent,
    Event,
    EventBus,
    OrderEvent,
    PortfolioEvent,
    PredictionEvent,
    RecordEvent,
    SignalEvent,
    StatusEvent,
    TradeEvent,
)
from app.engine.live_gate import LIVE_CONFIRMED_KEY, PAPER_FIRST_DAY_KEY
from app.engine.paths import AppPaths
from app.engine.settings import Settings
from app.engine.types import NY, Side, TradingMode

TICK_FLUSH_MS = 100
MIN_TIMER_MS = 10


class EngineWorker(QObject):
    ready = Signal(object)  # dict: history bars, notices, settings
    failed = Signal(str)
    barsClosed = Signal(object)  # tuple[Bar, ...]
    barForming = Signal(object)  # Bar
    predictionMade = Signal(object)  # PredictionEvent
    signalChanged = Signal(object)  # SignalEvent
    orderUpdated = Signal(object)  # Order
    tradeClosed = Signal(object)  # Trade
    portfolioUpdated = Signal(object)  # PortfolioEvent
    statusChanged = Signal(object)  # EngineStatus
    alertRaised = Signal(object)  # AlertEvent
    flattenReported = Signal(object)  # list[str]
    manualOrderDone = Signal(str)  # the engine's word on an order from the ticket
    watchlistChanged = Signal(object)  # tuple[str, ...]: what the engine trades now
    recordProblem = Signal(str, bool)  # the record cannot be written: what to do; True once trading stopped
    pausedChanged = Signal(bool, str)  # the demo's clock stopped (True, and why) or runs again (False)
    stopped = Signal()
    _pushed = Signal()  # the broker pushed order updates (from the stream's thread; queued here)

    def __init__(self, paths: AppPaths, settings: Settings, demo: bool = True,
                 replay: Sequence[str] = ()) -> None:
        super().__init__()
        self.paths = paths
        self.settings = settings
        self.demo = demo
        # CSVs of recorded bars ([SYM=]FILE each) to rehearse on, instead of the demo market
        self.replay = list(replay)
        self.speed = settings.demo_speed
        self.ctx: Any = None
        self._timer: QTimer | None = None
        self._flush: QTimer | None = None
        self._closed: list[Any] = []
        self._latest: dict[Any, Any] = {}  # "status", "portfolio", (kind, symbol): the newest of each
        self._user_paused = False
        self._let_run: set[str] = set()  # waiting signals the user resumed past (they may expire)
        self._paused_why = ""
        self._finished = False  # the replay ran out, or the engine stopped itself: no more steps

    # ------------------------------------------------------------ lifecycle
    @Slot()
    def start(self) -> None:
        # deferred: the engine (SQLite, the calendar, the model) is built here, on the worker thread,
        # and never on the window's start-up path
        from app.engine.bootstrap import build_engine, build_live_engine

        try:
            bus = EventBus()
            bus.subscribe(self._on_event)
            if self.replay:
                bars = self._replay_bars(self.replay)  # first: it sets the watchlist
                self.ctx = build_engine(self.paths, self.settings, bus=bus, replay_bars=bars)
            elif self.demo:
                self.ctx = build_engine(self.paths, self.settings, bus=bus)
            else:
                self.ctx = build_live_engine(self.paths, self.settings, bus=bus,
                                             live=self.settings.broker == "alpaca-live")
        except Exception as exc:  # noqa: BLE001 - any start-up failure is shown, never a dead thread
            logger.exception("Engine failed to start")
            self.failed.emit(str(exc))
            return
        orders, trades = self.ctx.records.day_record(_day_start(self.ctx.clock.now()))
        self.ready.emit({"history": tuple(getattr(self.ctx, "history", ())),
                         "orders": tuple(orders), "trades": tuple(trades),
                         "notices": tuple(self.ctx.notices), "settings": self.settings,
                         "paper_first_day": self.ctx.records.state_get(PAPER_FIRST_DAY_KEY)})
        self._pushed.connect(self._on_pushed)
        self.ctx.broker.on_trade_update(self._pushed.emit)  # a fill is acted on at once, not at the next check
        self._flush = QTimer(self)
        self._flush.timeout.connect(self._flush_latest)
        self._flush.start(TICK_FLUSH_MS)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._advance)
        self._apply_speed()
        self._flush_latest()

    def _replay_bars(self, specs: list[str]) -> list[Any]:
        """The files' bars; the watchlist becomes the symbols they hold."""
        from app.engine.data.portfolio import load_portfolio  # deferred: pandas, on the worker thread only

        symbol = self.settings.symbol if len(specs) == 1 else None
        bars = load_portfolio(specs, symbol, self.settings.timeframe)[0]
        self.settings = self.settings.updated(watchlist=tuple(sorted({b.symbol for b in bars})))
        return bars

    @Slot()
    def stop(self) -> None:
        for t in (self._timer, self._flush):
            if t is not None:
                t.stop()
        if self.ctx is not None:
            try:
                self.ctx.close()
            except Exception:  # noqa: BLE001 - closing must go on to the stop signal
                logger.exception("Engine did not close cleanly")
            self.ctx = None
        self.stopped.emit()

    # ------------------------------------------------------------ commands
    @Slot(str)
    def approve(self, signal_id: str) -> None:
        if self.ctx:
            result = self.ctx.bot.approve(signal_id)
            self.alertRaised.emit(AlertEvent("info", f"Approve {signal_id}: {result}"))
            self._sync_pause()

    @Slot(str)
    def reject(self, signal_id: str) -> None:
        if self.ctx:
            self.ctx.bot.reject(signal_id)
            self._sync_pause()

    @Slot(str)
    def setMode(self, mode: str) -> None:
        if self.ctx:
            self.ctx.bot.set_mode(TradingMode(mode))

    @Slot()
    def flattenAll(self) -> None:
        if self.ctx:
            self.flattenReported.emit(self.ctx.bot.flatten_all())

    @Slot(str, str, float, float, float)
    def manualOrder(self, symbol: str, side: str, shares: float, dollars: float, limit: float = 0.0) -> None:
        """An order from the ticket, judged by the risk rules (``shares``, ``dollars`` or ``limit``:
        0 = not given; no limit is a market order)."""
        if not self.ctx:
            return
        text = self.ctx.bot.manual_order(symbol, Side(side), shares or None, dollars or None, limit or None)
        self.manualOrderDone.emit(text)

    @Slot(str, float, bool)
    def moveStop(self, symbol: str, stop: float, looser_ok: bool) -> None:
        """A stop dragged on the chart, re-validated by the engine."""
        if self.ctx:
            text = self.ctx.bot.move_stop(symbol, stop, looser_ok)
            self.alertRaised.emit(AlertEvent("warning" if "refused" in text else "info", text))

    @Slot(str)
    def closePosition(self, symbol: str) -> None:
        if self.ctx:
            self.alertRaised.emit(AlertEvent("info", self.ctx.bot.close_position(symbol)))

    @Slot(str)
    def adoptPosition(self, symbol: str) -> None:
        """The user hands shares the app did not buy to the app (stop, trailing, end of day)."""
        if self.ctx:
            self.alertRaised.emit(AlertEvent("info", self.ctx.bot.adopt(symbol)))

    @Slot(float)
    def setSpeed(self, speed: float) -> None:
        self.speed = max(1.0, float(speed))
        if not self._paused_why and not self._finished:
            self._apply_speed()

    @Slot(bool)
    def setPaused(self, paused: bool) -> None:
        """The user's Pause / Resume. Resuming while signals wait lets the clock run past them
        (they expire at their time unless approved)."""
        self._user_paused = paused
        if not paused and self.ctx is not None:
            self._let_run |= set(self.ctx.bot.pending)
        self._sync_pause()

    def _awaiting(self) -> int:
        """Signals the demo waits on: pending, not resumed past by the user (0 when live, or
        when the setting is off)."""
        if self.ctx is None or not self.ctx.demo or not self.settings.demo_pause_on_approval:
            return 0
        return sum(1 for sid in self.ctx.bot.pending if sid not in self._let_run)

    def _sync_pause(self) -> None:
        """Stop or restart the demo's clock as the user and the waiting signals say; tell the
        window when that changes."""
        if self._timer is None or self.ctx is None:
            return
        waiting = self._awaiting()
        why = ("paused" if self._user_paused else
               f"{waiting} signal{'s' if waiting > 1 else ''} await{'' if waiting > 1 else 's'} your approval: "
               "the demo waits (Resume lets it run on)" if waiting else "")
        if why == self._paused_why:
            return
        self._paused_why = why
        if why:
            self._timer.stop()
        elif not self._finished:
            self._apply_speed()
        self.pausedChanged.emit(bool(why), why)

    @Slot(str, str, str)
    def importCsv(self, path: str, symbol: str, timeframe: str) -> None:
        """File -> Import CSV, run here so the window never waits on the disk. ``symbol`` ""
        takes each symbol as the file says (a symbol column imports each of its stocks)."""
        # deferred: pandas, on the worker thread only
        from app.engine.data.frame import DataError
        from app.engine.data.service import import_file

        if self.ctx is None:
            return
        try:
            summaries = import_file(self.ctx.storage, path, timeframe, symbol or None,
                                    spike=self.settings.bad_print_factor,
                                    hint="choose {tf} as the timeframe when you import it")
        except (DataError, OSError) as exc:
            self.alertRaised.emit(AlertEvent("error", f"Import failed: {exc}"))
            return
        many = len(summaries) > 1
        self.alertRaised.emit(AlertEvent("info", " | ".join(f"{s.symbol}: {line}" if many else line
                                                            for s in summaries for line in s.lines())))

    @Slot()
    def confirmLive(self) -> None:
        """The user passed the live-trading gate: record it (live starts next launch)."""
        if self.ctx is not None:
            self.ctx.records.state_set(LIVE_CONFIRMED_KEY, datetime.now(UTC).isoformat())

    @Slot(object)
    def applySettings(self, settings: Settings) -> None:
        if self.ctx and settings.watchlist != self.ctx.bot.settings.watchlist:
            try:
                history = self.ctx.set_watchlist(settings)
            except ValueError as exc:
                self.alertRaised.emit(AlertEvent("error", f"Watchlist unchanged: {exc}"))
                settings = settings.updated(watchlist=self.ctx.bot.settings.watchlist)
            else:
                if history:
                    self.barsClosed.emit(tuple(history))  # the added symbols' recent bars, for the chart
            self.watchlistChanged.emit(settings.watchlist)
        self.settings = settings
        if self.ctx:
            self.ctx.bot.update_settings(settings)
        self.setSpeed(settings.demo_speed)
        self._sync_pause()  # the pause setting may have changed

    # ------------------------------------------------------------ internal
    def _apply_speed(self) -> None:
        if self._timer is None or self.ctx is None:
            return
        if not self.ctx.demo:  # live: poll data and check stops every stop_check_seconds
            self._steps_per_fire = 1
            self._timer.start(int(self.settings.stop_check_seconds * 1000))
            return
        tick_seconds = self.ctx.bot.bar_minutes * 60 / max(self.ctx.replay_ticks, 1)
        interval_ms = tick_seconds / self.speed * 1000
        self._steps_per_fire = max(1, math.ceil(MIN_TIMER_MS / interval_ms))
        self._timer.start(max(MIN_TIMER_MS, int(interval_ms)))

    @Slot()
    def _on_pushed(self) -> None:
        if self.ctx is None:
            return
        try:
            self.ctx.bot.on_trade_updates()
        except EngineHalted:
            self._halt()
        except Exception as exc:  # noqa: BLE001 - shown to the user, never silently lost
            logger.exception("Applying pushed order updates failed")
            self.alertRaised.emit(AlertEvent("error", f"engine error: {exc}"))

    def _advance(self) -> None:
        try:
            for _ in range(self._steps_per_fire):
                if not self.ctx.replay.step():
                    self._finished = True
                    if self._timer is not None:
                        self._timer.stop()
                    break
                if self._awaiting():  # not one step more: the signal would age while the user reads
                    break
        except EngineHalted:
            self._halt()
        except Exception as exc:  # noqa: BLE001 - shown to the user, never silently lost
            logger.exception("Engine step failed")
            self.alertRaised.emit(AlertEvent("error", f"engine error: {exc}"))
        self._let_run &= set(self.ctx.bot.pending) if self.ctx is not None else set()
        self._sync_pause()

    def _halt(self) -> None:
        """The engine stopped itself (said already, with what to do): no more steps."""
        self._finished = True
        if self._timer is not None:
            self._timer.stop()
        self._flush_latest()

    def _on_event(self, e: Event) -> None:
        if isinstance(e, BarEvent):
            if e.closed:
                self._closed.append(e.bar)
            else:  # coalesced per symbol: one symbol's ticks never overwrite another's
                self._latest[("forming", e.bar.symbol)] = e.bar
        elif isinstance(e, StatusEvent):
            self._latest["status"] = e.status
        elif isinstance(e, PortfolioEvent):
            self._latest["portfolio"] = e
        elif isinstance(e, PredictionEvent):
            self._latest[("prediction", e.symbol)] = e
        elif isinstance(e, SignalEvent):
            self.signalChanged.emit(e)
        elif isinstance(e, OrderEvent):
            self.orderUpdated.emit(e.order)
        elif isinstance(e, TradeEvent):
            self.tradeClosed.emit(e.trade)
        elif isinstance(e, AlertEvent):
            self.alertRaised.emit(e)
        elif isinstance(e, RecordEvent):
            self.recordProblem.emit(e.message, e.halted)

    def _flush_latest(self) -> None:
        if self._closed:
            self.barsClosed.emit(tuple(self._closed))
            self._closed = []
        latest, self._latest = self._latest, {}
        for key, value in latest.items():
            if isinstance(key, tuple):
                (self.predictionMade if key[0] == "prediction" else self.barForming).emit(value)
        if "portfolio" in latest:
            self.portfolioUpdated.emit(latest["portfolio"])
        if "status" in latest:
            self.statusChanged.emit(latest["status"])


class EngineThread:
    """Owns the worker and its thread; stops both cleanly (``quit(); wait()``)."""

    def __init__(self, worker: EngineWorker) -> None:
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName("engine")
        worker.moveToThread(self.thread)
        self.thread.started.connect(worker.start)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout_ms: int = 5000) -> None:
        if not self.thread.isRunning():
            return
        from PySide6.QtCore import QMetaObject, Qt

        QMetaObject.invokeMethod(self.worker, "stop", Qt.ConnectionType.BlockingQueuedConnection)
        self.thread.quit()
        self.thread.wait(timeout_ms)


def _day_start(now: datetime) -> datetime:
    """The start of ``now``'s New York day: what "today's" orders and trades count from."""
    day = now.astimezone(NY).date()
    return datetime.combine(day, dt_time(0), NY).astimezone(UTC)
