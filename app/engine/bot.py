"""The trading bot: one cycle per closed bar, a stop check on every price.

The same object runs the demo, live paper trading, replays and backtests;
only the clock, the broker and the recorder passed in differ. What becomes of
a signal lives in :mod:`app.engine.entries`; stops, exits and fills in
:mod:`app.engine.exits`.
"""

from __future__ import annotations

import math
import time as _time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time

from loguru import logger

from app.engine import risk
from app.engine.broker.base import Broker, BrokerError
from app.engine.clock import NY, Clock, MarketCalendar
from app.engine.entries import SignalsAndEntries
from app.engine.events import (
    AlertEvent,
    BarEvent,
    EventBus,
    PortfolioEvent,
    PredictionEvent,
    StatusEvent,
)
from app.engine.exits import EXITS_DUE_KEY, ExitsAndFills
from app.engine.history import History
from app.engine.modes import policy_for
from app.engine.orders import OrderRouter
from app.engine.reconcile import reconcile
from app.engine.records import Recorder
from app.engine.settings import Settings
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import (
    Account,
    Bar,
    DayState,
    EngineStatus,
    Order,
    OrderType,
    Position,
    Side,
    SignalStatus,
    TradingMode,
    TradingSignal,
    timeframe_of,
)

_INF = math.inf


def valid_bar(b: Bar) -> bool:
    """Finite, positive prices and a finite, non-negative volume (NaN fails every comparison)."""
    return (0.0 < b.open < _INF and 0.0 < b.high < _INF and 0.0 < b.low < _INF and 0.0 < b.close < _INF
            and 0.0 <= b.volume < _INF)


