"""Where bars come from: one small port and its adapters.

The engine asks a :class:`MarketDataSource` for a canonical frame and does
not care whether it came from Alpaca, Yahoo, the local cache or the built-in
simulated market. Network libraries are imported inside methods, so merely
importing the engine never pulls in yfinance or alpaca-py (or touches the
network). API keys stay :class:`~app.engine.secrets.Secret` until the one
line that builds the Alpaca client.
"""

from __future__ import annotations

import abc
import math
import socket
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import pandas as pd
from loguru import logger

from app.engine.clock import NY, Clock, MarketCalendar, WallClock
from app.engine.data.frame import (
    ADJ_CLOSE,
    INDEX_NAME,
    OHLCV,
    DataError,
    bars_to_frame,
    check_timeframe,
    empty_frame,
    make_frame,
    normalize_frame,
)
from app.engine.logs import register_secret
from app.engine.secrets import ApiKeys
from app.engine.simmarket import SimulatedMarket
from app.engine.storage import BarRepository, Storage

# How far back Yahoo serves each intraday interval (days before "now").
YF_WINDOW_DAYS: dict[str, int] = {"1m": 7, "5m": 60, "15m": 60, "1h": 730}
YF_INTERVAL: dict[str, str] = {"1m": "1m", "5m": "5m", "15m": "15m", "1h": "60m", "1d": "1d"}
# each of the app's timeframes in Alpaca's words: (amount, TimeFrameUnit member name)
ALPACA_TIMEFRAME: dict[str, tuple[int, str]] = {"1m": (1, "Minute"), "5m": (5, "Minute"), "15m": (15, "Minute"),
                                                "1h": (1, "Hour"), "1d": (1, "Day")}


class MarketDataSource(abc.ABC):
    """Historical bars for one symbol and timeframe, ``start`` inclusive, ``end`` exclusive."""

    name: str = "source"

    @abc.abstractmethod
    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        """A canonical OHLCV frame (see :mod:`app.engine.data.frame`), possibly empty."""

    def latest_price(self, symbol: str) -> float | None:
        """The latest trade's price, for stop checks between bars; None where the source has none."""
        return None

    def fetch_many(self, symbols: Sequence[str], timeframe: str, start: datetime,
                   end: datetime) -> dict[str, pd.DataFrame]:
        """Every symbol's bars (a watchlist); sources that can serve several in one request do."""
        return {s: self.fetch(s, timeframe, start, end) for s in symbols}

    def latest_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        """The latest trade of each symbol that has one."""
        out = {s: self.latest_price(s) for s in symbols}
        return {s: p for s, p in out.items() if p is not None}


def _check_range(start: datetime, end: datetime) -> None:
    if start.tzinfo is None or end.tzinfo is None:
        raise DataError("start and end must be timezone-aware")
    if start >= end:
        raise DataError(f"start {start:%Y-%m-%d %H:%M} is not before end {end:%Y-%m-%d %H:%M}")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


