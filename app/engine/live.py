"""Live (paper) trading: poll the data source on the wall clock, feed the bot.

Each ``step()`` (every ``stop_check_seconds``, 30 s by default) asks the
source for bars since the last one seen, runs the trading cycle once for
every bar that has closed, then re-prices positions and checks stops with
the newest price. The broker keeps its own stop orders, so a position stays
protected even when this process or the data feed stalls.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from loguru import logger

from app.engine.bot import TradingBot
from app.engine.clock import Clock
from app.engine.events import AlertEvent
from app.engine.types import Bar

if TYPE_CHECKING:
    from app.engine.data.sources import MarketDataSource


class LiveSession:
    def __init__(self, bot: TradingBot, source: MarketDataSource, clock: Clock, symbol: str, timeframe: str,
                 last_end: datetime | None) -> None:
        self.bot = bot
        self.source = source
        self.clock = clock
        self.symbol = symbol
        self.timeframe = timeframe
        self.last_end = last_end
        self.bars_played = 0
        self.finished = False
        self._failing = False

    def step(self) -> bool:
        """One stop check: the bars that closed since the last one go through the trading
        cycle, then the clock's checks run at the latest trade price, new bar or not (a 15m
        or 1h bar must not hold the end-of-day flatten or a stop until it completes)."""
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
            self._check_at(self._latest(), None)
            return True
        self._failing = False
        for b in bars:
            if (self.last_end is None or b.time >= self.last_end) and b.time + tf <= now:
                self.bot.on_bar_close(b)
                self.last_end = b.time + tf
                self.bars_played += 1
        self._check_at(self._latest(), bars[-1].close if bars else None)
        return True

    def _latest(self) -> float | None:
        try:
            price = self.source.latest_price(self.symbol)
        except Exception as exc:  # noqa: BLE001 - the check goes on with the last price known
            logger.debug("No latest trade for {}: {}", self.symbol, exc)
            price = None
        return price or self.bot.broker.last_price(self.symbol)

    def _check_at(self, latest: float | None, last_close: float | None) -> None:
        price = latest or last_close
        if price:
            self.bot.on_price(self.symbol, price)
        else:
            self.bot.on_clock()

    def _fetch(self, start: datetime, end: datetime) -> list[Bar]:
        # deferred: pandas loads for paper and live trading only; the demo imports this module too
        from app.engine.data.frame import frame_to_bars

        frame = self.source.fetch(self.symbol, self.timeframe, start, end)
        return frame_to_bars(frame, self.symbol)
