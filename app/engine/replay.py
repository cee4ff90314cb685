"""Plays a market through the engine on a simulated clock, one price at a time.

Used by the demo (synthetic bars), by replays of history (CSV bars) and by
the headless runner. Each ``step()`` moves the clock to the next price: the
simulated broker sees it first (so orders from the last bar close fill at
this bar's open), then the bot re-prices positions and checks its stops; at
a bar's end the bot runs its trading cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import groupby

from loguru import logger

from app.engine.bot import TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import MarketCalendar, Session, SimClock
from app.engine.events import BarEvent, StatusEvent
from app.engine.simmarket import SimBar, SimulatedMarket
from app.engine.types import NY, Bar

SessionFeed = Callable[[datetime], tuple[Session, list[SimBar]] | None]


@dataclass
class _Cursor:
    session: Session
    bars: list[list[SimBar]]  # one group per bar time: every symbol's bar of that time
    bar: int = 0
    tick: int = 0
    finished: bool = False  # the clock has been run to the session's end


class MarketReplay:
    def __init__(self, bot: TradingBot, broker: SimulatedBroker, clock: SimClock, feed: SessionFeed,
                 on_session: Callable[[Session], None] | None = None,
                 on_bar: Callable[[], None] | None = None) -> None:
        self.bot = bot
        self.broker = broker
        self.clock = clock
        self.feed = feed
        self.on_session = on_session
        self.on_bar = on_bar  # after each bar's cycle: the demo saves its clock there
        self._cur: _Cursor | None = None
        self.finished = False
        self.bars_played = 0
        self._reload = False

    def reload(self) -> None:
        """The feed changed (a symbol added to or removed from the watchlist): from the next
        bar on, the session is read again from it. The bar being played finishes first."""
        self._reload = True

    def step(self) -> bool:
        """Advance to the next price; False once the feed has nothing more."""
        if self.finished:
            return False
        if self._reload and (self._cur is None or (self._cur.tick == 0 and self._cur.bar < len(self._cur.bars))):
            self._reload = False
            self._cur = None  # between bars: the rest of the session comes from the feed again
        if self._cur is not None and self._cur.bar >= len(self._cur.bars) and self._finish_session(self._cur):
            return True
        if (self._cur is None or self._cur.bar >= len(self._cur.bars)) and not self._next_session():
            self.finished = True
            return False
        cur = self._cur
        assert cur is not None
        group = cur.bars[cur.bar]
        first = group[0].bar
        n_ticks = max(len(sb.ticks) or 1 for sb in group)
        if cur.tick < n_ticks:
            now = first.time + timedelta(minutes=self.bot.bar_minutes) / n_ticks * cur.tick
            self.clock.set(now)
            prices: dict[str, float] = {}
            for sb in group:
                ticks = sb.ticks or (sb.bar.open,)
                if cur.tick < len(ticks):
                    symbol, price = sb.bar.symbol, ticks[cur.tick]
                    self.broker.on_price(symbol, price, now, sb.bar.volume / len(ticks))  # the tick's volume
                    self.bot.bus.publish(BarEvent(_partial(sb, cur.tick), closed=False))
                    prices[symbol] = price
            self.bot.on_prices(prices)
            cur.tick += 1
            return True
        end = first.time + timedelta(minutes=self.bot.bar_minutes)
        self.clock.set(end)
        for sb in group:
            self.broker.on_price(sb.bar.symbol, sb.bar.close, end)
        self.bot.on_bars_close([sb.bar for sb in group])
        self.bars_played += 1
        if self.on_bar:
            self.on_bar()
        cur.bar += 1
        cur.tick = 0
        return True

    def run(self, max_steps: int | None = None) -> int:
        steps = 0
        while (max_steps is None or steps < max_steps) and self.step():
            steps += 1
        return steps

    def _finish_session(self, cur: _Cursor) -> bool:
        """Bars that stop before the close (a gap in recorded data) do not stop the clock:
        it runs to the end-of-day flatten and to the close, and the engine's timed checks
        run there, so nothing is held overnight because data went missing. False once done."""
        if cur.finished:
            return False
        cur.finished = True
        close = cur.session.close
        cutoff = close - timedelta(minutes=self.bot.settings.flatten_minutes_before_close)
        ran = False
        for when in (cutoff, close):
            if self.clock.now() < when:
                self.clock.set(when)
                self.bot.on_clock()
                ran = True
        return self._fill_stranded(cur) or ran

    def _fill_stranded(self, cur: _Cursor) -> bool:
        """A symbol whose bars stopped before the others' that day still holds: its end-of-day
        sell fills at its last price (see :meth:`SimulatedBroker.fill_stranded`)."""
        if not self.bot.settings.eod_flatten:
            return False
        priced = {sb.bar.symbol for sb in cur.bars[-1]} if cur.bars else set()
        if not self.broker.fill_stranded(priced, self.clock.now()):
            return False
        self.bot.on_clock()
        return True

    def _next_session(self) -> bool:
        found = self.feed(self.clock.now())
        if found is None:
            return False
        session, bars = found
        start = self.clock.now()
        bars = sorted((b for b in bars if b.bar.time >= start), key=lambda b: (b.bar.time, b.bar.symbol))
        if not bars:  # (above: resume mid-session)
            self.clock.set(session.close)
            return self._next_session()
        groups = [list(g) for _, g in groupby(bars, key=lambda b: b.bar.time)]
        self._cur = _Cursor(session, groups)
        if self.on_session:
            self.on_session(session)
        self.clock.set(groups[0][0].bar.time)
        self.bot.bus.publish(StatusEvent(self.bot.status()))
        logger.info("Session {} ({} bars{})", session.day, len(groups),
                    ", early close" if session.is_early_close else "")
        return True


def _partial(sb: SimBar, upto: int) -> Bar:
    seen = sb.ticks[: upto + 1]
    b = sb.bar
    volume = b.volume * (upto + 1) / max(len(sb.ticks), 1)
    return Bar(b.symbol, b.time, b.open, max(max(seen), b.open), min(min(seen), b.open), seen[-1], volume)


def simulated_feed(markets: list[SimulatedMarket], calendar: MarketCalendar) -> SessionFeed:
    """Sessions of the simulated market (every symbol of the watchlist), one after another, forever."""

    def feed(after: datetime) -> tuple[Session, list[SimBar]] | None:
        session = calendar.next_session(after)
        return session, [sb for m in markets for sb in m.session_bars(session)]

    return feed


def replay_feed(bars: list[Bar], calendar: MarketCalendar,
                bar_minutes: int) -> tuple[SessionFeed, list[Bar], datetime]:
    """Sessions of recorded bars. The first session warms the model up (when
    there is more than one); each later bar is replayed as open, the extreme
    nearer the open, the other extreme, then its close."""
    by_day: dict[date, list[Bar]] = {}
    for b in sorted(bars, key=lambda b: b.time):
        by_day.setdefault(b.time.astimezone(NY).date(), []).append(b)
    days = sorted(by_day)
    if not days:
        raise ValueError("nothing to replay: no bars")
    history = by_day[days[0]] if len(days) > 1 else []
    play = [d for d in days if by_day[d] is not history]

    def ticks(b: Bar) -> tuple[float, ...]:
        first, second = (b.low, b.high) if b.close >= b.open else (b.high, b.low)
        return (b.open, first, second, b.close)

    def feed(after: datetime) -> tuple[Session, list[SimBar]] | None:
        for d in play:
            day_bars = by_day[d]
            last_end = day_bars[-1].time + timedelta(minutes=bar_minutes)
            if last_end <= after:
                continue
            session = calendar.session(d) or Session(d, day_bars[0].time, last_end)
            return session, [SimBar(b, ticks(b)) for b in day_bars]
        return None

    start = by_day[play[0]][0].time
    return feed, history, start
