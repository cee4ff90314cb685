"""Bad input, each with a clear message, nothing lost, and the app still running:
hostile CSV files through ``data import`` and ``backtest``, NaN and infinite
prices fed to the bot, a locked and a read-only database, impossible settings,
the clock jumping forward and back, and the days the clocks change."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import utc
from loguru import logger

from app.engine.bootstrap import build_engine
from app.engine.bot import TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import NY, MarketCalendar, SimClock
from app.engine.events import EventBus
from app.engine.paths import AppPaths
from app.engine.records import MemoryRecorder
from app.engine.settings import Settings, SettingsError
from app.engine.storage import Storage, StorageError
from app.engine.strategy.base import ModelOutput, SignalModel
from app.engine.types import Bar, Order, OrderType, Side

ROOT = Path(__file__).resolve().parents[1]
SYMBOL = "PLTR"
BAR = timedelta(minutes=5)
HEADER = "timestamp,open,high,low,close,volume\n"


# ------------------------------------------------------------ hostile CSV files
def _rows(n: int, start: datetime = utc(2025, 3, 4, 14, 30), price: float = 20.0) -> list[str]:
    """``n`` plausible 5-minute bars in regular hours, as CSV lines."""
    out = []
    for i in range(n):
        t = start + i * BAR
        p = price * (1 + 0.002 * math.sin(i / 3))
        out.append(f"{t.isoformat()},{p:.4f},{p * 1.002:.4f},{p * 0.998:.4f},{p * 1.001:.4f},{1000 + i}\n")
    return out


def _with_close(rows: list[str], values: list[str]) -> str:
    """The rows with their close replaced by ``values``, one each."""
    out = []
    for row, value in zip(rows, values):
        cells = row.rstrip("\n").split(",")
        cells[4] = value
        out.append(",".join(cells) + "\n")
    return "".join(out)


def _hostile_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what must happen: "error", "rejects:<n>" or "accepts:<n>")."""
    good = _rows(60)
    no_volume = "timestamp,open,high,low,close\n" + "".join(r.rsplit(",", 1)[0] + "\n" for r in good)
    text_in_numbers = HEADER + "".join(good[:50]) + _with_close(
        good[50:], ["abc", "N/A", "twenty", "1.2.3", "--", "1,5", "nan", "null", "20 USD", "0x14"])
    huge = HEADER + "".join(good[:54]) + _with_close(good[54:], ["1e300", "99999999999", "inf", "-5", "1e309", "0"])
    bad_times = HEADER + "".join(good[:56]) + "".join(
        f"{t},1,1,1,1,1\n" for t in ["2262-04-12T15:00:00Z", "not a time", "31/31/2025 10:00", "0001-01-01T00:00:00",
                                    "2300-01-01 10:00:00", "2099-01-05T15:00:00Z"])
    ragged = HEADER + "".join(good[:58]) + "2025-03-05T15:00:00Z,1,2,3,4,5,6,7\n2025-03-05T15:05:00Z,1\n"
    mixed = HEADER + "".join(_tz_variant(r, i) for i, r in enumerate(good))
    files: dict[str, tuple[bytes, str]] = {
        "wrong_columns": (b"foo,bar,baz\n1,2,3\n4,5,6\n", "error"),
        "missing_volume": (no_volume.encode(), "error"),
        "empty": (b"", "error"),
        "header_only": (HEADER.encode(), "error"),
        "binary": (bytes(range(256)) * 40, "error"),
        "text_in_numbers": (text_in_numbers.encode(), "rejects:10"),
        "huge_values": (huge.encode(), "rejects:6"),
        "bad_times": (bad_times.encode(), "rejects:6"),  # 5 times, and the 2099 bar at 1 a bad print
        "ragged": (ragged.encode(), "rejects:2"),
        "bom_utf8": (b"\xef\xbb\xbf" + (HEADER + "".join(good)).encode(), "accepts:60"),
        "bom_utf16": ((HEADER + "".join(good)).encode("utf-16"), "accepts:60"),
        "mixed_zones": (mixed.encode(), "accepts:60"),
    }
    out = {}
    for name, (data, expect) in files.items():
        path = folder / f"{name}.csv"
        path.write_bytes(data)
        out[name] = (path, expect)
    out["a_folder"] = (folder, "error")
    out["no_such_file"] = (folder / "nope.csv", "error")
    return out


