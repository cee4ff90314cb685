"""The execution core: one for the whole portfolio, whatever the number of symbols.

It owns the orders, the positions, their protective stops, the trading day and
reconciliation with the broker, and is driven from outside by three things:
signals (from each symbol's :class:`app.engine.pipeline.SignalPipeline`),
prices, and the clock. Its parts share one typed :class:`Book`:

- :class:`Fills` follows orders at the broker and books every share that fills;
- :class:`Exits` keeps every share under a broker stop and sends the exits;
- :class:`Entries` turns signals into orders (or approvals), always through risk.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable

from loguru import logger

from app.engine.book import Book
from app.engine.broker.base import Broker
from app.engine.clock import Clock, MarketCalendar
from app.engine.entries import Entries
from app.engine.events import AlertEvent, EventBus, RecordEvent
from app.engine.exits import Exits
from app.engine.fills import Fills
from app.engine.orders import OrderRouter
from app.engine.reconcile import reconcile
from app.engine.records import Recorder
from app.engine.settings import Settings
from app.engine.types import BrokerKind, DayState, OrderType, Side, TradingMode, TradingSignal

HALT_SETTLE_S = 10.0  # how long a stopping engine waits for its last exits to go out
HALT_POLL_S = 0.5


class EngineHalted(RuntimeError):
    """The engine stopped itself (its record cannot be kept); the message says what to do."""


class ExecutionCore:
    def __init__(self, settings: Settings, clock: Clock, broker: Broker, records: Recorder, bus: EventBus,
                 calendar: MarketCalendar | None = None, sleep: Callable[[float], None] = _time.sleep) -> None:
        self.router = OrderRouter(broker, records, clock, sleep)
        self.book = Book(settings, clock, broker, records, bus, calendar, self.router)
        self.fills = Fills(self.book)
        self.exits = Exits(self.book, self.fills)
        self.entries = Entries(self.book, self.fills, self.exits, TradingMode(settings.mode))
        self._reconcile_pending = False  # the broker was unreachable when we tried
        self._said_failing = False
        self.halted = ""  # why the engine stopped itself ("" while it runs)

    # ---------------------------------------------------------- the state
    @property
    def pending(self) -> dict[str, TradingSignal]:
        """Signals waiting for the user's approval, by signal id."""
        return self.entries.pending

    @property
    def day(self) -> DayState:
        return self.book.day

    @property
    def connected(self) -> bool:
        return self.router.connected

    # ------------------------------------------------------------ driving
    def start(self) -> None:
        self.book.restore_exits_due()
        self.router.restore_held(self.entries.revalidate)  # daily entries waiting for the open still wait
        self.book.roll_day()  # first, so fills found by reconciliation count on today's record
        self._reconcile()
        self.book.publish_portfolio()

    def before_signals(self) -> None:
        """What runs on a closed bar before its signals: the day, the broker's news,
        approvals that expired, then the breaker, the end of the day and the stops."""
        self._watch_record()
        self.book.roll_day()
        if self._reconcile_pending:
            self._reconcile()
        self.fills.sync()
        self.entries.expire_pending()
        self._protect()

    def on_clock(self) -> None:
        """What runs on time, new data or not (every stop check: ``stop_check_seconds`` live,
        each tick in the demo, at each session's end in a replay with a gap): orders and
        queued retries, approvals that expired, the breaker, the end-of-day flatten and
        every position's stops, at the latest prices known."""
        self._watch_record()
        self.book.roll_day()
        was_connected = self.router.connected
        if self._reconcile_pending:
            self._reconcile()
        self.fills.sync()
        if not was_connected and self.router.connected and not self._reconcile_pending:
            self._reconcile()  # back after an outage: what happened meanwhile is found and fixed
        for q in self.router.retry_queued():
            self.fills.placed(q)
        self.entries.expire_pending()
        self._protect()

    def on_trade_updates(self) -> int:
        """Order reports the broker pushed: fills booked and protected now, not at the next check."""
        return self.fills.apply_updates()

    def submit(self, signal: TradingSignal) -> None:
        """A signal from a symbol's pipeline, to execute, ask about, or record as refused."""
        self.entries.submit(signal)

    def _protect(self) -> None:
        """The circuit breaker, the end-of-day flatten, then each position's stops."""
        if self.book.plain:
            return
        if self.exits.breaker_trips() and self.book.settings.flatten_on_circuit_breaker:
            self.flatten_all("circuit breaker")
        self.entries.cancel_stale_limits()
        if self.exits.eod_due():
            book = self.book
            entries = [o for o in book.records.open_orders() if o.side == Side.BUY]
            if book.records.positions() or entries or any(q.order.side == Side.BUY for q in book.router.queue.values()):
                self.flatten_all("end of day")  # a working entry too: filled after the close it would sleep naked
            return
        self.exits.protect_positions()

    def _watch_record(self) -> None:
        """A record that cannot be written stops new positions (said once, in red); exits and
        broker stops go on. One that cannot be kept at all (the backup refused too, or the
        file damaged) stops the engine: everything is closed first, or left to its broker
        stops (``on_record_lost``). Raises :class:`EngineHalted` from then on."""
        if self.halted:
            raise EngineHalted(self.halted)
        book, rec = self.book, self.book.records
        rec.check_health()
        if rec.failing and not self._said_failing:
            self._said_failing = True
            msg = (f"The trading record cannot be written ({rec.failing}). No new positions until the app is "
                   "restarted with it writable; exits and broker stops keep working. Free disk space or fix "
                   "the permissions of the app's folder, then restart.")
            logger.error(msg)
            book.bus.publish(RecordEvent(msg, halted=False))
            book.bus.publish(AlertEvent("error", msg))
        if not rec.lost:
            return
        self._withdraw_entries("trading stopped: the record cannot be kept")
        for o in book.records.open_orders():  # an entry working at the broker (a limit buy) would fill unwatched
            if o.side == Side.BUY:
                book.cancel(o.client_order_id)
        if book.settings.on_record_lost == "flatten":
            self.flatten_all("the record cannot be kept")
            what = "Every position was sent to be closed at market"
        else:
            what = "Positions were left to their broker stops (setting: keep stops)"
        left = self._settle_before_halt()
        if left:
            what += f". Still held: {'; '.join(left)}"
        self.halted = (f"Trading stopped: {rec.lost}. {what}. Free disk space or fix the permissions (or move "
                       "a damaged trader.db aside), then restart: the app replays what it kept and reconciles "
                       "with the broker at start.")
        logger.critical(self.halted)
        book.bus.publish(RecordEvent(self.halted, halted=True))
        book.bus.publish(AlertEvent("error", self.halted))
        raise EngineHalted(self.halted)

    def _settle_before_halt(self) -> list[str]:
        """The engine is about to stop, and nothing will check the positions until it is
        restarted: exits that waited (for a stop's slow cancel, or for the broker) go out as
        soon as they can, for up to ``HALT_SETTLE_S``; then every share still held without a
        working exit keeps, or gets back, its broker stop. Returns what is still held, and how."""
        book, router, waited = self.book, self.router, 0.0
        while True:
            self.fills.sync()
            for q in router.retry_queued():
                self.fills.placed(q)
            for symbol, why in list(book.exits_due.items()):
                self.exits.exit(symbol, why)
            queued = any(q.order.side == Side.SELL for q in router.queue.values())
            if (not book.exits_due and not queued) or waited >= HALT_SETTLE_S:
                break
            router.sleep(HALT_POLL_S)
            waited += HALT_POLL_S
        left = []
        for p in book.records.positions():
            if p.symbol in book.exits_due:
                left.append(f"{p.symbol} {p.qty:g} shares (the cancel of its stop had not completed: "
                            "check them at the broker)")
            elif book.exit_working(p.symbol):
                where = ("waits for the simulated market's next price: it fills when the app runs again"
                         if book.broker.kind == BrokerKind.SIMULATED else "is working at the broker")
                left.append(f"{p.symbol} {p.qty:g} shares (their exit {where})")
            else:
                self.exits.keep_protected(p.symbol)
                how = "under a broker stop" if book.broker_stop_covers(p) else "WITHOUT a broker stop: place one"
                left.append(f"{p.symbol} {p.qty:g} shares ({how})")
        return left

    def _reconcile(self) -> None:
        """Reconcile with the broker; if it cannot be reached, try again on every
        price until it can (saying so once), so stale records are never traded on."""
        lines = reconcile(self.book, lambda o, seen: self.fills.follow(o, seen, protect=False),
                          self.exits.keep_protected)
        if self.router.connected or not self._reconcile_pending:
            for line in lines:
                self.book.bus.publish(AlertEvent("warning", line))
        self._reconcile_pending = not self.router.connected

    # ------------------------------------------------------- user commands
    def approve(self, signal_id: str) -> str:
        return self.entries.approve(signal_id)

    def reject(self, signal_id: str) -> None:
        self.entries.reject(signal_id)

    def set_mode(self, mode: TradingMode) -> None:
        self.entries.set_mode(mode)
        logger.info("Trading mode set to {}", mode.value)

    def update_settings(self, settings: Settings) -> None:
        self.book.settings = settings
        self.entries.set_mode(self.entries.mode)  # the mode's thresholds come from the settings

    def flatten_all(self, reason: str = "flatten all") -> list[str]:
        """Cancel every open order, then close every position at market.
        Idempotent: an exit already working is not sent again."""
        book, report = self.book, []
        self._withdraw_entries(reason)
        self.fills.sync()  # a fill since the last check is a position to close, not an order to cancel
        for o in book.records.open_orders():
            if o.side == Side.SELL and o.order_type == OrderType.MARKET:
                continue  # an exit already working: leave it to fill
            ok = book.cancel(o.client_order_id)
            report.append(f"cancel {o.client_order_id}: {'ok' if ok else 'failed'}")
        self.fills.sync()  # what filled before the cancels landed
        book.stop_orders.clear()
        for p in book.records.positions():
            report.append(self.exits.exit(p.symbol, reason))
        self.fills.sync()
        book.publish_portfolio()
        if not report:
            report.append("nothing to flatten: no positions and no open orders")
        for line in report:
            logger.info("Flatten: {}", line)
        return report

    def _withdraw_entries(self, reason: str) -> None:
        """Approvals waiting and entries queued for a retry (or for the open) are given up."""
        self.entries.withdraw_all(reason)
        for coid in [c for c, q in self.router.queue.items() if q.order.side == Side.BUY]:
            self.router.drop(coid, reason)

    def manual_order(self, symbol: str, side: Side, qty: float | None = None, amount: float | None = None,
                     limit: float | None = None) -> str:
        """The order ticket's order, judged by the risk rules like any entry (see Entries.manual)."""
        self._watch_record()
        return self.entries.manual(symbol, side, qty, amount, limit)

    def move_stop(self, symbol: str, stop: float, looser_ok: bool = False) -> str:
        """The user's hand on a position's stop, re-validated (see Exits.move_stop)."""
        self._watch_record()
        return self.exits.move_stop(symbol, stop, looser_ok)

    def close_position(self, symbol: str) -> str:
        return self.exits.exit(symbol, "closed by the user")

    def adopt(self, symbol: str) -> str:
        return self.exits.adopt(symbol)
