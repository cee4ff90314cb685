"""Immutable value types shared by every layer of the engine.

Everything here is a frozen dataclass so it can cross a thread boundary (the
GUI receives these through Qt signals) without anyone mutating it in flight.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

NY = ZoneInfo("America/New_York")  # the market's time zone: sessions, daily bars and the clock shown
SESSION_MINUTES = 390  # a regular NYSE session, 09:30-16:00 ET


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(str, enum.Enum):
    MARKET = "market"
    STOP = "stop"
    LIMIT = "limit"  # the order ticket's limit buy: fills at the limit price or better


class OrderStatus(str, enum.Enum):
    """An order's life, in Alpaca's words (https://docs.alpaca.markets/docs/orders-at-alpaca,
    "Order Lifecycle"), and one state of the app's own before them: INTENT, the order
    recorded before it is sent, which the broker has not acknowledged (after a crash the
    app asks the broker whether it arrived, by its client order id).

    Partial fills are first-class: any state may carry ``filled_qty`` > 0, an order that
    ended (canceled, expired, replaced) after some shares filled included; positions are
    booked from the filled quantity, never from the state's name."""

    INTENT = "intent"  # the app's: recorded, not yet acknowledged by the broker
    PENDING_NEW = "pending_new"  # received by the broker, not yet routed (also: under review)
    ACCEPTED = "accepted"  # received, not yet routed (Alpaca: "accepted"; routed outside hours)
    NEW = "new"  # routed to the market and working
    PARTIALLY_FILLED = "partially_filled"
    PENDING_CANCEL = "pending_cancel"  # a cancel asked for, not yet confirmed: it can still fill
    PENDING_REPLACE = "pending_replace"  # a replace asked for, not yet confirmed: it can still fill
    DONE_FOR_DAY = "done_for_day"  # no more fills today; a GTC order works again tomorrow
    FILLED = "filled"
    CANCELED = "canceled"
    EXPIRED = "expired"  # its time in force ran out (a DAY order at the close)
    REPLACED = "replaced"  # another order took its place
    REJECTED = "rejected"

    @classmethod
    def _missing_(cls, value: object) -> OrderStatus | None:
        # records written before the full state machine said "submitted" for any working order
        return cls.ACCEPTED if value == "submitted" else None

    @property
    def is_open(self) -> bool:
        """Still able to fill (or to be sent, for an intent)."""
        return self not in _ENDED

    @property
    def stage(self) -> int:
        """How far along: 0 an intent, 1 at the broker and working, 2 ended. An order never
        moves back a stage (a late or repeated report of an earlier state is ignored)."""
        return 0 if self is OrderStatus.INTENT else 2 if self in _ENDED else 1

    @property
    def label(self) -> str:
        """What the desk says: "working" for an order routed and waiting, as trading desks do."""
        return _LABELS[self]


_ENDED = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REPLACED,
                    OrderStatus.REJECTED})
_LABELS = {s: {OrderStatus.INTENT: "not yet sent", OrderStatus.NEW: "working"}.get(s, s.value.replace("_", " "))
           for s in OrderStatus}


class SignalStatus(str, enum.Enum):
    """What became of a signal; recorded with it and shown on the chart and the approval panel."""

    PENDING = "pending"  # waiting for the user's approval
    EXECUTED = "executed"  # its order went out (approved, or executed by the mode)
    REJECTED = "rejected"  # by the user
    EXPIRED = "expired"  # not approved before the next bar, or cancelled by flatten-all
    REFUSED = "refused"  # the risk rules or the re-validation said no
    DROPPED = "dropped"  # the mode executes only higher confidence and asks for none
    SKIPPED = "skipped"  # nothing to do: already holding, or nothing to sell
    BELOW_THRESHOLD = "below threshold"  # too weak to ask about

    @property
    def chart_marker(self) -> str:
        """The chart draws three kinds: waiting, went out, and everything that did not."""
        return self.value if self in (SignalStatus.PENDING, SignalStatus.EXECUTED) else "rejected"


class TradingMode(str, enum.Enum):
    MANUAL = "manual"
    HYBRID = "hybrid"
    AUTO = "auto"


class BrokerKind(str, enum.Enum):
    SIMULATED = "SIMULATED"
    PAPER = "PAPER"
    LIVE = "LIVE"


