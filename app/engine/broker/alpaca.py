"""The Alpaca adapter: the Broker port over alpaca-py's ``TradingClient``.

Three decisions shape this file:

- **The engine owns retries.** alpaca-py retries 429/504 itself (three times,
  three seconds apart) inside one call, which would freeze the engine's
  thread for nine seconds and hide the failure from :class:`OrderRouter`.
  That loop is switched off; every failure becomes one :class:`BrokerError`
  whose ``transient`` flag tells the router whether to try again.
- **Every request has a timeout.** alpaca-py sends requests without one, so a
  server that accepts the connection and never answers would hang the bot.
- **Submitting is idempotent.** A submit whose answer was lost (a timeout, a
  reset, a 5xx after the order was booked) is retried with the same
  ``client_order_id``; Alpaca answers 422 "client_order_id must be unique",
  and the adapter returns the order already there instead of failing.

Keys are revealed once, to build the client, and scrubbed from every error
message: an exception text can reach a log file or the GUI.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, QueryOrderStatus, TimeInForce
from alpaca.trading.requests import (
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
    StopOrderRequest,
)
from loguru import logger
from pydantic import ValidationError

from app.engine.broker.alpaca_orders import num, round_stop, to_order
from app.engine.broker.alpaca_stream import TradeUpdates
from app.engine.broker.base import Broker, BrokerError
from app.engine.clock import Clock, WallClock
from app.engine.logs import register_secret
from app.engine.secrets import ApiKeys, load_keys
from app.engine.types import Account, BrokerKind, Order, OrderType, Position, Side, round_to_tick

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 10.0
_MAX_MESSAGE = 300
_CANCEL_POLL_S = 0.1


class LiveGateError(BrokerError):
    """Live trading was asked for without passing the live gate."""

    def __init__(self) -> None:
        super().__init__("live trading is locked: pass the live-trading gate in Settings first",
                         transient=False)


class AlpacaError(BrokerError):
    """A failed Alpaca call; ``status`` is the HTTP status when there was an answer."""

    def __init__(self, message: str, transient: bool, retry_after: float | None = None,
                 status: int | None = None) -> None:
        super().__init__(message, transient, retry_after)
        self.status = status


class _TimeoutSession(requests.Session):
    """A session that gives every request a timeout, since alpaca-py passes none."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def request(self, method: str, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        return super().request(method, url, *args, **kwargs)


