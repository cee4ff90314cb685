"""A loopback HTTP server that speaks the slice of Alpaca's trading REST API
the adapter uses, so tests can drive alpaca-py's real ``TradingClient``.

JSON shapes follow the alpaca-py maintainers' fixtures in
``shared/data/alpaca/fixtures`` (numbers as strings, as the real API sends
them), with the account's PDT fields gone as they are since July 2026. The
server keeps an account (cash, positions, orders), enforces what Alpaca
enforces and the engine must cope with (unique ``client_order_id``, buying
power, shares held for open sell orders, no sub-penny stops, API keys), and
injects faults: 5xx, 429 with Retry-After, a hang past the client's timeout,
a reset connection, each either *before* the request takes effect or
*after* (the order is booked but the answer is lost). It counts requests,
faults and orders created per client order id, to prove nothing is sent twice.
With ``start_stream()`` it also pushes every change of an order over Alpaca's
trade-updates websocket (``alpaca_stream.StreamServer``).
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from alpaca_faults import EVERY_FAULT, Fault, FaultPolicy, random_faults
from alpaca_http import Handler, Reply
from alpaca_http import err as _err
from alpaca_shapes import (
    OPEN_STATUSES,
    account,
    held_for_sells,
    latest_trades,
    new_order,
    position,
    reaches,
    wash_trade,
)
from alpaca_shapes import num as _s
from alpaca_shapes import ts as _ts
from alpaca_stream import StreamServer

from app.engine.secrets import ApiKeys, Secret

__all__ = ["EVERY_FAULT", "AlpacaServer", "Fault", "FaultPolicy", "alpaca_server", "random_faults"]

KEY_ID = "PKLOOPBACK7Q2W9E4R6T"
SECRET_KEY = "lb-secret-3f9a1c7e5d2b8a6c4e0f1a3b"



def sub_penny(price: Any) -> bool:
    """Alpaca refuses prices finer than a cent at $1 and up, a hundredth of a cent below."""
    return round(float(price), 2 if float(price) >= 1 else 4) != float(price)

class AlpacaServer:
    """Alpaca's trading API on 127.0.0.1 with one account; every attribute is
    a knob or a counter for tests (safe to read while requests run)."""

    def __init__(self, cash: float = 100_000.0, *, key_id: str = KEY_ID, secret_key: str = SECRET_KEY,
                 auto_fill: bool = False, legacy_pdt_fields: bool = False, hang_s: float = 2.0) -> None:
        self.key_id, self.secret_key = key_id, secret_key
        self.cash = cash
        self.last_equity = cash
        self.auto_fill = auto_fill  # fill market orders on arrival when the symbol has a price
        # Outside regular hours nothing trades (no extended hours here): orders are accepted and
        # wait for the open, market orders included ("queued until market open", docs: Orders >
        # Order Lifecycle / Market Hours); a trade print then fills nothing.
        self.market_open = True
        self.legacy_pdt_fields = legacy_pdt_fields  # the account as it looked before July 2026
        self.hang_s = hang_s
        self.shorting_enabled = False  # a margin account that may sell short (multiplier 4)
        # Alpaca cancels asynchronously: with N > 0 a DELETE leaves the order
        # pending_cancel (its shares still held) for the next N reads of it.
        self.cancel_settles_after = 0
        self._settle_in: dict[str, int] = {}
        self.faults: FaultPolicy | None = None
        self.stream: StreamServer | None = None  # the trade-updates websocket, where started
        self.before_route: Callable[[str, str], None] | None = None  # (method, path): stage races
        self.prices: dict[str, float] = {}
        self.positions: dict[str, dict[str, float]] = {}  # symbol -> qty, avg
        self.orders: dict[str, dict[str, Any]] = {}  # alpaca id -> order JSON
        self._by_coid: dict[str, str] = {}
        self.created_per_coid: Counter[str] = Counter()
        self.reused_ids: Counter[str] = Counter()  # ids sent again for a different order
        self.requests: Counter[str] = Counter()  # "METHOD /v2/route" -> count
        self.request_count = 0
        self.fault_count = 0
        self.lock = threading.RLock()
        self._queued: deque[Fault] = deque()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def api_keys(self) -> ApiKeys:
        return ApiKeys(Secret(self.key_id), Secret(self.secret_key))

    def start(self) -> AlpacaServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="alpaca-server",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def start_stream(self) -> StreamServer:
        """Serve Alpaca's trade-updates websocket too: every change of an order is pushed."""
        self.stream = StreamServer(self.key_id, self.secret_key).start()
        return self.stream

    def _emit(self, event: str, o: dict[str, Any], price: float | None = None, qty: float | None = None) -> None:
        if self.stream is not None:
            held = self.positions.get(o["symbol"], {"qty": 0.0})["qty"]
            self.stream.publish(event, o, price, qty, held)

    def stop(self) -> None:
        if self.stream is not None:
            self.stream.stop()
        self._stopping.set()  # releases hung handlers at once
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # ------------------------------------------------------- test hooks
    def fail_next(self, *faults: Fault) -> None:
        """The next requests (any route) fail with these faults, in order."""
        with self.lock:
            self._queued.extend(faults)

    def heal(self) -> None:
        """No more injected faults: the queued ones are dropped and the policy removed."""
        with self.lock:
            self._queued.clear()
            self.faults = None

    def set_price(self, symbol: str, price: float) -> None:
        with self.lock:
            self.prices[symbol] = price

    def add_position(self, symbol: str, qty: float, avg_price: float, price: float | None = None) -> None:
        with self.lock:
            self.positions[symbol] = {"qty": qty, "avg": avg_price}
            self.prices[symbol] = price if price is not None else avg_price

    def order_by_coid(self, client_order_id: str) -> dict[str, Any] | None:
        with self.lock:
            oid = self._by_coid.get(client_order_id)
            return dict(self.orders[oid]) if oid else None

    def duplicates(self) -> dict[str, int]:
        """Client order ids booked more than once, or sent again for a different order (Alpaca
        refuses the second; a client that takes the first for it is wrong): must stay empty."""
        with self.lock:
            booked = {c: n for c, n in self.created_per_coid.items() if n > 1}
            return booked | {c: n + 1 for c, n in self.reused_ids.items()}

    def fill_open_orders(self, price: float, symbol: str | None = None, qty: float | None = None) -> int:
        """Trade at ``price``: fill open market orders and the stops and limits it reaches.
        With ``qty`` each order fills at most that many shares more: a partial fill
        (``partially_filled``, as Alpaca reports an order the market only partly took)."""
        filled = 0
        with self.lock:
            if not self.market_open:
                return 0
            for o in list(self.orders.values()):
                # a pending cancel can still fill: Alpaca cancels only what has not executed
                if o["status"] not in OPEN_STATUSES or (symbol and o["symbol"] != symbol):
                    continue
                self.prices[o["symbol"]] = price
                if not reaches(o, price):
                    continue
                self._fill(o, price, qty)
                filled += 1
        return filled

    def open_market(self, is_open: bool = True) -> None:
        """The session opens (or, with False, the market closes): queued orders start working."""
        with self.lock:
            self.market_open = is_open
            if is_open:
                for o in self.orders.values():
                    if o["status"] == "accepted":
                        o.update(status="new")
                        self._emit("new", o)

    def place_foreign(self, symbol: str, side: str, qty: float, type_: str = "limit",
                      limit_price: float | None = None, stop_price: float | None = None) -> str:
        """An order the user placed at Alpaca by hand (not the app's); returns its client id."""
        body = {"symbol": symbol, "side": side, "qty": qty, "type": type_, "time_in_force": "gtc",
                "limit_price": limit_price, "stop_price": stop_price, "client_order_id": f"web-{uuid.uuid4().hex[:8]}"}
        with self.lock:
            return str(self._book(new_order(body))["client_order_id"])

    def cancel_by_coid(self, client_order_id: str) -> None:
        """The user cancels an order on Alpaca's dashboard."""
        with self.lock:
            self._mark_canceled(self.orders[self._by_coid[client_order_id]])

    def end_of_day(self) -> None:
        """16:00 ET: DAY orders still open expire (Alpaca's time_in_force=day; GTC orders
        stay), and last_equity becomes today's closing equity (the account's
        previous-close equity, which the daily loss limit starts from)."""
        with self.lock:
            now = _ts(datetime.now(UTC))
            for o in self.orders.values():
                if o["status"] in OPEN_STATUSES and o["time_in_force"] == "day":
                    o.update(status="expired", expired_at=now, updated_at=now)
                    self._emit("expired", o)
            self.last_equity = self._equity()

    # ------------------------------------------------------------ state
    def _fill(self, o: dict[str, Any], price: float, most: float | None = None) -> None:
        left = float(o["qty"]) - float(o["filled_qty"])
        qty = left if most is None else min(left, most)
        signed = qty if o["side"] == "buy" else -qty
        pos = self.positions.get(o["symbol"], {"qty": 0.0, "avg": price})
        new_qty = pos["qty"] + signed
        avg = (pos["avg"] * pos["qty"] + price * signed) / new_qty if signed > 0 and new_qty else pos["avg"]
        if abs(new_qty) < 1e-9:
            self.positions.pop(o["symbol"], None)
        else:
            self.positions[o["symbol"]] = {"qty": new_qty, "avg": avg}
        self.cash -= signed * price
        now = _ts(datetime.now(UTC))
        done = float(o["filled_qty"])
        avg = (float(o["filled_avg_price"] or 0.0) * done + price * qty) / (done + qty)
        complete = qty >= left - 1e-9
        partly = "pending_cancel" if o["status"] == "pending_cancel" else "partially_filled"  # still being cut
        o.update(status="filled" if complete else partly, filled_qty=_s(done + qty),
                 filled_avg_price=_s(avg), filled_at=now if complete else o["filled_at"], updated_at=now)
        self._emit("fill" if complete else "partial_fill", o, price, qty)

    def _equity(self) -> float:
        return self.cash + sum(p["qty"] * self.prices.get(s, p["avg"]) for s, p in self.positions.items())

    # ----------------------------------------------------------- routes
    def route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Reply:
        with self.lock:
            if path == "/v2/account" and method == "GET":
                return 200, account(self)
            if path == "/v2/positions" and method == "GET":
                return 200, [position(self, s) for s in sorted(self.positions)]
            if path.startswith("/v2/positions/") and method == "DELETE":
                return self._close_position(path.rsplit("/", 1)[1])
            if path == "/v2/orders" and method == "GET":
                return 200, self._list_orders(query)
            if path == "/v2/stocks/trades/latest" and method == "GET":
                return 200, latest_trades(self.prices, query.get("symbols", "").split(","))
            if path == "/v2/stocks/bars" and method == "GET":  # no history here (BarsServer serves some)
                return 200, {"bars": {}, "next_page_token": None}
            if path == "/v2/orders" and method == "POST":
                return self._create_order(body)
            if path == "/v2/orders:by_client_order_id" and method == "GET":
                coid = query.get("client_order_id", "")
                oid = self._by_coid.get(coid)
                if oid is None:
                    return _err(404, f"order not found for {coid}")
                return 200, self._read(self.orders[oid])
            if path.startswith("/v2/orders/") and method in ("GET", "DELETE", "PATCH"):
                o = self.orders.get(path.rsplit("/", 1)[1])
                if o is None:
                    return _err(404, "order not found")
                if method == "PATCH":
                    return self._replace(o, body)
                return (200, self._read(o)) if method == "GET" else self._cancel(o)
            return _err(404, "endpoint not found")

    def _list_orders(self, query: dict[str, str]) -> list[dict[str, Any]]:
        status = query.get("status", "open")
        rows = [o for o in self.orders.values()
                if status == "all" or (o["status"] in OPEN_STATUSES) == (status == "open")]
        rows.sort(key=lambda o: o["submitted_at"], reverse=True)
        return rows[: int(query.get("limit", 50))]

    def _create_order(self, body: dict[str, Any]) -> Reply:
        coid = body.get("client_order_id")
        if coid and coid in self._by_coid:
            old = self.orders[self._by_coid[coid]]
            if (old["symbol"], old["side"], old["type"]) != (body.get("symbol"), body.get("side"), body.get("type")):
                self.reused_ids[coid] += 1  # not a resend of the same intent: an id used twice
            return _err(422, "client_order_id must be unique")
        if body.get("type") not in ("market", "stop", "limit") or body.get("side") not in ("buy", "sell"):
            return _err(422, "this test server takes market, stop and limit buy/sell orders only")
        if body["type"] == "limit":
            limit = body.get("limit_price")
            if limit is None:
                return _err(422, "limit_price is required for limit orders")
            if sub_penny(limit):
                return _err(422, f"invalid limit_price {limit}. sub-penny increment does not fulfill "
                                 "minimum pricing criteria")
        if wash_trade(self.orders, body):
            return 403, {"code": 40310000, "message": "potential wash trade detected. use complex orders"}
        qty = float(body.get("qty") or 0)
        if qty <= 0:
            return _err(422, "qty must be > 0")
        stop = body.get("stop_price")
        if body["type"] == "stop":
            if stop is None:
                return _err(422, "stop_price is required for stop orders")
            if sub_penny(stop):
                return _err(422, f"invalid stop_price {stop}. sub-penny increment does not fulfill "
                                 "minimum pricing criteria")
        symbol = body["symbol"]
        if body["side"] == "buy" and body["type"] in ("market", "limit"):
            # "The calculated value of an opening buy order is the order's limit price multiplied by
            # the order's quantity" (docs: Placing Orders > Buying Power); a market buy's, the price
            price = float(body["limit_price"]) if body["type"] == "limit" else self.prices.get(symbol)
            if price is not None and qty * price > max(self.cash, 0.0) + 1e-9:
                return _err(403, "insufficient buying power")
        if body["side"] == "sell" and not self.shorting_enabled:
            available = self.positions.get(symbol, {"qty": 0.0})["qty"] - held_for_sells(self.orders, symbol)
            if qty > available + 1e-9:
                return _err(403, f"insufficient qty available for order (requested: {_s(qty)}, "
                                 f"available: {_s(max(available, 0.0))})")
        return 200, self._book(new_order(body))

    def _book(self, order: dict[str, Any]) -> dict[str, Any]:
        self.orders[order["id"]] = order
        self._by_coid[order["client_order_id"]] = order["id"]
        self.created_per_coid[order["client_order_id"]] += 1
        self._emit("new", order)
        price = self.prices.get(order["symbol"])
        if self.auto_fill and self.market_open and order["type"] == "market" and price is not None:
            self._fill(order, price)
        return order

    def _replace(self, o: dict[str, Any], body: dict[str, Any]) -> Reply:
        """PATCH /v2/orders/{id} (docs: Orders > Replace Order): a new order takes the old
        one's place with the changed fields; the old one ends ``replaced`` and points at it."""
        if o["status"] not in ("new", "accepted", "pending_new", "held"):
            return _err(422, f'order is not replaceable in "{o["status"]}" state')
        coid = body.get("client_order_id") or str(uuid.uuid4())
        if coid in self._by_coid:
            return _err(422, "client_order_id must be unique")
        stop = body.get("stop_price", o["stop_price"])
        if stop is not None and round(float(stop), 2 if float(stop) >= 1 else 4) != float(stop):
            return _err(422, f"invalid stop_price {stop}. sub-penny increment does not fulfill "
                             "minimum pricing criteria")
        fresh = new_order({
            "symbol": o["symbol"], "side": o["side"], "type": o["type"], "client_order_id": coid,
            "qty": body.get("qty", o["qty"]), "time_in_force": body.get("time_in_force", o["time_in_force"]),
            "stop_price": stop, "limit_price": body.get("limit_price", o["limit_price"])})
        now = _ts(datetime.now(UTC))
        fresh["replaces"] = o["id"]
        o.update(status="replaced", replaced_at=now, replaced_by=fresh["id"], updated_at=now)
        self._emit("replaced", o)
        return 200, self._book(fresh)

    def _cancel(self, o: dict[str, Any]) -> Reply:
        if o["status"] not in OPEN_STATUSES or o["status"] == "pending_cancel":
            return _err(422, f'order is already in "{o["status"]}" state')
        if self.cancel_settles_after > 0:
            o.update(status="pending_cancel")
            self._emit("pending_cancel", o)
            self._settle_in[o["id"]] = self.cancel_settles_after
        else:
            self._mark_canceled(o)
        return 204, None

    def _mark_canceled(self, o: dict[str, Any]) -> None:
        now = _ts(datetime.now(UTC))
        o.update(status="canceled", canceled_at=now, updated_at=now)
        self._emit("canceled", o)

    def _read(self, o: dict[str, Any]) -> dict[str, Any]:
        """A read of an order; a pending cancel lands after its N reads."""
        left = self._settle_in.get(o["id"])
        if left is not None and left > 0:
            self._settle_in[o["id"]] = left - 1
        elif left is not None:
            del self._settle_in[o["id"]]
            if o["status"] == "pending_cancel":  # it may have filled meanwhile: then it stays filled
                self._mark_canceled(o)
        return o

    def _close_position(self, symbol: str) -> Reply:
        p = self.positions.get(symbol)
        if p is None:
            return _err(404, f"position not found: {symbol}")
        side = "sell" if p["qty"] > 0 else "buy"
        body = {"symbol": symbol, "qty": abs(p["qty"]), "side": side, "type": "market"}
        return 200, self._book(new_order(body))

    def next_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            self.request_count += 1
            self.requests[f"{method} {path}"] += 1
            fault = self._queued.popleft() if self._queued else None
        if fault is None and self.faults is not None:
            fault = self.faults(method, path)
        if fault is not None:
            with self.lock:
                self.fault_count += 1
        return fault


@pytest.fixture
def alpaca_server() -> Iterator[AlpacaServer]:
    """A fresh server per test, stopped (and its hung handlers released) after."""
    server = AlpacaServer().start()
    try:
        yield server
    finally:
        server.stop()
