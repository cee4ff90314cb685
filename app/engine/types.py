"""Immutable value types shared by every layer of the engine.

Everything here is a frozen dataclass so it can cross a thread boundary (the
GUI receives these through Qt signals) without anyone mutating it in flight.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class Side(str, enum.Enum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


class OrderType(str, enum.Enum):
    MARKET = "market"
    STOP = "stop"


class OrderStatus(str, enum.Enum):
    NEW = "new"  # created locally, not yet acknowledged by the broker
    SUBMITTED = "submitted"  # accepted by the broker, waiting for a fill
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.NEW, OrderStatus.SUBMITTED)


class TradingMode(str, enum.Enum):
    MANUAL = "manual"
    HYBRID = "hybrid"
    AUTO = "auto"


class BrokerKind(str, enum.Enum):
    SIMULATED = "SIMULATED"
    PAPER = "PAPER"
    LIVE = "LIVE"


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