# ---------------------------------------------------------------- yfinance
class YFinanceSource(MarketDataSource):
    """Yahoo Finance through yfinance: free, delayed, and short intraday history."""

    name = "yfinance"

    def __init__(self, clock: Clock | None = None, sleep: Callable[[float], None] = time.sleep,
                 retries: int = 4, backoff_s: float = 2.0) -> None:
        self._clock = clock or WallClock()
        self._sleep = sleep
        self._retries = retries
        self._backoff = backoff_s

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        check_timeframe(timeframe)
        _check_range(start, end)
        days = YF_WINDOW_DAYS.get(timeframe)
        if days is not None:
            earliest = self._clock.now() - timedelta(days=days)
            if start < earliest:
                raise DataError(
                    f"yfinance keeps only about {days} days of {timeframe} bars (nothing before "
                    f"{earliest:%Y-%m-%d}); pick a later start, import a CSV or use Alpaca")
        raw = self._download_with_retries(symbol=symbol, start=start, end=end,
                                          interval=YF_INTERVAL[timeframe])
        return yfinance_to_frame(raw, symbol)

    def _download_with_retries(self, **kwargs: Any) -> pd.DataFrame:
        from yfinance.exceptions import YFRateLimitError

        delay = self._backoff
        for attempt in range(self._retries + 1):
            try:
                return self._download(**kwargs)
            except YFRateLimitError:
                if attempt == self._retries:
                    raise DataError("yfinance is rate-limiting this computer; wait a few minutes "
                                    "and try again") from None
                logger.warning("yfinance rate limit; retrying in {:.0f} s", delay)
                self._sleep(delay)
                delay *= 2
            except DataError:
                raise
            except Exception as exc:  # noqa: BLE001 - any library failure becomes one line
                if _looks_offline(exc):
                    raise DataError("cannot reach Yahoo Finance (no internet connection?)") from None
                raise DataError(f"yfinance failed for {kwargs.get('symbol')}: {_one_line(exc)}") from None
        raise AssertionError("unreachable")

    def _download(self, **kwargs: Any) -> pd.DataFrame:
        """The one network call (tests override it).

        ``Ticker.history`` rather than ``yf.download``: download() swallows
        every error, rate limits included, into an empty frame, which would
        make retrying impossible. Either shape is accepted downstream.
        """
        import logging

        import yfinance as yf

        # yfinance logs every retry through the stdlib's last-resort stderr handler;
        # the failure reaches the user once, as a DataError
        log = logging.getLogger("yfinance")
        if not log.handlers:
            log.addHandler(logging.NullHandler())
        return yf.Ticker(kwargs["symbol"]).history(
            start=kwargs["start"], end=kwargs["end"], interval=kwargs["interval"],
            prepost=False, auto_adjust=True, actions=False)


def _looks_offline(exc: BaseException) -> bool:
    name = type(exc).__name__
    text = str(exc)
    return (isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror))
            or any(k in name for k in ("Connection", "DNS", "Timeout"))
            or "Could not resolve host" in text or "curl: (" in text)


def yfinance_to_frame(raw: pd.DataFrame | None, symbol: str) -> pd.DataFrame:
    """yfinance's frame (flat or MultiIndex ``(Price, Ticker)`` columns) -> canonical."""
    if raw is None or raw.empty:
        return empty_frame()
    df = raw
    if isinstance(df.columns, pd.MultiIndex):
        price_level = next((i for i in range(df.columns.nlevels)
                            if {"close", "open"} <= {str(v).lower() for v in df.columns.levels[i]}), 0)
        other = [i for i in range(df.columns.nlevels) if i != price_level]
        if other:
            tickers = df.columns.get_level_values(other[0])
            wanted = [t for t in dict.fromkeys(tickers) if str(t).upper() == symbol.upper()]
            if wanted:
                df = df.xs(wanted[0], axis=1, level=other[0])
            elif len(set(tickers)) == 1:
                df = df.droplevel(other[0], axis=1)
            else:
                raise DataError(f"yfinance returned no {symbol} columns")
    df = df.rename(columns=lambda c: str(c).strip().lower().replace(" ", "_"))
    df = df.rename(columns={"adjclose": ADJ_CLOSE})
    missing = [c for c in OHLCV if c not in df.columns]
    if missing:
        raise DataError(f"yfinance frame lacks {', '.join(missing)}")
    idx = pd.DatetimeIndex(df.index)
    idx = idx.tz_localize(NY) if idx.tz is None else idx  # naive daily dates are NY dates
    df = df.set_axis(idx.tz_convert("UTC"), axis=0)
    df = df.dropna(subset=["open", "high", "low", "close"], how="all")
    out = normalize_frame(df)
    out.index.name = INDEX_NAME
    return out


