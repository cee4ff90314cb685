"""What the engine reports, as frozen events, through one small bus.

The GUI's worker subscribes once and re-emits each event as a Qt signal; a
headless run subscribes a logger; tests subscribe a list. A failing
subscriber is logged and never breaks the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from loguru import logger

from app.engine.types import (
    Account,
    Bar,
    EngineStatus,
    Fill,
    Order,
    Position,
    SignalStatus,
    Trade,
    TradingSignal,
)


@dataclass(frozen=True, slots=True)
class BarEvent:
    bar: Bar
    closed: bool  # False while the bar is still forming


@dataclass(frozen=True, slots=True)
class PredictionEvent:
    symbol: str
    time: datetime
    p_up: float
    confidence: float
    votes: tuple[tuple[str, float], ...]
    model: str


@dataclass(frozen=True, slots=True)
class SignalEvent:
    """A signal and what became of it: pending, executed, approved, rejected,
    expired, refused (failed re-validation), dropped (below threshold) or skipped."""

    signal: TradingSignal
    status: SignalStatus
    detail: str = ""


@dataclass(frozen=True, slots=True)
class OrderEvent:
    order: Order


@dataclass(frozen=True, slots=True)
class FillEvent:
    fill: Fill


@dataclass(frozen=True, slots=True)
class TradeEvent:
    trade: Trade


@dataclass(frozen=True, slots=True)
class PortfolioEvent:
    account: Account
    positions: tuple[Position, ...]
    exposure_pct: float
    round_trips_today: int
    foreign: tuple[Position, ...] = ()  # held at the broker but not bought by the app: shown, untouched


@dataclass(frozen=True, slots=True)
class AlertEvent:
    level: str  # "info", "warning", "error"
    message: str


@dataclass(frozen=True, slots=True)
class RecordEvent:
    """The trading record cannot be written: no new positions (``halted`` False), or the
    engine stopped itself because not even the backup could be kept (``halted`` True)."""

    message: str
    halted: bool


@dataclass(frozen=True, slots=True)
class StatusEvent:
    status: EngineStatus


Event = (BarEvent | PredictionEvent | SignalEvent | OrderEvent | FillEvent | TradeEvent
         | PortfolioEvent | AlertEvent | RecordEvent | StatusEvent)
Handler = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._handlers: list[Handler] = []
        self.active = False  # whether anyone listens (backtests skip building events nobody reads)

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)
        self.active = True

    def unsubscribe(self, handler: Handler) -> None:
        if handler in self._handlers:
            self._handlers.remove(handler)
        self.active = bool(self._handlers)

    def publish(self, event: Event) -> None:
        for handler in list(self._handlers):
            try:
                handler(event)
            except Exception:  # noqa: BLE001 - a broken listener must not stop trading
                logger.exception("Event handler {} failed on {}", handler, type(event).__name__)