@dataclass(frozen=True, slots=True)
class Timeframe:
    """A bar length the app can trade, store and chart: the one definition of each.

    To add one, add it to :data:`TIMEFRAMES`; every list, parser and lookup in
    the app reads that table (the data sources map it to their own names)."""

    name: str  # what settings, file names and the command line say: "5m"
    seconds: int

    @property
    def minutes(self) -> int:
        return self.seconds // 60

    @property
    def delta(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    @property
    def intraday(self) -> bool:
        return self.seconds < 86_400

    @property
    def bars_per_session(self) -> int:
        """Regular-session bars in a full trading day, a short last one counted (a daily bar is one)."""
        return -(-SESSION_MINUTES * 60 // self.seconds) if self.intraday else 1


TIMEFRAMES: dict[str, Timeframe] = {tf.name: tf for tf in (
    Timeframe("1m", 60),
    Timeframe("5m", 300),
    Timeframe("15m", 900),
    Timeframe("1h", 3600),
    Timeframe("1d", 86_400),
)}


def timeframe_of(name: str) -> Timeframe:
    """The :class:`Timeframe` called ``name``, or a ValueError naming the valid ones."""
    try:
        return TIMEFRAMES[name]
    except KeyError:
        raise ValueError(f"unknown timeframe {name!r} (use one of {', '.join(TIMEFRAMES)})") from None


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; ``time`` is the bar's start, timezone-aware UTC."""

    symbol: str
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class TradingSignal:
    symbol: str
    side: Side
    confidence: float
    price: float
    time: datetime
    expires_at: datetime
    reasons: tuple[str, ...] = ()
    votes: tuple[tuple[str, float], ...] = ()  # (model name, P(up))
    signal_id: str = ""
    expected_bps: float | None = None  # the trade's expected return after costs, when the model states one


@dataclass(frozen=True, slots=True)
class Order:
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    order_type: OrderType
    status: OrderStatus
    created_at: datetime
    stop_price: float | None = None
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    filled_at: datetime | None = None
    broker_order_id: str = ""
    reason: str = ""  # why it was placed (entry, stop, eod, flatten) or rejected
    signal_id: str = ""
    limit_price: float | None = None  # a limit order's: it fills at this price or better

    def with_intent_of(self, ours: Order) -> Order:
        """The broker's word on an order, carrying our reason and signal id (which the broker never knew)."""
        if self.reason == ours.reason and self.signal_id == ours.signal_id:
            return self
        return replace(self, reason=ours.reason, signal_id=ours.signal_id)


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    price: float
    time: datetime
    commission: float = 0.0


@dataclass(frozen=True, slots=True)
class Position:
    symbol: str
    qty: float
    avg_price: float
    last_price: float
    opened_at: datetime
    stop_price: float | None = None
    trailing_active: bool = False
    high_water: float = 0.0
    stale: bool = False

    def marked(self, price: float, stop_price: float | None = None, trailing_active: bool | None = None,
               high_water: float | None = None) -> Position:
        """At ``price`` (and a new stop state where given): ``dataclasses.replace`` made
        direct, because every held position is re-marked on every bar of a backtest."""
        return Position(self.symbol, self.qty, self.avg_price, price, self.opened_at,
                        self.stop_price if stop_price is None else stop_price,
                        self.trailing_active if trailing_active is None else trailing_active,
                        self.high_water if high_water is None else high_water, self.stale)

    @property
    def market_value(self) -> float:
        return self.qty * self.last_price

    @property
    def unrealized_pnl(self) -> float:
        return (self.last_price - self.avg_price) * self.qty

    @property
    def unrealized_pct(self) -> float:
        if self.avg_price == 0:
            return 0.0
        return (self.last_price / self.avg_price - 1.0) * (1 if self.qty >= 0 else -1)


@dataclass(frozen=True, slots=True)
class Account:
    cash: float
    equity: float
    buying_power: float
    day_start_equity: float

    @property
    def day_pnl(self) -> float:
        return self.equity - self.day_start_equity

    @property
    def day_pnl_pct(self) -> float:
        if self.day_start_equity <= 0:
            return 0.0
        return self.day_pnl / self.day_start_equity


@dataclass(frozen=True, slots=True)
class Trade:
    """A closed round trip, recorded when a position goes flat."""

    symbol: str
    qty: float
    entry_time: datetime
    exit_time: datetime
    entry_price: float
    exit_price: float
    pnl: float
    exit_reason: str


@dataclass(frozen=True, slots=True)
class DayState:
    """The trading day's running state, saved so a restart continues the same day."""

    start_equity: float | None = None  # the daily loss limit's baseline; None: not known yet
    round_trips: int = 0
    breaker: bool = False  # the daily-loss circuit breaker has tripped: no new entries today

    def baseline(self, equity_now: float) -> float:
        """The start-of-day equity, or ``equity_now`` while none is known."""
        return equity_now if self.start_equity is None else self.start_equity

    def to_dict(self) -> dict[str, float | int | bool | None]:
        return {"start_equity": self.start_equity, "round_trips": self.round_trips, "breaker": self.breaker}

    @classmethod
    def from_dict(cls, saved: dict[str, object]) -> DayState:
        start, trips = saved.get("start_equity"), saved.get("round_trips", 0)
        return cls(float(start) if isinstance(start, (int, float)) else None,
                   int(trips) if isinstance(trips, (int, float)) else 0, bool(saved.get("breaker", False)))


@dataclass(frozen=True, slots=True)
class RiskDecision:
    accepted: bool
    reason: str
    qty: float = 0.0


@dataclass(frozen=True, slots=True)
class EngineStatus:
    """What the status bar shows; emitted whenever any part of it changes."""

    mode: TradingMode
    broker: BrokerKind
    data_source: str
    market_open: bool
    now: datetime
    next_change: datetime | None
    connected: bool = True
    data_stale: bool = False
    circuit_breaker: bool = False
    model: str = "rules fallback"
    round_trips_today: int = 0


def round_to_tick(price: float, side: Side) -> float:
    """A limit price on the tick US exchanges quote (SEC Rule 612: a cent at $1 and up, a hundredth
    of a cent below), never past the user's price: a buy's rounded down, a sell's up."""
    step = 0.01 if price >= 1.0 else 0.0001
    n = math.floor(price / step + 1e-9) if side == Side.BUY else math.ceil(price / step - 1e-9)
    return round(n * step, 2 if price >= 1.0 else 4)