# ---------------------------------------------------------------- Alpaca
class AlpacaDataSource(MarketDataSource):
    """Alpaca's historical bars via alpaca-py (IEX feed by default; SIP needs a plan)."""

    name = "alpaca"

    def __init__(self, keys: ApiKeys, feed: str = "iex", url_override: str | None = None,
                 adjustment: str = "split") -> None:
        if not keys.complete:
            raise DataError("Alpaca market data needs an API key id and secret key")
        if feed not in ("iex", "sip"):
            raise DataError(f"unknown Alpaca feed {feed!r} (use iex or sip)")
        self._keys = keys
        self.feed = feed
        self._url = url_override
        self._adjustment = adjustment
        self._client: Any = None

    def _get_client(self) -> Any:
        if self._client is None:
            from alpaca.data.historical.stock import StockHistoricalDataClient

            register_secret(self._keys.key_id.reveal())  # masked if a library ever logs it
            register_secret(self._keys.secret_key.reveal())
            self._client = StockHistoricalDataClient(
                api_key=self._keys.key_id.reveal(), secret_key=self._keys.secret_key.reveal(),
                url_override=self._url)
        return self._client

    def _scrub(self, text: str) -> str:
        """The keys out of an error text: a gateway may echo the request's headers."""
        for secret in (self._keys.key_id, self._keys.secret_key):
            if secret.reveal():
                text = text.replace(secret.reveal(), "••••")
        return text

    def latest_price(self, symbol: str) -> float | None:
        """Alpaca's latest trade (GET /v2/stocks/trades/latest on the chosen feed)."""

        return self.latest_prices([symbol]).get(symbol)

    def latest_prices(self, symbols: Sequence[str]) -> dict[str, float]:
        """Every symbol's latest trade in one request (the endpoint takes a list)."""
        from alpaca.data.enums import DataFeed
        from alpaca.data.requests import StockLatestTradeRequest

        request = StockLatestTradeRequest(symbol_or_symbols=list(symbols), feed=DataFeed(self.feed))
        trades = self._call("latest-trade", lambda: self._get_client().get_stock_latest_trade(request))
        out = {}
        for symbol in symbols:
            trade = trades.get(symbol)
            price = float(trade.price) if trade is not None else float("nan")
            if math.isfinite(price) and price > 0:
                out[symbol] = price
        return out

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        """One market-data request; a refusal or an unreachable Alpaca is one DataError line."""
        import requests
        from alpaca.common.exceptions import APIError

        try:
            return fn()
        except APIError as exc:
            raise DataError(self._scrub(f"Alpaca refused the {what} request ({exc.status_code}): "
                                        f"{_api_message(exc)}")) from None
        except requests.RequestException as exc:
            raise DataError(f"cannot reach Alpaca market data: {type(exc).__name__}") from None

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        return self.fetch_many([symbol], timeframe, start, end)[symbol]

    def fetch_many(self, symbols: Sequence[str], timeframe: str, start: datetime,
                   end: datetime) -> dict[str, pd.DataFrame]:
        """Every symbol's bars in one request (the bars endpoint takes a list; alpaca-py follows
        ``next_page_token`` across pages of all of them)."""
        check_timeframe(timeframe)
        _check_range(start, end)
        from alpaca.data.enums import Adjustment, DataFeed
        from alpaca.data.requests import StockBarsRequest

        request = StockBarsRequest(
            symbol_or_symbols=list(symbols), timeframe=_alpaca_timeframe(timeframe), start=start,
            end=end, limit=None,  # no limit: alpaca-py follows next_page_token to the end
            feed=DataFeed(self.feed), adjustment=Adjustment(self._adjustment))
        barset = self._call("bars", lambda: self._get_client().get_stock_bars(request))
        out = {}
        for symbol in symbols:
            bars = barset.data.get(symbol) or barset.data.get(symbol.upper()) or []
            out[symbol] = empty_frame() if not bars else normalize_frame(make_frame(
                [b.timestamp for b in bars], [b.open for b in bars], [b.high for b in bars],
                [b.low for b in bars], [b.close for b in bars], [b.volume for b in bars]))
        return out


def _alpaca_timeframe(timeframe: str) -> Any:
    from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

    amount, unit = ALPACA_TIMEFRAME[timeframe]
    return TimeFrame(amount, TimeFrameUnit[unit])


def _api_message(exc: Exception) -> str:
    try:
        return str(exc.message)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - body was not JSON
        return _one_line(exc)