def _tz_variant(row: str, i: int) -> str:
    """The same instant written five ways: Z, +00:00, New York offset, epoch, naive New York."""
    stamp, rest = row.split(",", 1)
    t = datetime.fromisoformat(stamp)
    forms = [t.strftime("%Y-%m-%dT%H:%M:%SZ"), t.isoformat(), t.astimezone(NY).isoformat(),
             str(int(t.timestamp())), t.astimezone(NY).strftime("%Y-%m-%d %H:%M:%S")]
    return f"{forms[i % len(forms)]},{rest}"


_HARNESS = r"""
import contextlib, io, json, sys, traceback
from app.main import main
results = []
for argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        except BaseException:
            code = "crashed"
            err.write(traceback.format_exc())
    results.append({"argv": argv, "code": code, "out": out.getvalue(), "err": err.getvalue()})
print(json.dumps(results))
"""


def _run_main(argvs: list[list[str]]) -> list[dict[str, Any]]:
    """Each argv through ``app.main.main`` (what ``python main.py`` runs), in one
    fresh process so the imports are paid once; a crash is caught and reported."""
    proc = subprocess.run([sys.executable, "-c", _HARNESS, json.dumps(argvs)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_hostile_csv_files_through_import_and_backtest(tmp_path: Path, app_home: Path) -> None:
    files = _hostile_files(tmp_path)
    argvs = []
    for path, _ in files.values():
        argvs.append(["--data-dir", str(app_home), "data", "import", str(path), "--symbol", SYMBOL,
                      "--timeframe", "5m"])
        argvs.append(["--data-dir", str(app_home), "backtest", "--csv", str(path), "--symbol", SYMBOL,
                      "--timeframe", "5m", "--strategy", "sma_cross"])
    started = time.perf_counter()
    results = _run_main(argvs)
    elapsed = time.perf_counter() - started
    lines = []
    for (name, (_, expect)), imp, bt in zip(files.items(), results[::2], results[1::2]):
        for r in (imp, bt):
            text = r["out"] + r["err"]
            assert "Traceback" not in text and r["code"] != "crashed", (name, r["argv"][2], text)
            assert r["code"] in (0, 2), (name, r)
            if r["code"] == 2:
                err = r["err"].strip().splitlines()
                assert len(err) == 1 and err[0].startswith("error: "), (name, r["err"])
        summary = next((ln for ln in imp["out"].splitlines() if ln.startswith("rows read")), "")
        shown = imp["err"].strip() if imp["code"] else summary
        lines.append(f"  {name:16} import -> {shown[:110]} | backtest -> exit {bt['code']}"
                     + (f" {bt['err'].strip()[:60]}" if bt["code"] else ""))
        kind, _, n = expect.partition(":")
        if kind == "error":
            assert imp["code"] == 2 and bt["code"] == 2, (name, imp, bt)
        elif kind == "rejects":
            assert imp["code"] == 0 and f"rejected: {n}" in summary, (name, imp["out"])
            assert "(lines " in imp["out"], "each reason says where"
        else:
            assert imp["code"] == 0 and f"accepted: {n}, rejected: 0" in summary, (name, imp["out"])
            assert bt["code"] == 0, (name, bt)
    print(f"\nhostile CSV: {len(results)} commands in {elapsed:.1f} s, no traceback\n" + "\n".join(lines))
    (stored,) = sqlite3.connect(app_home / "trader.db").execute("SELECT COUNT(*) FROM bar").fetchone()
    assert stored == 60  # every file holds (some of) the same 60 bars, in five ways of writing time: stored once


def _million_rows(path: Path) -> int:
    """A million 1-minute bars (about ten years of sessions), written in a few hundred ms."""
    day_rows = []
    for m in range(390):
        t = f"{9 + (30 + m) // 60:02d}:{(30 + m) % 60:02d}:00"
        p = 20 + 2 * math.sin(m / 40)
        day_rows.append(f"DAY {t},{p:.3f},{p + 0.02:.3f},{p - 0.02:.3f},{p + 0.01:.3f},{1000 + m}\n")
    block = "".join(day_rows)
    days = np.busday_offset("2012-01-02", np.arange(2565), roll="forward")
    with path.open("w") as fh:
        fh.write(HEADER)
        for d in days.astype(str):
            fh.write(block.replace("DAY", d))
    return 2565 * 390


def test_a_million_rows_import_and_backtest_in_reasonable_time(tmp_path: Path, app_home: Path) -> None:
    big = tmp_path / "million.csv"
    rows = _million_rows(big)
    assert rows >= 1_000_000
    timings = {}
    for name, argv in {
        "import": ["data", "import", str(big), "--symbol", SYMBOL, "--timeframe", "1m"],
        "backtest": ["backtest", "--csv", str(big), "--symbol", SYMBOL, "--timeframe", "1m",
                     "--start", "2019-06-03", "--end", "2019-06-08"],
    }.items():
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(app_home), *argv],
                              capture_output=True, text=True, timeout=300)
        timings[name] = time.perf_counter() - started
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stdout + proc.stderr
        if name == "import":
            assert f"rows read: {rows}" in proc.stdout
            imported = proc.stdout
    print(f"\nmillion rows: {rows:,} rows ({big.stat().st_size / 1e6:.0f} MB); import {timings['import']:.1f} s, "
          f"backtest {timings['backtest']:.1f} s\n" + imported)
    assert timings["import"] < 60 and timings["backtest"] < 60


