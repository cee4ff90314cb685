"""The shared loopback Alpaca server (``alpaca_server.py``) taught the market-data
route, ``GET /v2/stocks/bars``, served in pages linked by ``next_page_token``
as Alpaca does, so alpaca-py's real ``StockHistoricalDataClient`` can be tested."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alpaca_server import AlpacaServer


def bar_json(t: str, o: float, h: float, lo: float, c: float, v: int) -> dict[str, Any]:
    """One bar in the API's shape (as in alpaca-py's own test fixtures)."""
    return {"t": t, "o": o, "h": h, "l": lo, "c": c, "v": v, "n": 1000, "vw": (h + lo) / 2}


class BarsServer(AlpacaServer):
    """Serves ``pages[i]`` for page token ``page-i`` (no token: page 0) and records queries."""

    def __init__(self) -> None:
        super().__init__()
        self.pages: list[dict[str, Any]] = []
        self.bar_queries: list[dict[str, str]] = []

    def route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        if method == "GET" and path == "/v2/stocks/bars":
            with self.lock:
                self.bar_queries.append(dict(query))
                token = query.get("page_token")
                index = int(token.rsplit("-", 1)[1]) if token else 0
                return 200, self.pages[index]
        return super().route(method, path, query, body)


def two_pages(symbol: str = "PLTR") -> list[dict[str, Any]]:
    """Three 5-minute bars split over two pages."""
    first = [bar_json("2025-12-23T14:30:00Z", 190.0, 191.0, 189.5, 190.5, 120000),
             bar_json("2025-12-23T14:35:00Z", 190.5, 192.0, 190.1, 191.8, 90000)]
    second = [bar_json("2025-12-23T14:40:00Z", 191.8, 192.2, 191.0, 191.2, 70000)]
    return [{"bars": {symbol: first}, "symbol": symbol, "next_page_token": "page-1"},
            {"bars": {symbol: second}, "symbol": symbol, "next_page_token": None}]


@pytest.fixture
def bars_server() -> Iterator[BarsServer]:
    server = BarsServer().start()
    try:
        yield server
    finally:
        server.stop()
