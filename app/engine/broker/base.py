"""The Broker port: the one door through which orders leave the engine."""

from __future__ import annotations

import abc
from collections.abc import Callable

from app.engine.types import Account, BrokerKind, Order, Position


class BrokerError(RuntimeError):
    """A broker call failed. ``transient`` errors are worth retrying;
    permanent ones (a rejection, insufficient buying power) are not."""

    def __init__(self, message: str, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.retry_after = retry_after


class Broker(abc.ABC):
    kind: BrokerKind = BrokerKind.SIMULATED
    supports_stop_orders: bool = True

    @abc.abstractmethod
    def account(self) -> Account:
        """Cash, equity and buying power now."""

    @abc.abstractmethod
    def positions(self) -> list[Position]:
        """Open positions as the broker holds them (the source of truth)."""

    def position(self, symbol: str) -> Position | None:
        """One symbol's position, or None when flat (brokers with a cheaper lookup override it)."""
        return next((p for p in self.positions() if p.symbol == symbol), None)

    @abc.abstractmethod
    def open_orders(self) -> list[Order]:
        """Orders not yet filled, canceled or rejected."""

    @abc.abstractmethod
    def submit(self, order: Order) -> Order:
        """Send an order; idempotent on ``client_order_id``: sending the same id
        twice returns the order already there instead of creating a second."""

    @abc.abstractmethod
    def get_order(self, client_order_id: str) -> Order | None:
        """The broker's current view of one order, or None if it never arrived."""

    @abc.abstractmethod
    def cancel(self, client_order_id: str) -> None:
        """Cancel an open order; canceling a finished or unknown order is a no-op."""

    def replace_order(self, client_order_id: str, new: Order) -> Order:
        """Put ``new`` (same symbol, side and type; a new id, size or stop price) in the place of
        a working order. Alpaca does it in one call; this default cancels, checks that the
        cancel landed and that nothing filled, and only then submits, so a cancel still
        pending or an order that filled meanwhile never leaves a second order working."""
        self.cancel(client_order_id)
        old = self.get_order(client_order_id)
        if old is not None and old.status.is_open:
            raise BrokerError(f"{client_order_id} is still being canceled; not replaced yet", transient=True)
        if old is not None and old.filled_qty > 0:
            raise BrokerError(f"{client_order_id} filled before it could be replaced", transient=False)
        return self.submit(new)

    def trade_updates(self) -> list[Order]:
        """Order reports the broker pushed since the last call (Alpaca's trade-updates stream),
        oldest first; [] where it pushes none, and the engine polls."""
        return []

    def on_trade_update(self, hook: Callable[[], None]) -> None:  # noqa: B027 - optional: most push nothing
        """Have ``hook`` called (on another thread) when an update is pushed: a desk wakes its engine."""

    def last_price(self, symbol: str) -> float | None:
        """The latest traded price the broker knows, if it offers one."""
        return None

    def revision(self, symbol: str) -> int | None:
        """A number that changes whenever an order or the position of ``symbol`` changes, where
        the broker can promise that (nothing but this engine trades the account: a backtest's
        broker); None (the default) where it cannot, and every check asks the broker again."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook: most brokers hold nothing to release
        """Release connections."""