# ------------------------------------------------------------ NaN and infinity
class WatchingModel(SignalModel):
    """Says BUY; remembers every history it was shown."""

    name = "watching"

    def __init__(self) -> None:
        self.seen: list[np.ndarray] = []

    def predict(self, closes: np.ndarray, *bars: Any) -> ModelOutput:
        self.seen.append(np.array(closes, dtype=float))
        for history in bars:
            self.seen.append(np.array([[b.open, b.high, b.low, b.close, b.volume] for b in history], dtype=float))
        return ModelOutput(0.95, (("watching", 0.95),), ("test",), "watching-v1")


class SpyBroker(SimulatedBroker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[Order] = []

    def submit(self, order: Order) -> Order:
        self.sent.append(order)
        return super().submit(order)


@contextlib.contextmanager
def _warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m.record["message"])), level="WARNING", format="{message}")
    try:
        yield lines
    finally:
        logger.remove(sink)


def test_nan_and_infinite_prices_are_ignored_with_a_warning(nyse: MarketCalendar) -> None:
    clock = SimClock(utc(2025, 3, 4, 15, 0))
    broker = SpyBroker(clock, 100_000.0)
    model = WatchingModel()
    records = MemoryRecorder()
    bot = TradingBot(Settings(mode="auto"), clock, broker, model, records, EventBus(), nyse,
                     sleep=lambda s: None)
    bot.start()

    def bar(o: float, h: float, lo: float, c: float, v: float = 1000.0) -> Bar:
        start = clock.now()
        clock.set(start + BAR)
        return Bar(SYMBOL, start, o, h, lo, c, v)

    bad_bars = [bar(nan, 20, 19, 20) for nan in [float("nan")]] + [
        bar(20, float("inf"), 19, 20), bar(20, 21, 19, float("nan")), bar(20, 21, 19, float("-inf")),
        bar(20, 21, -1, 20), bar(0, 21, 19, 20), bar(20, 21, 19, 20, float("nan"))]
    bad_prices = [float("nan"), float("inf"), float("-inf"), 0.0, -20.0]
    with _warnings() as warned:
        for b in bad_bars:
            bot.on_bar_close(b)
        for p in bad_prices:
            bot.on_price(SYMBOL, p)
    print(f"\nNaN/inf: {len(bad_bars)} bad bars and {len(bad_prices)} bad prices -> {len(warned)} warnings, "
          f"{len(broker.sent)} orders, model called {len(model.seen)} times")
    assert len(warned) == len(bad_bars) + len(bad_prices)
    assert all("Ignoring invalid" in w for w in warned)
    assert broker.sent == [] and model.seen == [] and records.signals == {}

    # the bot still trades on good prices, and nothing invalid ever reached the model
    broker.on_price(SYMBOL, 20.0, clock.now())
    bot.on_bar_close(bar(20, 20.1, 19.9, 20.0))
    broker.on_price(SYMBOL, 20.0, clock.advance(timedelta(seconds=30)))
    bot.on_price(SYMBOL, 20.0)
    with _warnings() as warned:
        bot.on_price(SYMBOL, float("nan"))  # while holding: the stop state stays sane
        bot.on_bar_close(bar(float("nan"), 20, 19, 20))
    (pos,) = records.positions()
    assert pos.qty > 0 and math.isfinite(pos.stop_price or float("nan")) and math.isfinite(pos.high_water)
    assert math.isfinite(pos.last_price) and len(warned) == 2
    assert [o.side for o in broker.sent] == [Side.BUY, Side.SELL]  # the entry and its stop
    assert all(np.isfinite(a).all() for a in model.seen) and model.seen


