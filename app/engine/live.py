"""Live (paper) trading: poll the data source on the wall clock, feed the bot.

Each ``step()`` (every ``stop_check_seconds``, 30 s by default) asks the
source for bars since the last one seen, runs the trading cycle once for
every bar that has closed, then re-prices positions and checks stops with
the newest price. The broker keeps its own stop orders, so a position stays
protected even when this process or the data feed stalls.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import groupby
from typing import TYPE_CHECKING

from loguru import logger

from app.engine.bot import TradingBot
from app.engine.clock import Clock
from app.engine.events import AlertEvent
from app.engine.types import Bar, timeframe_of

if TYPE_CHECKING:
    from app.engine.data.sources import MarketDataSource


class LiveSession:
    def __init__(self, bot: TradingBot, source: MarketDataSource, clock: Clock, symbols: str | Sequence[str],
                 timeframe: str, last_end: datetime | None) -> None:
        """``symbols``: the watchlist (one symbol, or several: their bars come in one request)."""
        self.bot = bot
        self.source = source
        self.clock = clock
        self.symbols = (symbols,) if isinstance(symbols, str) else tuple(symbols)
        self.timeframe = timeframe
        self.last_end = last_end
        self.bars_played = 0  # bar times played (each closes every symbol's bar of that time)
        self.finished = False
        self._failing = False

    def step(self) -> bool:
        """One stop check: the bar times that closed since the last one go through the trading
        cycle (every symbol's bar of a time together, ranked), then the clock's checks run at
        the latest trade prices, new bar or not (a 15m or 1h bar must not hold the end-of-day
        flatten or a stop until it completes)."""
        now = self.clock.now()
        tf = timedelta(minutes=self.bot.bar_minutes)
        start = self.last_end or now - timedelta(days=5)
        try:
            bars = self._fetch(start, now)
        except Exception as exc:  # noqa: BLE001 - network, rate limits, bad data: keep the exits working
            if not self._failing:
                logger.warning("Market data unavailable: {}", exc)
                self.bot.bus.publish(AlertEvent("warning", f"market data unavailable: {exc}"))
            self._failing = True
            self._check_at({})
            return True
        self._failing = False
        closed = [b for b in bars if (self.last_end is None or b.time >= self.last_end) and b.time + tf <= now]
        for time, group in groupby(sorted(closed, key=lambda b: (b.time, b.symbol)), key=lambda b: b.time):
            self.bot.on_bars_close(list(group))
            self.last_end = time + tf
            self.bars_played += 1
        self._check_at({b.symbol: b.close for b in bars})
        return True

    def set_symbols(self, symbols: Sequence[str]) -> list[Bar]:
        """A changed watchlist: the next checks fetch these. A symbol added is warmed up on its
        recent bars now (returned), so its model speaks from its first new bar."""
        added = [s for s in symbols if s not in self.symbols]
        self.symbols = tuple(symbols)
        if not added:
            return []
        try:
            history = recent_bars(self.source, added, self.timeframe, self.last_end or self.clock.now())
        except Exception as exc:  # noqa: BLE001 - it warms up on live bars instead, said once
            logger.warning("No recent bars for {}: {}", ", ".join(added), exc)
            self.bot.bus.publish(AlertEvent("warning", f"no recent bars for {', '.join(added)}: {exc}"))
            return []
        self.bot.warm_up(history)
        return history

    def _latest(self) -> dict[str, float]:
        """The latest trade of every symbol watched or held, in one request where the source can."""
        wanted = list(dict.fromkeys([*self.symbols, *(p.symbol for p in self.bot.records.positions())]))
        try:
            prices = self.source.latest_prices(wanted)
        except Exception as exc:  # noqa: BLE001 - the check goes on with the last prices known
            logger.debug("No latest trades for {}: {}", ", ".join(wanted), exc)
            prices = {}
        for symbol in wanted:
            if symbol not in prices:
                price = self.bot.broker.last_price(symbol)
                if price:
                    prices[symbol] = price
        return prices

    def _check_at(self, last_closes: dict[str, float]) -> None:
        prices = {**last_closes, **self._latest()}
        if prices:
            self.bot.on_prices(prices)
        else:
            self.bot.on_clock()

    def _fetch(self, start: datetime, end: datetime) -> list[Bar]:
        # deferred: pandas loads for paper and live trading only; the demo imports this module too
        from app.engine.data.frame import frame_to_bars

        frames = self.source.fetch_many(self.symbols, self.timeframe, start, end)
        return [b for symbol, frame in frames.items() for b in frame_to_bars(frame, symbol)]


def recent_bars(source: MarketDataSource, symbols: Sequence[str], timeframe: str, until: datetime) -> list[Bar]:
    """The last five days of ``symbols``' bars closed by ``until``, oldest first, in one
    request: what a model warms up on (at start, or for a symbol added while running)."""
    # deferred: pandas loads for paper and live trading only; the demo imports this module too
    from app.engine.data.frame import frame_to_bars

    tf = timeframe_of(timeframe).delta
    frames = source.fetch_many(symbols, timeframe, until - timedelta(days=5), until)
    return sorted((b for sym, frame in frames.items() for b in frame_to_bars(frame, sym) if b.time + tf <= until),
                  key=lambda b: b.time)
