"""The built-in simulated market: synthetic intraday bars, deterministic from a seed.

Not a plain random walk. Each session's close follows a slow daily process
with trending regimes; the session opens with an overnight gap; inside the
day, prices move with the U-shaped volatility of a real stock (busy at the
open and the close, quiet at lunch) along a Brownian bridge that ends at the
day's close; volume follows the same U shape and rises with the size of the
move. Early closes come from the NYSE calendar, so a half day is half a day.

A session's bars depend only on (seed, date): replaying a day gives the same
bars, whenever and however often it is asked for.

A watchlist trades together: :func:`watchlist_markets` gives each symbol its own
price level, volatility and seed, and a common market factor (daily shocks and
intraday moves shared by all, weighted by each symbol's beta), so signals on
several symbols can coincide as they do on a real market day.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from app.engine.clock import MarketCalendar, Session
from app.engine.types import Bar

ANCHOR = date(2020, 1, 2)


@dataclass(frozen=True, slots=True)
class SimBar:
    """A bar and the prices it went through (for a live, tick-by-tick replay)."""

    bar: Bar
    ticks: tuple[float, ...]  # ticks[0] is the open; the close follows the last


class MarketFactor:
    """What moves every symbol of the simulated market at once: a daily shock and an intraday
    path per session, deterministic from (seed, date)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def daily_shock(self, day: date) -> float:
        return float(np.random.default_rng([self.seed, 1, day.toordinal()]).standard_t(4))

    def intraday_steps(self, day: date, n: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 2, day.toordinal()]).standard_normal(n)