class AlpacaBroker(Broker):
    supports_stop_orders = True

    def __init__(self, keys: ApiKeys, clock: Clock, *, kind: BrokerKind = BrokerKind.PAPER,
                 live_gate_passed: bool = False, url_override: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, cancel_wait_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``url_override`` points the client elsewhere (a loopback test server);
        ``timeout_s`` bounds each HTTP request, connect and read alike;
        ``cancel_wait_s`` bounds the wait for an asynchronous cancel to land."""
        if kind not in (BrokerKind.PAPER, BrokerKind.LIVE):
            raise ValueError(f"AlpacaBroker trades PAPER or LIVE, not {kind.value}")
        if kind == BrokerKind.LIVE and not live_gate_passed:
            raise LiveGateError()
        if not keys.complete:
            raise BrokerError("Alpaca API keys are missing: add them in Settings", transient=False)
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.kind = kind
        self._keys = keys
        self._clock = clock
        self._cancel_wait_s = cancel_wait_s
        self._sleep = sleep
        for secret in (keys.key_id, keys.secret_key):
            register_secret(secret.reveal())
        self._client = TradingClient(keys.key_id.reveal(), keys.secret_key.reveal(),
                                     paper=kind == BrokerKind.PAPER, url_override=url_override)
        self._tune(timeout_s)
        self._stream: TradeUpdates | None = None

    @classmethod
    def from_env(cls, env_file: Path | None, clock: Clock, *, kind: BrokerKind = BrokerKind.PAPER,
                 live_gate_passed: bool = False, url_override: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, cancel_wait_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep) -> AlpacaBroker:
        """Keys from Alpaca's environment variables or the app's ``.env``
        (live keys under their own ``LIVE_`` names)."""
        keys = load_keys(env_file, live=kind == BrokerKind.LIVE)
        return cls(keys, clock, kind=kind, live_gate_passed=live_gate_passed, url_override=url_override,
                   timeout_s=timeout_s, cancel_wait_s=cancel_wait_s, sleep=sleep)

    def _tune(self, timeout_s: float) -> None:
        # RESTClient keeps these as plain attributes; TradingClient offers no
        # argument for them. The tests prove both settings take effect.
        self._client._retry = 0
        self._client._retry_codes = []
        self._client._session.close()
        self._client._session = _TimeoutSession(timeout_s)

    # ----------------------------------------------------------------- port
    def account(self) -> Account:
        a: Any = self._call("account", self._client.get_account)
        equity = num(a.equity)
        # pattern_day_trader / daytrade_count are deliberately not read:
        # Alpaca stopped sending them in July 2026.
        return Account(cash=num(a.cash), equity=equity, buying_power=num(a.buying_power),
                       day_start_equity=num(a.last_equity, equity))

    def positions(self) -> list[Position]:
        rows: Any = self._call("positions", self._client.get_all_positions)
        now = self._clock.now()  # Alpaca does not say when a position opened
        return [Position(p.symbol, num(p.qty), num(p.avg_entry_price),
                         num(p.current_price, num(p.avg_entry_price)), now) for p in rows]

    def open_orders(self) -> list[Order]:
        query = GetOrdersRequest(status=QueryOrderStatus.OPEN, limit=500)
        rows: Any = self._call("open orders", lambda: self._client.get_orders(query))
        orders = [to_order(o) for o in rows]
        return [o for o in orders if o.status.is_open]

    def get_order(self, client_order_id: str) -> Order | None:
        found = self._find(client_order_id)
        return to_order(found) if found is not None else None

    def submit(self, order: Order) -> Order:
        request = self._request_for(order)
        try:
            placed: Any = self._call(f"submit {order.client_order_id}",
                                     lambda: self._client.submit_order(request))
        except AlpacaError as exc:
            if not _is_duplicate(exc):
                raise
            placed = self._find(order.client_order_id)
            if placed is None:  # 422 for a duplicate, yet not there: a broker fault
                raise AlpacaError("Alpaca reports a duplicate order id it cannot find",
                                  transient=True) from None
            there = to_order(placed)
            # the same intent sent again (its size may have been re-checked since), or an old
            # order that happens to carry the id? only the former is this order
            if (there.symbol, there.side, there.order_type) != (order.symbol, order.side, order.order_type) \
                    or there.created_at < order.created_at - timedelta(days=1):
                raise AlpacaError(f"order id {order.client_order_id} is already used at Alpaca by another "
                                  f"order ({there.side.value} {there.qty:g} {there.symbol}); not sent",
                                  transient=False) from None
            logger.info("Order {} was already at Alpaca; using it", order.client_order_id)
        return to_order(placed).with_intent_of(order)

    def cancel(self, client_order_id: str) -> None:
        found = self._find(client_order_id)
        if found is None or not to_order(found).status.is_open:
            return
        try:
            self._call(f"cancel {client_order_id}", lambda: self._client.cancel_order_by_id(found.id))
        except AlpacaError as exc:
            if exc.status not in (404, 422):  # 422: it filled or ended meanwhile
                raise
        self._await_end(client_order_id)

    def replace_order(self, client_order_id: str, new: Order) -> Order:
        """Alpaca's replace (PATCH /v2/orders/{id}): the new order takes the old one's place in
        one step, so the shares are never free and never doubly held; the old one ends
        ``replaced``. A fractional size cannot be replaced (Alpaca takes whole shares there):
        it is cancelled and placed again, as the port does by default."""
        if not float(new.qty).is_integer() or new.stop_price is None:
            return super().replace_order(client_order_id, new)
        found = self._find(client_order_id)
        if found is None:
            raise AlpacaError(f"order {client_order_id} is unknown to Alpaca; nothing to replace", transient=False)
        request = ReplaceOrderRequest(qty=int(new.qty), stop_price=round_stop(new.stop_price),
                                      time_in_force=TimeInForce.GTC, client_order_id=new.client_order_id)
        placed: Any = self._call(f"replace {client_order_id}",
                                 lambda: self._client.replace_order_by_id(found.id, request))
        return to_order(placed).with_intent_of(new)

    def _await_end(self, client_order_id: str) -> None:
        """Wait (briefly) for the cancel to land. Alpaca cancels asynchronously
        (pending_cancel) and keeps the shares held until then, so an exit sent
        straight after canceling its stop would be refused for "insufficient
        qty available"."""
        polls = math.ceil(self._cancel_wait_s / _CANCEL_POLL_S)
        for attempt in range(polls + 1):
            found = self._find(client_order_id)
            if found is None or not to_order(found).status.is_open:
                return
            if attempt < polls:
                self._sleep(_CANCEL_POLL_S)
        logger.warning("Cancel of {} not confirmed by Alpaca after {:.1f}s ({})",
                       client_order_id, self._cancel_wait_s, found.status.value)

    # ----------------------------------------------------------- stream
    def start_stream(self, url_override: str | None = None) -> None:
        """Follow the account's orders over Alpaca's trade-updates websocket as well as by
        polling (see :mod:`app.engine.broker.alpaca_stream`); ``url_override`` points it
        elsewhere (a loopback test server)."""
        if self._stream is None:
            self._stream = TradeUpdates(self._keys.key_id.reveal(), self._keys.secret_key.reveal(),
                                        paper=self.kind == BrokerKind.PAPER, url_override=url_override)
            self._stream.start()

    def trade_updates(self) -> list[Order]:
        return self._stream.drain() if self._stream is not None else []

    def on_trade_update(self, hook: Callable[[], None]) -> None:
        if self._stream is not None:
            self._stream.on_update = hook

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop()
        self._client._session.close()

    # ------------------------------------------------------------ internal
    def _request_for(self, order: Order) -> MarketOrderRequest | StopOrderRequest | LimitOrderRequest:
        if order.side not in (Side.BUY, Side.SELL):
            raise BrokerError(f"rejected: cannot send a {order.side.value} order", transient=False)
        if order.qty <= 0:
            raise BrokerError(f"rejected: quantity {order.qty} must be positive", transient=False)
        side = OrderSide.BUY if order.side == Side.BUY else OrderSide.SELL
        # a stop lasts until it fills or is cancelled (GTC): a DAY stop expires at 16:00 and
        # leaves a position held overnight naked. Fractional orders must be DAY at Alpaca.
        gtc = order.order_type == OrderType.STOP and float(order.qty).is_integer()
        common: dict[str, Any] = {"symbol": order.symbol, "qty": order.qty, "side": side,
                                  "time_in_force": TimeInForce.GTC if gtc else TimeInForce.DAY,
                                  "client_order_id": order.client_order_id}
        if order.order_type == OrderType.STOP:
            if order.stop_price is None:
                raise BrokerError("rejected: a stop order needs a stop price", transient=False)
            return StopOrderRequest(stop_price=round_stop(order.stop_price), **common)
        if order.order_type == OrderType.LIMIT:  # a DAY order: Alpaca expires it at the close
            if not (order.limit_price and order.limit_price > 0):
                raise BrokerError("rejected: a limit order needs a limit price above 0", transient=False)
            return LimitOrderRequest(limit_price=round_to_tick(order.limit_price, order.side), **common)
        return MarketOrderRequest(**common)

    def _find(self, client_order_id: str) -> Any:
        """The raw Alpaca order for a client id, or None when Alpaca never saw it."""
        try:
            return self._call(f"order {client_order_id}",
                              lambda: self._client.get_order_by_client_id(client_order_id))
        except AlpacaError as exc:
            if exc.status == 404:
                return None
            raise

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one client call, translating every failure into an AlpacaError.

        The error is raised outside the ``except`` blocks so it carries no
        chained library exception: those hold the request, headers and all,
        and a traceback printer with variable dumps would show the keys.
        """
        try:
            return fn()
        except APIError as exc:
            err = self._from_api_error(exc)
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError,
                requests.exceptions.JSONDecodeError) as exc:
            err = AlpacaError(f"Alpaca unreachable: {type(exc).__name__}", transient=True)
        except requests.RequestException as exc:
            err = AlpacaError(f"Alpaca request failed: {type(exc).__name__}", transient=False)
        except ValidationError:
            # Transient on purpose: after a submit, "unreadable" means "outcome
            # unknown", which must never be recorded as a rejection.
            err = AlpacaError("Alpaca sent an answer this app cannot read", transient=True)
        err = AlpacaError(f"{what}: {self._scrub(str(err))}", err.transient, err.retry_after, err.status)
        logger.debug("Alpaca call failed: {}", err)
        raise err

    def _from_api_error(self, exc: APIError) -> AlpacaError:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        message = _message(str(exc))
        if status == 429:
            return AlpacaError(f"rate limited by Alpaca ({message})", True,
                               _retry_after(response), status)
        if status is None or status >= 500 or status == 408:
            return AlpacaError(f"Alpaca unavailable ({status}: {message})", True, None, status)
        return AlpacaError(f"rejected by Alpaca ({status}): {message}", False, None, status)

    def _scrub(self, text: str) -> str:
        for secret in (self._keys.key_id, self._keys.secret_key):
            value = secret.reveal()
            if value:
                text = text.replace(value, "••••")
        return text


def _is_duplicate(exc: AlpacaError) -> bool:
    text = str(exc).lower()
    return exc.status == 422 and "client_order_id" in text and "unique" in text


def _message(body: str) -> str:
    """The broker's reason: the ``message`` of a JSON error, else the text."""
    try:
        parsed = json.loads(body)
        if isinstance(parsed, dict) and "message" in parsed:
            body = str(parsed["message"])
    except ValueError:
        pass
    body = " ".join(body.split())
    return body[:_MAX_MESSAGE] or "no details"


def _retry_after(response: Any) -> float | None:
    """Seconds from a Retry-After header: a number, or an HTTP date measured
    against the response's own Date header (so no local clock is needed)."""
    headers = getattr(response, "headers", None) or {}
    raw = headers.get("Retry-After")
    if not raw:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    try:
        until = email.utils.parsedate_to_datetime(raw)
        sent = email.utils.parsedate_to_datetime(headers.get("Date", ""))
    except (TypeError, ValueError):
        return None
    return max((until - sent).total_seconds(), 0.0)


def check_connection(keys: ApiKeys, url: str | None = None) -> str:
    """One account read with these keys, as a line for the settings dialog."""
    if not keys.complete:
        return "no paper keys entered or stored"
    broker = AlpacaBroker(keys, WallClock(), timeout_s=8.0, url_override=url)
    acct = broker.account()
    return f"connected: equity {acct.equity:,.2f}, buying power {acct.buying_power:,.2f}"
