"""Paper trading end to end: the real alpaca-py clients against a loopback
server that serves bars and takes orders, on a simulated wall clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alpaca_server import AlpacaServer

from app.engine.bootstrap import build_live_engine
from app.engine.broker.alpaca import AlpacaBroker
from app.engine.clock import MarketCalendar, SimClock
from app.engine.data.sources import AlpacaDataSource
from app.engine.events import EventBus, PredictionEvent
from app.engine.live_gate import PAPER_FIRST_DAY_KEY
from app.engine.paths import AppPaths
from app.engine.settings import Settings
from app.engine.simmarket import SimulatedMarket
from app.engine.types import Bar, BrokerKind


class LiveBarsServer(AlpacaServer):
    """Serves ``bars`` between the query's start and end, as Alpaca's bars route does."""

    def __init__(self, bars: list[Bar], clock: SimClock) -> None:
        super().__init__(auto_fill=True)
        self.bars, self.clock = bars, clock
        self.bar_requests: list[str] = []  # the symbols each bars request asked for

    def route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
        if method == "GET" and path == "/v2/stocks/bars":
            start = _parse(query["start"])
            end = _parse(query["end"]) if query.get("end") else self.clock.now()
            now = self.clock.now()
            chosen = [b for b in self.bars if start <= b.time < end and b.time + timedelta(minutes=5) <= now]
            self.bar_requests.append(query.get("symbols", ""))
            by_symbol: dict[str, list[dict[str, Any]]] = {}
            for sym in query.get("symbols", "PLTR").split(","):
                mine = [b for b in chosen if b.symbol == sym]
                if mine:
                    self.set_price(sym, mine[-1].close)
                    by_symbol[sym] = [{"t": b.time.strftime("%Y-%m-%dT%H:%M:%SZ"), "o": b.open, "h": b.high,
                                       "l": b.low, "c": b.close, "v": int(b.volume), "n": 100, "vw": b.close}
                                      for b in mine]
            return 200, {"bars": by_symbol, "next_page_token": None}
        return super().route(method, path, query, body)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture
def market() -> tuple[list[Bar], Any]:
    cal = MarketCalendar()
    sessions = cal.previous_sessions(datetime(2025, 6, 14, tzinfo=UTC), 4)
    return SimulatedMarket("PLTR", 5, cal).history(sessions), sessions[-1]


def test_paper_session_trades_through_alpaca_and_records_everything(app_home, market) -> None:  # type: ignore[no-untyped-def]
    bars, last_session = market
    clock = SimClock(last_session.open + timedelta(minutes=30))
    server = LiveBarsServer(bars, clock)
    server.start()
    try:
        keys = server.api_keys()
        broker = AlpacaBroker(keys, clock, kind=BrokerKind.PAPER, url_override=server.url, timeout_s=5)
        source = AlpacaDataSource(keys, url_override=server.url)
        seen: list[PredictionEvent] = []
        bus = EventBus()
        bus.subscribe(lambda e: seen.append(e) if isinstance(e, PredictionEvent) else None)

        ctx = build_live_engine(AppPaths.resolve(str(app_home)),
                                Settings(mode="auto", auto_threshold=0.6, approval_threshold=0.6), bus=bus, clock=clock,
                                broker=broker, source=source, sleep=lambda s: None)
        assert ctx.history, "recent bars warm the model up"
        assert ctx.records.state_get(PAPER_FIRST_DAY_KEY) == clock.now().date().isoformat()
        while clock.now() < last_session.close:
            clock.advance(timedelta(seconds=30))
            ctx.replay.step()
        assert ctx.replay.bars_played >= 70, "every bar of the day reached the trading cycle once"
        assert len({e.time for e in seen}) == len(seen), "no bar was traded twice"
        assert server.created_per_coid, "the rules strategy traded on this day"
        assert any(o.startswith("ait-PLTR-stop-") for o in server.created_per_coid), "entries get broker-side stops"
        assert not server.duplicates(), "no client_order_id was sent twice"
        assert not ctx.bot.records.positions(), "flat by the close"
        ctx.close()
    finally:
        server.stop()


@dataclass
class PaperDesk:
    """Paper trading through the real alpaca-py clients against a loopback server, on a
    simulated clock, with every model call seen."""

    ctx: Any
    server: LiveBarsServer
    clock: SimClock
    sessions: list[Any]
    seen: list[PredictionEvent]


@contextmanager
def paper_desk(app_home: Path, market_symbols: tuple[str, ...], settings: Settings) -> Iterator[PaperDesk]:
    """Three sessions of each of ``market_symbols``' simulated bars, served; half an hour into the last."""
    cal = MarketCalendar()
    sessions = cal.previous_sessions(datetime(2025, 6, 14, tzinfo=UTC), 3)
    bars = sorted((b for k, s in enumerate(market_symbols) for b in SimulatedMarket(s, 5 + k, cal).history(sessions)),
                  key=lambda b: b.time)
    clock = SimClock(sessions[-1].open + timedelta(minutes=30))
    server = LiveBarsServer(bars, clock)
    server.start()
    try:
        keys = server.api_keys()
        broker = AlpacaBroker(keys, clock, kind=BrokerKind.PAPER, url_override=server.url, timeout_s=5)
        seen: list[PredictionEvent] = []
        bus = EventBus()
        bus.subscribe(lambda e: seen.append(e) if isinstance(e, PredictionEvent) else None)
        ctx = build_live_engine(AppPaths.resolve(str(app_home)), settings, bus=bus, clock=clock, broker=broker,
                                source=AlpacaDataSource(keys, url_override=server.url), sleep=lambda s: None)
        try:
            yield PaperDesk(ctx, server, clock, sessions, seen)
        finally:
            ctx.close()
    finally:
        server.stop()


def test_a_watchlist_paper_trades_every_symbol_with_one_bars_request_per_check(app_home) -> None:  # type: ignore[no-untyped-def]
    symbols = ("PLTR", "NVDA", "AMD")
    settings = Settings(mode="auto", auto_threshold=0.6, approval_threshold=0.6, watchlist=symbols,
                        max_exposure_pct=1.0)
    with paper_desk(app_home, symbols, settings) as desk:
        ctx, server, clock, seen = desk.ctx, desk.server, desk.clock, desk.seen
        assert {b.symbol for b in ctx.history} == set(symbols)
        server.bar_requests.clear()
        trades_before = server.requests["GET /v2/stocks/trades/latest"]
        checks = 0
        while clock.now() < desk.sessions[-1].open + timedelta(hours=3):
            clock.advance(timedelta(seconds=30))
            ctx.replay.step()
            checks += 1
        assert server.bar_requests == ["PLTR,NVDA,AMD"] * checks, "one bars request per check, for every symbol"
        assert server.requests["GET /v2/stocks/trades/latest"] - trades_before == checks, "one latest-trades request"
        per_symbol = {s: sorted(e.time for e in seen if e.symbol == s) for s in symbols}
        assert all(len(times) >= 30 and len(set(times)) == len(times) for times in per_symbol.values())
        assert per_symbol["PLTR"] == per_symbol["NVDA"] == per_symbol["AMD"], "each bar time closes every symbol"
        assert not server.duplicates()