# ---------------------------------------------------------------- local
class CacheSource(MarketDataSource):
    """Bars already in the local database: works offline, knows only what was stored."""

    name = "cache"

    def __init__(self, storage: Storage) -> None:
        self.repo = BarRepository(storage)

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        check_timeframe(timeframe)
        return self.repo.load_frame(symbol, timeframe, start, end)

    def has_data(self, symbol: str | None = None, timeframe: str | None = None) -> bool:
        return any((symbol is None or s == symbol) and (timeframe is None or tf == timeframe)
                   for s, tf, _ in self.repo.series())


class SimulatedSource(MarketDataSource):
    """The built-in synthetic market, for when no real data can be had."""

    name = "simulated"

    def __init__(self, calendar: MarketCalendar | None = None, seed: int = 7) -> None:
        self._calendar = calendar
        self._seed = seed
        self._markets: dict[tuple[str, int], Any] = {}

    def fetch(self, symbol: str, timeframe: str, start: datetime, end: datetime) -> pd.DataFrame:
        step = check_timeframe(timeframe)
        _check_range(start, end)
        cal = self._calendar or MarketCalendar()
        self._calendar = cal
        minutes = 30 if step >= 86400 else step // 60
        key = (symbol, minutes)
        if key not in self._markets:
            self._markets[key] = SimulatedMarket(symbol, self._seed, cal, minutes)
        market = self._markets[key]
        day, last = start.astimezone(NY).date(), end.astimezone(NY).date()
        sessions = []
        while day <= last:
            s = cal.session(day)
            if s is not None:
                sessions.append(s)
            day += timedelta(days=1)
        frame = bars_to_frame(market.history(sessions))
        if step >= 86400 and len(frame):
            days = frame.index.tz_convert(NY).normalize()
            frame = frame.groupby(days).agg({"open": "first", "high": "max", "low": "min",
                                             "close": "last", "volume": "sum"})
            frame = normalize_frame(frame)
        mask = (frame.index >= pd.Timestamp(start)) & (frame.index < pd.Timestamp(end))
        return frame[mask]


# ---------------------------------------------------------------- choosing
SOURCE_CHOICES = ("auto", "alpaca", "yfinance", "cache", "simulated")


def choose_source(preference: str, keys: ApiKeys | None, cache: CacheSource | None,
                  probe_yfinance: Callable[[], bool], *, feed: str = "iex",
                  alpaca_url: str | None = None, clock: Clock | None = None,
                  calendar: MarketCalendar | None = None) -> tuple[MarketDataSource, str]:
    """The source to use and a name for the status bar.

    ``auto`` prefers the best data the user can get: Alpaca when keys are
    configured, else Yahoo when it answers, else whatever is cached, else the
    simulated market so the app still runs.
    """
    if preference not in SOURCE_CHOICES:
        raise DataError(f"unknown data source {preference!r} (use {', '.join(SOURCE_CHOICES)})")
    has_keys = keys is not None and keys.complete
    if preference == "alpaca" or (preference == "auto" and has_keys):
        if not has_keys:
            raise DataError("Alpaca data needs API keys (APCA_API_KEY_ID and APCA_API_SECRET_KEY)")
        assert keys is not None
        return AlpacaDataSource(keys, feed, alpaca_url), f"Alpaca ({feed.upper()} feed)"
    if preference == "yfinance" or (preference == "auto" and probe_yfinance()):
        return YFinanceSource(clock), "Yahoo Finance (yfinance, delayed)"
    if preference == "cache" or (preference == "auto" and cache is not None and cache.has_data()):
        if cache is None:
            raise DataError("no local cache is open")
        return cache, "local cache (offline)"
    return SimulatedSource(calendar), "simulated market"


def yfinance_reachable(timeout_s: float = 3.0) -> bool:
    """Whether Yahoo's API host answers a TCP connect (used by ``auto`` only)."""
    try:
        with socket.create_connection(("query1.finance.yahoo.com", 443), timeout=timeout_s):
            return True
    except OSError:
        return False