class SimulatedMarket:
    def __init__(self, symbol: str, seed: int, calendar: MarketCalendar, bar_minutes: int = 5,
                 ticks_per_bar: int = 10, base_price: float = 25.0, daily_vol: float = 0.032,
                 factor: MarketFactor | None = None, beta: float = 0.0) -> None:
        """``factor`` and ``beta`` (0..1) tie this symbol to a common market; with none it
        moves on its own alone."""
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), not {beta}")
        self.factor = factor if beta > 0 else None
        self.beta = beta
        self._own = math.sqrt(1.0 - beta * beta)
        self.symbol = symbol
        self.seed = seed
        self.calendar = calendar
        self.bar_minutes = bar_minutes
        self.ticks_per_bar = ticks_per_bar
        self.base_price = base_price
        self.daily_vol = daily_vol
        self._closes: dict[date, float] = {}
        self._last_day = ANCHOR - timedelta(days=1)
        self._last_close = base_price
        self._drift = 0.0
        self._regime_left = 0
        self._daily_rng = np.random.default_rng([seed, 0])

    # ---------------------------------------------------------- daily path
    def close_on(self, day: date) -> float:
        """The simulated closing price of ``day`` (or of the last session before it)."""
        while self._last_day < day:
            self._last_day += timedelta(days=1)
            if self.calendar.session(self._last_day) is None:
                continue
            if self._regime_left <= 0:  # a new trend regime every few weeks
                self._drift = float(self._daily_rng.choice([-0.006, -0.002, 0.0, 0.003, 0.007]))
                self._regime_left = int(self._daily_rng.integers(8, 30))
            self._regime_left -= 1
            z = float(self._daily_rng.standard_t(4))
            if self.factor is not None:
                z = self.beta * self.factor.daily_shock(self._last_day) + self._own * z
            shock = z * self.daily_vol / math.sqrt(2)
            # gently pulled back towards the base so the demo never drifts to pennies
            pull = -0.01 * math.log(self._last_close / self.base_price)
            self._last_close *= math.exp(self._drift + pull + shock)
            self._closes[self._last_day] = self._last_close
        if day in self._closes:
            return self._closes[day]
        earlier = [d for d in self._closes if d <= day]
        return self._closes[max(earlier)] if earlier else self.base_price

    # -------------------------------------------------------- one session
    def session_bars(self, session: Session) -> list[SimBar]:
        minutes = int((session.close - session.open).total_seconds() // 60)
        n_bars = minutes // self.bar_minutes
        t = self.ticks_per_bar
        rng = np.random.default_rng([self.seed, session.day.toordinal()])
        prev_close = self.close_on(session.day - timedelta(days=1))
        target_close = self.close_on(session.day)
        gap = float(rng.normal(0.0, 0.012))
        open_price = prev_close * math.exp(gap)

        n = n_bars * t
        u = (np.arange(n) + 0.5) / n
        sigma = 1.0 + 2.2 * (2 * u - 1) ** 2  # U-shaped intraday volatility
        sigma *= self.daily_vol / math.sqrt(float((sigma**2).sum()))
        z = rng.standard_normal(n)
        if self.factor is not None:
            z = self.beta * self.factor.intraday_steps(session.day, n) + self._own * z
        steps = z * sigma
        walk = np.concatenate([[0.0], np.cumsum(steps)])
        var = np.concatenate([[0.0], np.cumsum(sigma**2)])
        end = math.log(target_close / open_price)
        path = open_price * np.exp(walk - var / var[-1] * (walk[-1] - end))

        base_volume = 600_000.0 * (open_price / 25.0) ** -0.5
        bars: list[SimBar] = []
        for k in range(n_bars):
            seg = path[k * t : (k + 1) * t + 1]
            o, c = float(seg[0]), float(seg[-1])
            wick = abs(float(rng.normal(0, 0.0006)))
            h = float(seg.max()) * (1 + wick)
            lo = float(seg.min()) * (1 - abs(float(rng.normal(0, 0.0006))))
            x = (k + 0.5) / n_bars
            shape = 0.55 + 1.6 * (2 * x - 1) ** 2 + (1.2 if k == 0 else 0.0)
            move = abs(math.log(c / o)) / (float(sigma[k * t]) * math.sqrt(t) + 1e-12)
            vol = base_volume * shape * (0.7 + 0.3 * move) * math.exp(float(rng.normal(0, 0.25)))
            start = session.open + timedelta(minutes=k * self.bar_minutes)
            bar = Bar(self.symbol, start, round(o, 4), round(h, 4), round(lo, 4), round(c, 4),
                      float(int(vol)))
            bars.append(SimBar(bar, tuple(round(float(p), 4) for p in seg[:-1])))
        return bars

    def history(self, sessions: list[Session]) -> list[Bar]:
        return [sb.bar for s in sessions for sb in self.session_bars(s)]


def watchlist_markets(symbols: tuple[str, ...], seed: int, calendar: MarketCalendar,
                      bar_minutes: int = 5, alone: frozenset[str] | None = None) -> list[SimulatedMarket]:
    """One simulated market per symbol. Several share a market factor, each with a price
    level, volatility, beta and seed drawn from its name; a symbol in ``alone`` keeps the
    one-symbol demo's own market (its level near $25, no factor), as it first had it, so
    its prices go on unchanged when others join or leave the watchlist (default: the
    symbol of a one-symbol watchlist)."""
    alone = frozenset(symbols[:1]) if alone is None and len(symbols) == 1 else alone or frozenset()
    markets: list[SimulatedMarket] = []
    rewatch(markets, symbols, seed, calendar, bar_minutes, alone)
    return markets


def market_for(symbol: str, seed: int, calendar: MarketCalendar, bar_minutes: int,
               factor: MarketFactor) -> SimulatedMarket:
    """``symbol``'s market among others (its level, volatility, beta and seed from its name)."""
    h = zlib.crc32(symbol.encode())
    rng = np.random.default_rng([h, 7])
    base = float(math.exp(rng.uniform(math.log(8.0), math.log(400.0))))
    vol = float(rng.uniform(0.018, 0.045))
    beta = float(rng.uniform(0.45, 0.85))
    return SimulatedMarket(symbol, seed + h % 100_003, calendar, bar_minutes, base_price=base,
                           daily_vol=vol, factor=factor, beta=beta)


def rewatch(markets: list[SimulatedMarket], symbols: tuple[str, ...], seed: int,
            calendar: MarketCalendar, bar_minutes: int,
            alone: frozenset[str] = frozenset()) -> list[SimulatedMarket]:
    """The markets for a changed watchlist, in place: a symbol that stays keeps its own market
    (its prices go on as they were), a new one joins the common factor (or, in ``alone``, gets
    the one-symbol market it had before). Returns the new ones."""
    factor = next((m.factor for m in markets if m.factor is not None), None) or MarketFactor(seed)
    kept = {m.symbol: m for m in markets if m.symbol in symbols}
    added = [SimulatedMarket(s, seed, calendar, bar_minutes) if s in alone
             else market_for(s, seed, calendar, bar_minutes, factor) for s in symbols if s not in kept]
    fresh = {m.symbol: m for m in added}
    markets[:] = [kept.get(s) or fresh[s] for s in symbols]
    return added
