"""The JSON the loopback Alpaca server answers with, in the API's shapes: numbers as
strings as the real API sends them, following the alpaca-py maintainers' fixtures in
``shared/data/alpaca/fixtures``, the account without the PDT fields Alpaca dropped in
July 2026 (unless a test asks for the old shape)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alpaca_server import AlpacaServer


def ts(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


def num(x: float) -> str:
    return repr(round(x, 9)) if x != int(x) else str(int(x))


OPEN_STATUSES = frozenset({"new", "accepted", "pending_new", "partially_filled", "held", "pending_cancel"})


def new_order(body: dict[str, Any]) -> dict[str, Any]:
    """A new order as Alpaca answers it (status accepted)."""
    now = ts(datetime.now(UTC))
    kind, side, stop, limit = body["type"], body["side"], body.get("stop_price"), body.get("limit_price")
    return {
        "id": str(uuid.uuid4()), "client_order_id": body.get("client_order_id") or str(uuid.uuid4()),
        "created_at": now, "updated_at": now, "submitted_at": now, "filled_at": None,
        "expired_at": None, "canceled_at": None, "failed_at": None, "replaced_at": None,
        "replaced_by": None, "replaces": None, "asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, body["symbol"])),
        "symbol": body["symbol"], "asset_class": "us_equity", "notional": None,
        "qty": num(float(body["qty"])), "filled_qty": "0", "filled_avg_price": None,
        "order_class": "simple", "order_type": kind, "type": kind, "side": side,
        "time_in_force": body.get("time_in_force", "day"),
        "limit_price": num(float(limit)) if limit is not None else None,
        "stop_price": num(float(stop)) if stop is not None else None, "status": "accepted",
        "extended_hours": False, "legs": None, "trail_percent": None, "trail_price": None, "hwm": None,
        "position_intent": "buy_to_open" if side == "buy" else "sell_to_close",
    }


def account(server: AlpacaServer) -> dict[str, Any]:
    equity = server._equity()
    longs = sum(p["qty"] * server.prices.get(s, p["avg"]) for s, p in server.positions.items())
    acct: dict[str, Any] = {
        "account_blocked": False, "accrued_fees": "0", "account_number": "010203ABCD",
        "cash": num(server.cash), "created_at": "2019-06-12T22:47:07.99658Z", "currency": "USD",
        "equity": num(equity), "id": "e6fe16f3-64a4-4921-8928-cadf02f92f98", "initial_margin": "0",
        "last_equity": num(server.last_equity), "last_maintenance_margin": "0", "long_market_value": num(longs),
        "maintenance_margin": "0", "multiplier": "4" if server.shorting_enabled else "1",
        "portfolio_value": num(equity), "short_market_value": "0",
        "shorting_enabled": server.shorting_enabled, "sma": "0", "status": "ACTIVE", "trade_suspended_by_user": False,
        "trading_blocked": False, "transfers_blocked": False, "options_approved_level": 1,
        "options_trading_level": 1,
        **{k: num(max(server.cash, 0.0)) for k in ("buying_power", "non_marginable_buying_power",
                                                 "regt_buying_power", "options_buying_power")},
    }
    if server.legacy_pdt_fields:
        acct.update(pattern_day_trader=False, daytrade_count=0, daytrading_buying_power=acct["buying_power"])
    return acct


def position(server: AlpacaServer, symbol: str) -> dict[str, Any]:
    p, price = server.positions[symbol], server.prices.get(symbol, server.positions[symbol]["avg"])
    value, cost = p["qty"] * price, p["qty"] * p["avg"]
    plpc = (value - cost) / cost if cost else 0.0
    values = {"avg_entry_price": num(p["avg"]), "market_value": num(value), "cost_basis": num(cost),
              "unrealized_pl": num(value - cost), "unrealized_plpc": num(plpc),
              "unrealized_intraday_pl": "0", "unrealized_intraday_plpc": "0",
              "current_price": num(price), "lastday_price": num(price), "change_today": "0"}
    held = held_for_sells(server.orders, symbol)
    return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_DNS, symbol)), "symbol": symbol,
            "exchange": "NASDAQ", "asset_class": "us_equity", "qty": num(p["qty"]),
            "side": "long" if p["qty"] > 0 else "short", "qty_available": num(p["qty"] - held),
            **values, "usd": values}


def latest_trades(prices: dict[str, float], symbols: list[str]) -> dict[str, Any]:
    """The latest trade per symbol, shaped as alpaca-py's own fixture
    (data__test_historical_stock_data__test_get_latest_trade.json)."""
    now = ts(datetime.now(UTC))
    return {"trades": {s: {"t": now, "x": "V", "p": prices[s], "s": 100, "c": ["@"], "i": 1, "z": "C"}
                       for s in symbols if s in prices}}


def reaches(o: dict[str, Any], price: float) -> bool:
    """Whether a trade at ``price`` fills this order: market always, a stop once
    touched, a limit at its price or better."""
    if o["type"] == "stop":
        stop = float(o["stop_price"])
        return price <= stop if o["side"] == "sell" else price >= stop
    if o["type"] == "limit":
        limit = float(o["limit_price"])
        return price >= limit if o["side"] == "sell" else price <= limit
    return True


def held_for_sells(orders: dict[str, dict[str, Any]], symbol: str) -> float:
    """Shares open sell orders reserve: Alpaca refuses a sell beyond the rest."""
    return sum(float(o["qty"]) - float(o["filled_qty"]) for o in orders.values()
               if o["symbol"] == symbol and o["side"] == "sell" and o["status"] in OPEN_STATUSES)


def wash_trade(orders: dict[str, dict[str, Any]], body: dict[str, Any]) -> bool:
    """Alpaca's wash-trade protection (docs: Trading > User Protection > Preventing Wash
    Trades): an order that could execute against the account's own open order on the
    other side is refused with 403 / code 40310000. Modelled: a market order against
    any open opposite order, and any order against an open opposite market order."""
    opposite = "sell" if body["side"] == "buy" else "buy"
    for o in orders.values():
        if o["symbol"] == body["symbol"] and o["side"] == opposite and o["status"] in OPEN_STATUSES \
                and o["status"] != "pending_cancel" and (body["type"] == "market" or o["type"] == "market"):
            return True
    return False