class TradingBot(SignalsAndEntries, ExitsAndFills):
    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        broker: Broker,
        model: SignalModel,
        records: Recorder,
        bus: EventBus | None = None,
        calendar: MarketCalendar | None = None,
        data_source: str = "simulated",
        sleep: Callable[[float], None] = _time.sleep,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.broker = broker
        self.model = model
        self.records = records
        self.bus = bus or EventBus()
        self.calendar = calendar  # None: no session rules (24h market, no EOD)
        self.data_source = data_source
        self.router = OrderRouter(broker, records, clock, sleep)
        self.mode = TradingMode(settings.mode)
        self.policy = policy_for(self.mode, settings)
        self.model_label = "rules fallback" if model.name == "rules" else model.name
        self.plain = False  # textbook backtests: whole cash per trade, no stops or limits
        self.record_quiet_signals = True  # record signals below the approval threshold too
        self.pending: dict[str, TradingSignal] = {}
        self._history: dict[str, History] = {}  # closes, and OHLCV for models that want it
        self._bar_delta = timedelta(minutes=self.bar_minutes)
        self.last_prices: dict[str, float] = {}
        self._last_bar_end: dict[str, datetime] = {}
        self.stop_orders: dict[str, str] = {}
        self.foreign_orders: list[Order] = []  # the user's own orders at the broker: never touched
        self.foreign_positions: dict[str, Position] = {}  # shares the app did not buy, until adopted
        # the latest trade, asked for at approval (the data source's, where one is wired)
        self.latest_price: Callable[[str], float | None] | None = None
        self.exits_due: dict[str, str] = {}  # symbol -> why: an exit asked for that could not go out yet
        self.book_current = False  # every open order read without a failure at the last poll
        self._day: date | None = None
        self._day_span: tuple[datetime, datetime] | None = None  # the New York day, in UTC
        self.day = DayState()
        self._account: Account | None = None
        self._reconcile_pending = False  # the broker was unreachable when we tried

    # ------------------------------------------------------------ lifecycle
    @property
    def intraday(self) -> bool:
        return timeframe_of(self.settings.timeframe).intraday

    @property
    def bar_minutes(self) -> int:
        return timeframe_of(self.settings.timeframe).minutes

    def warm_up(self, bars: list[Bar]) -> None:
        """Feed history so the model has context; nothing is traded on it."""
        for b in filter(valid_bar, bars):
            self._remember(b)

    def start(self) -> None:
        saved = self.records.state_get(EXITS_DUE_KEY)
        if isinstance(saved, dict):  # exits asked for before a restart still go out
            self.exits_due.update({str(k): str(v) for k, v in saved.items()})
        self.router.restore_held(self._revalidate)  # daily entries waiting for the open still wait
        self._roll_day()  # first, so fills found by reconciliation count on today's record
        self._reconcile()
        self._publish_portfolio()
        self._publish_status()

    def _reconcile(self) -> None:
        """Reconcile with the broker; if it cannot be reached, try again on every
        price until it can (saying so once), so stale records are never traded on."""
        lines = reconcile(self)
        if self.router.connected or not self._reconcile_pending:
            for line in lines:
                self.bus.publish(AlertEvent("warning", line))
        self._reconcile_pending = not self.router.connected

    # --------------------------------------------------------- market input
    def on_bar_close(self, bar: Bar) -> ModelOutput | None:
        """Run the trading cycle for a bar that has just closed."""
        if not valid_bar(bar):  # a NaN would reach the model's history, and stay there
            logger.warning("Ignoring invalid bar for {} at {}: {}", bar.symbol, bar.time, bar)
            return None
        self._remember(bar)
        if self.bus.active:
            self.bus.publish(BarEvent(bar, closed=True))
        self._roll_day()
        if self._reconcile_pending:
            self._reconcile()
        self.sync_orders()
        self._expire_pending()
        self._protect_all()
        out = self.run_trading_cycle(bar)
        self._publish_portfolio()
        self._publish_status()
        return out

    def _remember(self, bar: Bar) -> None:
        hist = self._history.get(bar.symbol)
        if hist is None:
            hist = self._history[bar.symbol] = History()
        hist.append(bar)
        self.last_prices[bar.symbol] = bar.close
        self._last_bar_end[bar.symbol] = bar.time + self._bar_delta

    def on_price(self, symbol: str, price: float) -> None:
        """A new price between bars (the latest trade): re-price, then the clock's checks."""
        if not (math.isfinite(price) and price > 0):
            logger.warning("Ignoring invalid price {} for {}", price, symbol)
            return
        self.last_prices[symbol] = price
        self.on_clock()

    def on_clock(self) -> None:
        """What runs on time, new data or not (every stop check: ``stop_check_seconds`` live,
        each tick in the demo, at each session's end in a replay with a gap): orders and
        queued retries, approvals that expired, the breaker, the end-of-day flatten and
        every position's stops, at the latest prices known."""
        self._roll_day()
        was_connected = self.router.connected
        if self._reconcile_pending:
            self._reconcile()
        self.sync_orders()
        if not was_connected and self.router.connected and not self._reconcile_pending:
            self._reconcile()  # back after an outage: what happened meanwhile is found and fixed
        for q in self.router.retry_queued():
            self._placed(q)
        self._expire_pending()
        self._protect_all()
        self._publish_portfolio()
        self._publish_status()

    def run_trading_cycle(self, bar: Bar) -> ModelOutput | None:
        hist = self._history[bar.symbol]
        try:
            if self.model.wants_bars:  # older models take closes only
                out = self.model.predict(hist.closes(), hist.bars)
            else:
                out = self.model.predict(hist.closes())
        except Exception as exc:  # noqa: BLE001 - a broken model must not stop the exits
            logger.exception("Model {} failed", self.model.name)
            self.bus.publish(AlertEvent("error", f"model failed: {exc}"))
            return None
        if out is None:
            return None
        now = self.clock.now()
        self.records.prediction(bar.symbol, bar.time, out, now)
        if self.bus.active:
            label = "rules fallback" if out.version.startswith("rules") else self.model_label
            self.bus.publish(PredictionEvent(bar.symbol, bar.time, out.p_up, out.confidence,
                                             out.votes, label))
        if not self.record_quiet_signals and out.confidence < self.settings.approval_threshold:
            return out  # a backtest keeps no record of signals that could never trade
        sig = self._make_signal(bar, out, now)
        self._route(sig)
        return out

    # -------------------------------------------------------- user commands
    def set_mode(self, mode: TradingMode) -> None:
        self.mode = mode
        self.policy = policy_for(mode, self.settings)
        logger.info("Trading mode set to {}", mode.value)
        self._publish_status()

    def update_settings(self, settings: Settings) -> None:
        self.settings = settings
        self._bar_delta = timedelta(minutes=self.bar_minutes)
        if hasattr(self.model, "update_settings"):  # new ensemble weights take effect now
            self.model.update_settings(settings)
        self.policy = policy_for(self.mode, settings)
        self._publish_status()

    def flatten_all(self, reason: str = "flatten all") -> list[str]:
        """Cancel every open order, then close every position at market.
        Idempotent: an exit already working is not sent again."""
        report: list[str] = []
        for sig_id in list(self.pending):
            self._signal_done(self.pending.pop(sig_id), SignalStatus.EXPIRED, reason)
        self.sync_orders()  # a fill since the last check is a position to close, not an order to cancel
        for coid in [c for c, q in self.router.queue.items() if q.order.side == Side.BUY]:
            self.router.drop(coid, reason)
        for o in self.records.open_orders():
            if o.side == Side.SELL and o.order_type == OrderType.MARKET:
                continue  # an exit already working: leave it to fill
            ok = self._cancel(o.client_order_id)
            report.append(f"cancel {o.client_order_id}: {'ok' if ok else 'failed'}")
        self.sync_orders()  # what filled before the cancels landed
        self.stop_orders.clear()
        for p in self.records.positions():
            report.append(self._exit(p.symbol, reason))
        self.sync_orders()
        self._publish_portfolio()
        if not report:
            report.append("nothing to flatten: no positions and no open orders")
        for line in report:
            logger.info("Flatten: {}", line)
        return report

    def close_position(self, symbol: str) -> str:
        return self._exit(symbol, "closed by the user")

    # ------------------------------------------------------------ helpers
    def _held(self, symbol: str) -> float:
        return sum(p.qty for p in self.records.positions() if p.symbol == symbol)

    def _broker_holding(self, symbol: str) -> tuple[bool, Position | None]:
        """(True, the broker's position or None when flat), or (False, None) when the broker
        cannot be asked: "unknown" must never read as "flat"."""
        try:
            return True, self.broker.position(symbol)
        except BrokerError:
            return False, None

    def _refresh_account(self) -> Account | None:
        try:
            self._account = self.broker.account()
        except BrokerError as exc:
            logger.warning("Cannot read the account: {}", exc)
        return self._account

    def _risk_context(self, symbol: str, side: Side, excluding: str = "") -> risk.RiskContext:
        """The facts the risk rules judge by, now; ``excluding`` names an entry being
        re-validated, which must not count against itself."""
        acct = self._refresh_account() or Account(0.0, 0.0, 0.0, 0.0)
        now = self.clock.now()
        market_open, minutes_left = True, None
        if self.calendar is not None:  # daily bars too: no order goes out while the market is closed
            session = self.calendar.session_at(now)
            market_open = session is not None
            minutes_left = (session.close - now).total_seconds() / 60 if session and self.intraday else None
        price = self.last_prices.get(symbol, float("nan"))
        held = {p.symbol: p for p in self._marked_positions()}
        for sym, qty in self._working_entries(excluding).items():  # a working entry is exposure already
            mark = self.last_prices.get(sym, price)
            p = held.get(sym)
            held[sym] = replace(p, qty=p.qty + qty) if p else Position(sym, qty, mark, mark, now)
        return risk.RiskContext(
            symbol=symbol, side=side, price=price,
            equity=acct.equity, buying_power=acct.buying_power, positions=tuple(held.values()),
            day_start_equity=self.day.start_equity,
            round_trips_today=self.day.round_trips,
            market_open=market_open, minutes_to_close=minutes_left,
            data_stale=self.data_stale(), breaker_tripped=self.day.breaker,
        )

    def data_stale(self) -> bool:
        if self.calendar is None or not self.intraday:
            return False
        now = self.clock.now()
        if not self.calendar.is_open(now):
            return False
        limit = timedelta(minutes=2 * self.bar_minutes)
        return any(now - end > limit for end in self._last_bar_end.values())

    def _marked_positions(self) -> tuple[Position, ...]:
        """Positions at the latest prices; marked stale while the broker is unreachable
        (they are then the last known state, not the broker's word)."""
        stale = not self.router.connected
        return tuple(replace(p, last_price=self.last_prices.get(p.symbol, p.last_price), stale=stale)
                     for p in self.records.positions())

    def _roll_day(self) -> None:
        now = self.clock.now()
        span = self._day_span
        if span is not None and span[0] <= now < span[1]:  # the same day: the common case, kept cheap
            if self.day.start_equity is None:
                self._learn_baseline()
            return
        day = now.astimezone(NY).date()
        self._day_span = (datetime.combine(day, clock_time(0), NY).astimezone(UTC),
                          datetime.combine(day + timedelta(days=1), clock_time(0), NY).astimezone(UTC))
        if day == self._day:
            return
        self._day = day
        saved = self.records.state_get(f"day.{day.isoformat()}")
        if isinstance(saved, dict) and saved:
            self.day = DayState.from_dict(saved)
            return
        self.day = DayState()
        self._learn_baseline()

    def _learn_baseline(self) -> None:
        """The day's loss is measured from the broker's equity at the previous close
        (Alpaca's ``last_equity``), so losses before the app started count. While the
        broker cannot say, the baseline stays unknown and entries are refused; it is
        never 0, which would switch the breaker off."""
        acct = self._refresh_account()
        baseline = acct.day_start_equity if acct is not None else 0.0
        if not baseline > 0:
            return
        self.day = replace(self.day, start_equity=baseline)
        self._save_day()

    def _save_day(self) -> None:
        if self._day is not None:
            self.records.state_set(f"day.{self._day.isoformat()}", self.day.to_dict())

    def account_snapshot(self) -> Account | None:
        acct = self._account
        if acct is None:
            return None
        return replace(acct, day_start_equity=self.day.baseline(acct.equity))

    def _publish_portfolio(self) -> None:
        if not self.bus.active:
            return
        self._refresh_account()
        acct = self.account_snapshot()
        if acct is None:
            return
        positions = self._marked_positions()
        expo = risk.exposure(positions) / acct.equity if acct.equity > 0 else 0.0
        self.bus.publish(PortfolioEvent(acct, positions, expo, self.day.round_trips,
                                        tuple(self.foreign_positions.values())))

    def status(self) -> EngineStatus:
        now = self.clock.now()
        is_open, change = True, None
        if self.calendar is not None:
            is_open = self.calendar.is_open(now)
            change = self.calendar.next_change(now)
        return EngineStatus(
            mode=self.mode, broker=self.broker.kind, data_source=self.data_source, market_open=is_open,
            now=now, next_change=change, connected=self.router.connected, data_stale=self.data_stale(),
            circuit_breaker=self.day.breaker, model=self.model_label,
            round_trips_today=self.day.round_trips,
        )

    def _publish_status(self) -> None:
        if not self.bus.active:
            return
        self.bus.publish(StatusEvent(self.status()))