# ------------------------------------------------------------ the database refuses
def _fingerprint(path: Path) -> tuple[int, int, bytes]:
    st = path.stat()
    return st.st_ino, st.st_size, path.read_bytes()[:4096]


def test_a_locked_database_stops_with_advice_and_is_not_recreated(tmp_path: Path) -> None:
    db = tmp_path / "trader.db"
    Storage(db).close()
    before = _fingerprint(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO state(key, value) VALUES ('held', '1')")
    started = time.perf_counter()
    try:
        with pytest.raises(StorageError) as err:
            Storage(db)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    waited = time.perf_counter() - started
    print(f"\nlocked database: StorageError after {waited:.1f} s: {err.value}")
    assert "locked" in str(err.value) and "Another program holds the database" in str(err.value)
    assert "\n" not in str(err.value)
    assert _fingerprint(db) == before, "the file is left as it was"
    Storage(db).close()  # and opens again once the other program lets go


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
def test_a_read_only_database_stops_with_advice_and_is_not_recreated(app_home: Path) -> None:
    # as root, permissions do not bind: the check runs as 'nobody' for the moment it takes
    folder = Path(tempfile.mkdtemp(prefix="ro-home-"))
    try:
        os.chmod(folder, 0o755)
        db = folder / "trader.db"
        Storage(db).close()
        before = _fingerprint(db)
        os.chmod(db, 0o444)
        os.chmod(folder, 0o555)
        as_root = os.geteuid() == 0
        try:
            if as_root:
                os.seteuid(65534)
            with pytest.raises(StorageError) as err:
                Storage(db)
        finally:
            if as_root:
                os.seteuid(0)
        os.chmod(folder, 0o755)
        os.chmod(db, 0o644)
        print(f"\nread-only database: StorageError: {err.value}")
        assert "read-only" in str(err.value) and "fix its permissions" in str(err.value)
        assert _fingerprint(db) == before and sorted(p.name for p in folder.iterdir()) == ["trader.db"]
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


def test_the_engine_refuses_to_start_on_a_database_it_cannot_use(app_home: Path) -> None:
    paths = AppPaths(app_home).ensure()
    paths.database.write_bytes(b"this is not a database, it is a shopping list\n" * 20)
    before = _fingerprint(paths.database)
    with pytest.raises(StorageError, match="not a SQLite database"):
        build_engine(paths, Settings(), today=utc(2025, 3, 5))
    assert _fingerprint(paths.database) == before


# ------------------------------------------------------------ settings
@pytest.mark.parametrize("values, field", [
    ({"risk_per_trade": 5}, "risk_per_trade"), ({"risk_per_trade": -0.01}, "risk_per_trade"),
    ({"max_positions": "abc"}, "max_positions"), ({"max_positions": 2.5}, "max_positions"),
    ({"max_positions": True}, "max_positions"), ({"stop_loss_pct": "nan"}, "stop_loss_pct"),
    ({"stop_loss_pct": float("inf")}, "stop_loss_pct"), ({"daily_loss_limit": None}, "daily_loss_limit"),
    ({"daily_loss_limit": [0.05]}, "daily_loss_limit"), ({"mode": "yolo"}, "mode"),
    ({"symbol": "pltr; DROP TABLE"}, "watchlist"), ({"watchlist": ["PLTR", "ＡＭＤ"]}, "watchlist"),
    ({"eod_flatten": "maybe"}, "eod_flatten"),
    ({"eod_flatten": 2}, "eod_flatten"), ({"demo_seed": 1e20}, "demo_seed"),
    ({"timeframe": "7m"}, "timeframe"), ({"approval_threshold": 0.9, "auto_threshold": 0.8}, "approval_threshold"),
    ({"weight_lstm": 0, "weight_rf": 0, "weight_hist_gb": 0, "weight_momentum": 0}, "weight_lstm"),
    ({"starting_cash": "1e400"}, "starting_cash"),
])
def test_impossible_settings_are_refused_naming_the_field(values: dict[str, Any], field: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_dict(values)
    assert err.value.name == field and str(err.value).startswith(f"{field}: ")


@pytest.mark.parametrize("content", [
    b'{"risk_per_trade": 7, "symbol": "PLTR"}', b'{"max_positions": "many"}', b"{not json",
    b"[1, 2, 3]", b'{"stop_loss_pct": 1e999}', b"\xff\xfe\x00garbage", b"", b'"just a string"',
], ids=["out-of-range", "non-numeric", "broken-json", "a-list", "infinity", "bad-utf8", "empty", "a-string"])
def test_a_bad_settings_file_falls_back_to_defaults_and_is_kept(app_home: Path, content: bytes) -> None:
    paths = AppPaths(app_home).ensure()
    paths.settings.write_bytes(content)
    with _warnings() as logged:
        loaded = Settings.load(paths.settings)
    assert loaded == Settings()
    kept = paths.settings.with_suffix(".invalid.json")
    assert kept.read_bytes() == content
    assert not paths.settings.exists() or Settings.load_checked(paths.settings) == (Settings(), [])
    assert any("is invalid" in line or "invalid values" in line for line in logged)


def test_a_settings_path_that_is_a_folder_does_not_stop_the_app(app_home: Path) -> None:
    paths = AppPaths(app_home).ensure()
    paths.settings.mkdir()
    with _warnings() as logged:
        assert Settings.load(paths.settings) == Settings()
    assert logged and "is invalid" in logged[0]


def test_headless_reports_a_bad_symbol_in_one_line(app_home: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(app_home), "run",
                           "--headless", "--symbol", "no way!", "--max-bars", "1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("error: watchlist: ")


# ------------------------------------------------------------ the clock jumps
class AlwaysBuy(SignalModel):
    name = "always-buy"

    def predict(self, closes: np.ndarray, *bars: Any) -> ModelOutput:
        return ModelOutput(0.95, (("always-buy", 0.95),), ("test",), "always-buy-v1")


class CountingBroker(SimulatedBroker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.submits: dict[str, int] = {}

    def submit(self, order: Order) -> Order:
        placed = super().submit(order)
        self.submits[order.client_order_id] = self.submits.get(order.client_order_id, 0) + 1
        return placed


def _play(bot: TradingBot, broker: SimulatedBroker, clock: SimClock, day: date, cal: MarketCalendar,
          start: datetime | None = None, until: datetime | None = None) -> list[Bar]:
    """Synthetic bars of one session from ``start`` to ``until`` (default: all of it), tick by tick."""
    from app.engine.simmarket import SimulatedMarket

    session = cal.session(day)
    assert session is not None
    bars = [sb for sb in SimulatedMarket(SYMBOL, 3, cal).session_bars(session)
            if (start is None or sb.bar.time >= start) and (until is None or sb.bar.time < until)]
    for sb in bars:
        for k, price in enumerate(sb.ticks):
            now = sb.bar.time + BAR * k / len(sb.ticks)
            clock.set(now)
            broker.on_price(SYMBOL, price, now)
            bot.on_price(SYMBOL, price)
        clock.set(sb.bar.time + BAR)
        broker.on_price(SYMBOL, sb.bar.close, clock.now())
        bot.on_bar_close(sb.bar)
    return [sb.bar for sb in bars]


def _desk(cal: MarketCalendar, start: datetime) -> tuple[TradingBot, CountingBroker, SimClock, MemoryRecorder]:
    """Always wants to buy; stops wide enough that a position is held until the end of the day."""
    clock = SimClock(start)
    broker = CountingBroker(clock, 100_000.0)
    records = MemoryRecorder()
    settings = Settings(mode="auto", stop_loss_pct=0.2, trailing_start_pct=0.5, trailing_pct=0.2)
    bot = TradingBot(settings, clock, broker, AlwaysBuy(), records, EventBus(), cal, sleep=lambda s: None)
    bot.start()
    return bot, broker, clock, records


def _ny(t: datetime) -> str:
    return t.astimezone(NY).strftime("%H:%M")


def _session(cal: MarketCalendar, day: date) -> Any:
    s = cal.session(day)
    assert s is not None
    return s


def test_the_clock_jumping_forward_and_back_mid_session(nyse: MarketCalendar) -> None:
    tuesday, friday = _session(nyse, date(2025, 6, 10)), _session(nyse, date(2025, 6, 13))
    bot, broker, clock, records = _desk(nyse, tuesday.open)
    _play(bot, broker, clock, tuesday.day, nyse, until=tuesday.open + timedelta(hours=2))
    (held,) = records.positions()

    # Tuesday 11:30: the clock leaps to Friday 11:30
    clock.set(friday.open + timedelta(hours=2))
    bot.on_price(SYMBOL, held.last_price)
    status = bot.status()
    assert status.market_open and status.next_change == friday.close and _ny(friday.close) == "16:00"
    assert bot.data_stale(), "no bar for three days: stale until bars come again"
    assert [o.order_type for o in broker.open_orders()] == [OrderType.STOP], "still protected at the broker"
    _play(bot, broker, clock, friday.day, nyse, start=clock.now())
    assert records.positions() == [] and broker.positions() == [], "flat at Friday's close"

    # Friday 16:00: back to Tuesday's open, to live the same bars (and make the same intents) again
    asked: dict[str, int] = {}
    place = bot.core.router.place

    def counting_place(order: Order, *args: Any, **kwargs: Any) -> Order:
        asked[order.client_order_id] = asked.get(order.client_order_id, 0) + 1
        return place(order, *args, **kwargs)

    bot.core.router.place = counting_place  # type: ignore[method-assign]
    clock.set(tuesday.open)
    bot.on_price(SYMBOL, 20.0)
    status = bot.status()
    assert status.market_open and status.next_change == tuesday.close
    _play(bot, broker, clock, tuesday.day, nyse, start=clock.now())
    dupes = {c: n for c, n in broker.submits.items() if n > 1}
    again = [c for c in asked
             if c in broker.submits and broker.submits[c] == 1 and c.startswith("ait-PLTR-20250610T1330")]
    entries = [o for o in records.orders.values() if o.side == Side.BUY]
    print(f"\nclock jumps: +3 days, then back 3 days 6.5 hours, mid-session; {len(broker.submits)} orders sent "
          f"({len(entries)} entries), intents made again after the jump back {again}, duplicate ids "
          f"{len(dupes)}; Friday's session {_ny(friday.open)}-{_ny(friday.close)} ET")
    assert again == ["ait-PLTR-20250610T1330-BUY-entry"], "the same intent came again..."
    assert dupes == {}, "...and was not sent twice"
    assert len(entries) == 2 and records.positions() == [] and broker.positions() == []
    assert [t.exit_reason for t in records.trades] == ["end of day", "end of day"]


@pytest.mark.parametrize("days", [(date(2025, 3, 7), date(2025, 3, 10)), (date(2025, 10, 31), date(2025, 11, 3))],
                         ids=["spring-forward", "fall-back"])
def test_sessions_around_a_daylight_saving_change(nyse: MarketCalendar, days: tuple[date, date]) -> None:
    first = nyse.session(days[0])
    assert first is not None
    bot, broker, clock, records = _desk(nyse, first.open)
    report = []
    for day in days:
        s = nyse.session(day)
        assert s is not None
        bars = _play(bot, broker, clock, day, nyse)
        flattens = [o for o in records.orders.values() if "end of day" in o.reason
                    and o.created_at.astimezone(NY).date() == day]
        late_entries = [o for o in records.orders.values() if o.side == Side.BUY
                        and o.created_at.astimezone(NY).date() == day
                        and o.created_at >= s.close - timedelta(minutes=15)]
        report.append(f"{day}: session {_ny(s.open)}-{_ny(s.close)} ET ({s.open:%H:%M}-{s.close:%H:%M} UTC), "
                      f"bars {_ny(bars[0].time)}-{_ny(bars[-1].time + BAR)}, flatten at "
                      f"{', '.join(_ny(o.created_at) for o in flattens)}")
        assert (_ny(s.open), _ny(s.close)) == ("09:30", "16:00")
        assert _ny(bars[0].time) == "09:30" and _ny(bars[-1].time + BAR) == "16:00" and len(bars) == 78
        assert [_ny(o.created_at) for o in flattens] == ["15:55"], "closed five minutes before the close"
        assert late_entries == [] and records.positions() == [] and broker.positions() == []
    ids = list(broker.submits)
    print("\nDST: " + "; ".join(report))
    assert max(broker.submits.values()) == 1 and len(ids) == len(set(ids))
    stops = [o for o in records.orders.values() if o.order_type == OrderType.STOP]
    assert stops, "entries were protected"
