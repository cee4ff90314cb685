"""Data sources: alpaca-py's real client against a loopback server, yfinance through
a subclass of the adapter, the cache, the simulated market, and the choice between them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from alpaca_bars_server import BarsServer, bar_json, two_pages
from alpaca_server import Fault

from app.engine.clock import SimClock
from app.engine.data.cleaning import clean, default_calendar
from app.engine.data.frame import DataError, make_frame
from app.engine.data.sources import (
    AlpacaDataSource,
    CacheSource,
    SimulatedSource,
    YFinanceSource,
    choose_source,
)
from app.engine.secrets import ApiKeys, Secret
from app.engine.storage import BarRepository, Storage

UTC = UTC


# ------------------------------------------------------------------ Alpaca
def test_alpaca_follows_pages_with_the_real_client(bars_server: BarsServer) -> None:
    bars_server.pages = two_pages()
    src = AlpacaDataSource(bars_server.api_keys(), url_override=bars_server.url)
    frame = src.fetch("PLTR", "5m", datetime(2025, 12, 23, 14, 30, tzinfo=UTC),
                      datetime(2025, 12, 23, 15, 0, tzinfo=UTC))
    assert len(frame) == 3  # both pages
    assert frame.index[0] == pd.Timestamp("2025-12-23 14:30", tz="UTC")
    assert frame["close"].tolist() == [190.5, 191.8, 191.2]
    assert frame["volume"].tolist() == [120000, 90000, 70000]
    q1, q2 = bars_server.bar_queries
    assert q1["symbols"] == "PLTR" and q1["timeframe"] == "5Min" and q1["feed"] == "iex"
    assert q1["adjustment"] == "split" and "page_token" not in q1
    assert q2["page_token"] == "page-1"


def test_alpaca_sip_feed_and_hour_and_day_timeframes(bars_server: BarsServer) -> None:
    src = AlpacaDataSource(bars_server.api_keys(), feed="sip", url_override=bars_server.url)
    start, end = datetime(2025, 12, 1, tzinfo=UTC), datetime(2025, 12, 24, tzinfo=UTC)
    for tf, wire in (("1h", "1Hour"), ("1d", "1Day"), ("15m", "15Min"), ("1m", "1Min")):
        bars_server.pages = [{"bars": {}, "next_page_token": None}]
        assert src.fetch("PLTR", tf, start, end).empty
        assert bars_server.bar_queries[-1]["timeframe"] == wire
        assert bars_server.bar_queries[-1]["feed"] == "sip"


def test_alpaca_serves_the_sdk_fixture_shape(bars_server: BarsServer, shared_data: Path) -> None:
    fixture = shared_data / "alpaca" / "fixtures" / "data__test_historical_stock_data__test_get_bars.json"
    page1 = json.loads(fixture.read_text())
    token = page1["next_page_token"]
    page1["next_page_token"] = "page-1"  # our server numbers its pages
    page2 = {"bars": {"AAPL": [bar_json("2022-02-03T05:00:00Z", 174.48, 176.24, 172.12, 172.9,
                                        89418074)]}, "next_page_token": None}
    bars_server.pages = [page1, page2]
    src = AlpacaDataSource(bars_server.api_keys(), url_override=bars_server.url)
    frame = src.fetch("AAPL", "1d", datetime(2022, 2, 1, tzinfo=UTC), datetime(2022, 2, 4, tzinfo=UTC))
    assert token and len(frame) == 3
    assert frame["open"].iloc[0] == 174 and frame["close"].iloc[1] == pytest.approx(175.84)
    ny = frame.index.tz_convert("America/New_York")
    assert ny.strftime("%Y-%m-%d %H:%M").tolist()[0] == "2022-02-01 00:00"


def test_alpaca_errors_become_one_line_without_keys(bars_server: BarsServer) -> None:
    keys = bars_server.api_keys()
    src = AlpacaDataSource(keys, feed="sip", url_override=bars_server.url)
    body = json.dumps({"code": 42210000, "message": "subscription does not permit querying recent SIP data"})
    bars_server.fail_next(Fault.http(403, body=body))
    with pytest.raises(DataError) as err:
        src.fetch("PLTR", "5m", datetime(2025, 12, 23, tzinfo=UTC), datetime(2025, 12, 24, tzinfo=UTC))
    msg = str(err.value)
    assert "403" in msg and "SIP" in msg and "\n" not in msg
    assert keys.key_id.reveal() not in msg and keys.secret_key.reveal() not in msg
    bad = AlpacaDataSource(ApiKeys(Secret("PKWRONGKEY00"), Secret("wrong-secret-000")),
                           url_override=bars_server.url)
    with pytest.raises(DataError, match="401"):
        bad.fetch("PLTR", "5m", datetime(2025, 12, 23, tzinfo=UTC), datetime(2025, 12, 24, tzinfo=UTC))


def test_alpaca_unreachable_and_missing_keys() -> None:
    keys = ApiKeys(Secret("PKLOOPBACK00"), Secret("secret-000000"))
    src = AlpacaDataSource(keys, url_override="http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(DataError, match="cannot reach Alpaca"):
        src.fetch("PLTR", "5m", datetime(2025, 12, 23, tzinfo=UTC), datetime(2025, 12, 24, tzinfo=UTC))
    with pytest.raises(DataError, match="API key"):
        AlpacaDataSource(ApiKeys(Secret(""), Secret("")))


# ---------------------------------------------------------------- yfinance
def yf_download_frame(symbol: str, times: pd.DatetimeIndex) -> pd.DataFrame:
    """What ``yf.download`` returns: columns MultiIndex (Price, Ticker), sorted by price."""
    n = len(times)
    c = 100 + np.arange(n, dtype=float)
    data = {("Close", symbol): c, ("High", symbol): c + 1, ("Low", symbol): c - 1,
            ("Open", symbol): c - 0.5, ("Volume", symbol): np.full(n, 1000, dtype="int64")}
    df = pd.DataFrame(data, index=times)
    df.columns = pd.MultiIndex.from_tuples(df.columns, names=["Price", "Ticker"])
    return df


class FakeYahoo(YFinanceSource):
    def __init__(self, frames: list[Any], now: datetime) -> None:
        self.sleeps: list[float] = []
        super().__init__(SimClock(now), sleep=self.sleeps.append)
        self.frames = frames
        self.calls: list[dict[str, Any]] = []

    def _download(self, **kwargs: Any) -> pd.DataFrame:
        self.calls.append(kwargs)
        item = self.frames.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


NOW = datetime(2026, 1, 10, 21, 0, tzinfo=UTC)


def test_yfinance_multiindex_is_flattened() -> None:
    times = pd.date_range("2026-01-09 14:30", periods=4, freq="5min", tz="UTC", name="Datetime")
    src = FakeYahoo([yf_download_frame("PLTR", times)], NOW)
    frame = src.fetch("PLTR", "5m", NOW - timedelta(days=5), NOW)
    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert frame["close"].tolist() == [100, 101, 102, 103]
    assert frame.index.name == "time" and str(frame.index.tz) == "UTC"
    assert src.calls[0]["interval"] == "5m" and src.calls[0]["symbol"] == "PLTR"


def test_yfinance_daily_new_york_dates_and_flat_columns() -> None:
    days = pd.DatetimeIndex(["2026-01-07", "2026-01-08"], name="Date")  # naive, as download gives
    flat = yf_download_frame("PLTR", days.tz_localize("America/New_York"))
    flat.columns = flat.columns.droplevel(1)  # Ticker.history's flat shape
    src = FakeYahoo([yf_download_frame("PLTR", days), flat], NOW)
    a = src.fetch("PLTR", "1d", NOW - timedelta(days=30), NOW)
    b = src.fetch("PLTR", "1d", NOW - timedelta(days=30), NOW)
    assert a.index.equals(b.index)
    assert a.index[0] == pd.Timestamp("2026-01-07 05:00", tz="UTC")  # New York midnight


def test_yfinance_retries_rate_limits_with_backoff() -> None:
    from yfinance.exceptions import YFRateLimitError

    times = pd.date_range("2026-01-09 14:30", periods=2, freq="5min", tz="UTC")
    src = FakeYahoo([YFRateLimitError(), YFRateLimitError(), yf_download_frame("PLTR", times)], NOW)
    assert len(src.fetch("PLTR", "5m", NOW - timedelta(days=2), NOW)) == 2
    assert src.sleeps == [2.0, 4.0]
    stuck = FakeYahoo([YFRateLimitError() for _ in range(5)], NOW)
    with pytest.raises(DataError, match="rate-limiting"):
        stuck.fetch("PLTR", "5m", NOW - timedelta(days=2), NOW)
    assert stuck.sleeps == [2.0, 4.0, 8.0, 16.0]


def test_yfinance_window_limits_and_failures() -> None:
    src = FakeYahoo([], NOW)
    with pytest.raises(DataError, match="about 60 days of 5m"):
        src.fetch("PLTR", "5m", NOW - timedelta(days=90), NOW)
    with pytest.raises(DataError, match="about 7 days of 1m"):
        src.fetch("PLTR", "1m", NOW - timedelta(days=8), NOW)
    with pytest.raises(DataError, match="730 days"):
        src.fetch("PLTR", "1h", NOW - timedelta(days=800), NOW)
    assert src.calls == []  # refused before touching the network
    broken = FakeYahoo([RuntimeError("Expecting value: line 1 column 1\nmore")], NOW)
    with pytest.raises(DataError, match="yfinance failed for PLTR: Expecting value"):
        broken.fetch("PLTR", "1d", NOW - timedelta(days=800), NOW)
    offline = FakeYahoo([ConnectionError("Failed to perform, curl: (6) Could not resolve host")], NOW)
    with pytest.raises(DataError, match="cannot reach Yahoo Finance"):
        offline.fetch("PLTR", "1d", NOW - timedelta(days=3), NOW)
    empty = FakeYahoo([pd.DataFrame()], NOW)
    assert empty.fetch("PLTR", "1d", NOW - timedelta(days=3), NOW).empty


# ----------------------------------------------------------- local sources
def test_cache_source_reads_what_was_stored(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "t.db")
    src = CacheSource(storage)
    assert not src.has_data()
    times = pd.date_range("2025-12-23 14:30", periods=3, freq="5min", tz="UTC")
    frame = make_frame(times, [1, 2, 3], [2, 3, 4], [0.5, 1, 2], [1.5, 2.5, 3.5], [10, 0, 30])
    BarRepository(storage).upsert_frame("PLTR", "5m", frame, "csv")
    got = src.fetch("PLTR", "5m", times[1].to_pydatetime(), times[-1].to_pydatetime() + timedelta(minutes=5))
    assert got["close"].tolist() == [2.5, 3.5]
    assert src.has_data() and src.has_data("PLTR", "5m") and not src.has_data("AAPL")
    storage.close()


def test_simulated_source_gives_clean_regular_hours_bars() -> None:
    src = SimulatedSource(default_calendar(), seed=3)
    start, end = datetime(2025, 12, 22, tzinfo=UTC), datetime(2025, 12, 27, tzinfo=UTC)
    five = src.fetch("DEMO", "5m", start, end)
    rep = clean(five, "5m").report
    assert rep.half_days == 1 and rep.missing_bars == 0 and rep.extended_hours == 0
    assert len(five) == 3 * 78 + 42
    daily = src.fetch("DEMO", "1d", start, end)
    assert len(daily) == 4
    # the day's open and close are the same whatever bar size the market is asked for
    assert daily["open"].iloc[0] == pytest.approx(five["open"].iloc[0], rel=1e-4)
    assert daily["close"].iloc[0] == pytest.approx(five["close"].iloc[77], rel=1e-4)
    assert daily.index[0] == pd.Timestamp("2025-12-22 05:00", tz="UTC")


# -------------------------------------------------------------- choosing
def test_choose_source_auto_order(tmp_path: Path) -> None:
    keys = ApiKeys(Secret("PKLOOPBACK00"), Secret("secret-000000"))
    none = ApiKeys(Secret(""), Secret(""))
    storage = Storage(tmp_path / "t.db")
    cache = CacheSource(storage)
    src, name = choose_source("auto", keys, cache, lambda: True)
    assert isinstance(src, AlpacaDataSource) and name == "Alpaca (IEX feed)"
    src, name = choose_source("auto", none, cache, lambda: True)
    assert isinstance(src, YFinanceSource) and "yfinance" in name
    src, name = choose_source("auto", none, cache, lambda: False)
    assert isinstance(src, SimulatedSource) and name == "simulated market"
    times = pd.date_range("2025-12-23 14:30", periods=1, freq="5min", tz="UTC")
    BarRepository(storage).upsert_frame("PLTR", "5m", make_frame(times, [1], [2], [0.5], [1.5], [9]))
    src, name = choose_source("auto", none, cache, lambda: False)
    assert src is cache and "cache" in name
    storage.close()


def test_choose_source_explicit_choices() -> None:
    none = ApiKeys(Secret(""), Secret(""))
    probed: list[bool] = []

    def probe() -> bool:
        probed.append(True)
        return False

    assert isinstance(choose_source("yfinance", none, None, probe)[0], YFinanceSource)
    assert isinstance(choose_source("simulated", none, None, probe)[0], SimulatedSource)
    assert probed == []  # an explicit choice never probes the network
    with pytest.raises(DataError, match="API keys"):
        choose_source("alpaca", none, None, probe)
    with pytest.raises(DataError, match="unknown data source"):
        choose_source("bloomberg", none, None, probe)
