"""``data import`` / ``data fetch`` as a user runs them: counts on stdout, one error line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alpaca_bars_server import BarsServer, two_pages
from test_data_csv_import import write_two_symbols

from app.cli.data import add_data_parser, run_data_command
from app.engine.clock import SimClock
from app.engine.paths import AppPaths
from app.engine.secrets import save_keys
from app.engine.settings import Settings
from app.engine.storage import BarRepository, Storage

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
NOW = datetime(2025, 12, 24, 21, 0, tzinfo=UTC)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ai-trader")
    add_data_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


@pytest.fixture
def paths(app_home: Path) -> AppPaths:
    return AppPaths(app_home)


def run(paths: AppPaths, capsys: pytest.CaptureFixture[str], *argv: str,
        probe: bool = False) -> tuple[int, str, str]:
    rc = run_data_command(parse(*argv), paths, clock=SimClock(NOW), probe_yfinance=lambda: probe)
    out, err = capsys.readouterr()
    return rc, out, err


def test_import_prints_counts_reasons_and_source(paths: AppPaths, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(paths, capsys, "data", "import", str(DATA / "defects_5m.csv"),
                       "--symbol", "PLTR", "--timeframe", "5m")
    assert rc == 0 and err == ""
    assert "source: CSV file" in out
    assert "accepted: 6, rejected: 10" in out
    assert "zero or negative price: 2 (lines 10, 11)" in out
    assert "pre/post-market bars (dropped)" in out
    rc, out, _ = run(paths, capsys, "data", "import", str(DATA / "defects_5m.csv"), "--symbol", "PLTR")
    assert rc == 0 and "stored: 6 bars (0 new)" in out  # the default timeframe is 5m


@pytest.mark.parametrize("argv", [
    ("data", "import", "nope.csv", "--symbol", "PLTR"),
    ("data", "import", str(DATA / "empty.csv"), "--symbol", "PLTR"),
    ("data", "import", str(DATA / "missing_columns.csv"), "--symbol", "PLTR"),
    ("data", "import", str(DATA / "half_day_15m.csv"), "--symbol", "PLTR", "--timeframe", "1h"),
    ("data", "fetch", "--symbol", "PLTR", "--start", "23/12/2025"),
    ("data", "fetch", "--symbol", "PLTR", "--source", "auto"),  # no keys, Yahoo unreachable
    ("data", "fetch", "--symbol", "PLTR", "--source", "alpaca"),  # no keys
])
def test_failures_are_one_error_line_and_status_2(paths: AppPaths, capsys: pytest.CaptureFixture[str],
                                                   argv: tuple[str, ...]) -> None:
    rc, out, err = run(paths, capsys, *argv)
    assert rc == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err


def test_corrupt_database_is_an_error_line(paths: AppPaths, capsys: pytest.CaptureFixture[str]) -> None:
    paths.ensure()
    paths.database.write_bytes(b"this is not sqlite at all" * 10)
    rc, _, err = run(paths, capsys, "data", "import", str(DATA / "epoch_seconds.csv"), "--symbol", "X")
    assert rc == 2 and err.startswith("error: ") and "not a SQLite database" in err


def test_fetch_from_cache_fetches_nothing(paths: AppPaths, capsys: pytest.CaptureFixture[str]) -> None:
    run(paths, capsys, "data", "import", str(DATA / "epoch_seconds.csv"), "--symbol", "PLTR")
    rc, out, _ = run(paths, capsys, "data", "fetch", "--symbol", "PLTR", "--source", "cache",
                     "--start", "2025-12-23", "--end", "2025-12-23")
    assert rc == 0 and "source: local cache" in out and "holds 5 PLTR 5m bars" in out


def test_fetch_through_alpaca_loopback(paths: AppPaths, capsys: pytest.CaptureFixture[str],
                                       bars_server: BarsServer) -> None:
    bars_server.pages = two_pages("PLTR")
    _use_keys_of(paths, bars_server)
    rc, out, err = run(paths, capsys, "data", "fetch", "--symbol", "PLTR", "--timeframe", "5m",
                       "--start", "2025-12-23", "--end", "2025-12-23", "--alpaca-url", bars_server.url)
    assert rc == 0, err
    assert "source: Alpaca (IEX feed)" in out and "received: 3, stored: 3 (3 new)" in out
    assert bars_server.bar_queries[0]["start"].startswith("2025-12-23T05:00:00")  # NY midnight
    assert bars_server.bar_queries[0]["end"].startswith("2025-12-24T05:00:00")  # end day included
    assert bars_server.api_keys().secret_key.reveal() not in out + err
    storage = Storage(paths.database)
    assert BarRepository(storage).count("PLTR", "5m") == 3
    storage.close()


def test_fetch_a_watchlist_through_alpaca_loopback(paths: AppPaths, capsys: pytest.CaptureFixture[str],
                                                  bars_server: BarsServer) -> None:
    pages = two_pages("PLTR")
    for page, spy in zip(pages, two_pages("SPY"), strict=True):
        page["bars"].update(spy["bars"])  # each page holds both symbols, as Alpaca's multi-symbol answer does
    bars_server.pages = pages
    _use_keys_of(paths, bars_server)
    rc, out, err = run(paths, capsys, "data", "fetch", "--symbols", "pltr, SPY,pltr", "--timeframe", "5m",
                       "--start", "2025-12-23", "--end", "2025-12-23", "--alpaca-url", bars_server.url)
    assert rc == 0, err
    assert "PLTR: received: 3, stored: 3 (3 new)" in out and "SPY: received: 3, stored: 3 (3 new)" in out
    storage = Storage(paths.database)
    assert (BarRepository(storage).count("PLTR", "5m"), BarRepository(storage).count("SPY", "5m")) == (3, 3)
    storage.close()


def test_a_watchlist_fetch_names_the_symbol_that_failed_and_keeps_the_rest(
        paths: AppPaths, capsys: pytest.CaptureFixture[str], bars_server: BarsServer) -> None:
    bars_server.pages = two_pages("PLTR")
    refuse = bars_server.route

    def route(method: str, path: str, query: dict[str, str], body: dict[str, object]):  # type: ignore[no-untyped-def]
        if path == "/v2/stocks/bars" and query.get("symbols") == "NVDA":
            return 403, {"code": 40310000, "message": "subscription does not permit querying NVDA"}
        return refuse(method, path, query, body)

    bars_server.route = route  # type: ignore[method-assign]
    _use_keys_of(paths, bars_server)
    rc, out, err = run(paths, capsys, "data", "fetch", "--symbols", "NVDA,PLTR", "--start", "2025-12-23",
                       "--end", "2025-12-23", "--alpaca-url", bars_server.url)
    assert rc == 2 and err.startswith("error: could not fetch NVDA") and "the other symbols were stored" in err
    assert "PLTR: received: 3, stored: 3 (3 new)" in out
    storage = Storage(paths.database)
    assert BarRepository(storage).count("PLTR", "5m") == 3
    storage.close()


def test_import_takes_the_symbol_and_timeframe_from_the_file_name(
        paths: AppPaths, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spy = tmp_path / "SPY_5m_2025-12-23.csv"
    spy.write_bytes((DATA / "epoch_seconds.csv").read_bytes())
    rc, out, err = run(paths, capsys, "data", "import", str(spy))
    assert rc == 0, err
    storage = Storage(paths.database)
    assert (BarRepository(storage).count("SPY", "5m"), BarRepository(storage).count("PLTR", "5m")) == (5, 0)
    storage.close()


def test_a_file_named_spy_is_never_stored_as_pltr_unasked(paths: AppPaths, capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:
    spy = tmp_path / "SPY_5m_2025-12-23.csv"
    spy.write_bytes((DATA / "epoch_seconds.csv").read_bytes())
    rc, _, err = run(paths, capsys, "data", "import", str(spy), "--symbol", "PLTR")
    assert rc == 2 and "says SPY, not PLTR" in err and "--rename" in err
    rc, _, err = run(paths, capsys, "data", "import", str(spy), "--symbol", "PLTR", "--rename")
    assert rc == 0, err
    rc, _, err = run(paths, capsys, "data", "import", str(DATA / "epoch_seconds.csv"))  # the name says nothing
    assert rc == 2 and "cannot tell which ticker" in err
    storage = Storage(paths.database)
    assert (BarRepository(storage).count("SPY", "5m"), BarRepository(storage).count("PLTR", "5m")) == (0, 5)
    storage.close()


def test_import_drops_bad_prints_by_the_users_factor(paths: AppPaths, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    closes = [20.0 + 0.01 * i for i in range(12)]
    closes[6] = 50.0  # 2.5x: a real move at the default 3x, a bad print at the user's 2x
    csv = tmp_path / "PLTR_5m.csv"
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"2025-12-23 {14 + (30 + 5 * i) // 60}:{(30 + 5 * i) % 60:02d}:00+00:00,{c},{c},{c},{c},100\n"
        for i, c in enumerate(closes)))
    rc, out, _ = run(paths, capsys, "data", "import", str(csv))
    assert rc == 0 and "price spike" not in out and "stored: 12 bars" in out
    paths.ensure()
    Settings(bad_print_factor=2.0).save(paths.settings)
    rc, out, _ = run(paths, capsys, "data", "import", str(csv), "--replace")
    assert rc == 0 and "price spike (a bad print: x2 off" in out and "stored: 11 bars" in out


def _counts(paths: AppPaths, *symbols: str) -> tuple[int, ...]:
    storage = Storage(paths.database)
    try:
        return tuple(BarRepository(storage).count(s, "5m") for s in symbols)
    finally:
        storage.close()


def _one_symbol_file(path: Path, symbol: str) -> Path:
    path.write_text("timestamp,symbol,open,high,low,close,volume\n" + "".join(
        f"2025-12-23 14:{30 + 5 * i}:00+00:00,{symbol},{10 + i},{11 + i},{9 + i},{10.5 + i},100\n"
        for i in range(4)))
    return path


def test_a_symbol_column_imports_each_stock_under_its_own_ticker(
        paths: AppPaths, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = write_two_symbols(tmp_path / "watch.csv")
    rc, out, err = run(paths, capsys, "data", "import", str(f))
    assert rc == 0, err
    assert "PLTR: imported PLTR 5m from watch.csv" in out and "SPY: imported SPY 5m from watch.csv" in out
    assert "PLTR: rows read: 6, accepted: 5, rejected: 1" in out and "SPY: rows read: 5, accepted: 5" in out
    assert "duplicate" not in out, "the same time in two stocks is two bars"
    assert _counts(paths, "PLTR", "SPY") == (5, 5)
    rc, out, _ = run(paths, capsys, "data", "import", str(f))
    assert rc == 0 and "PLTR: stored: 5 bars (0 new)" in out and "SPY: stored: 5 bars (0 new)" in out


def test_a_name_that_says_spy_and_a_column_that_says_pltr_is_refused(
        paths: AppPaths, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = _one_symbol_file(tmp_path / "SPY_5m_2025-12-23.csv", "PLTR")
    rc, _, err = run(paths, capsys, "data", "import", str(f))
    assert rc == 2 and "name says SPY but its symbol column says PLTR" in err
    assert _counts(paths, "PLTR", "SPY") == (0, 0)
    rc, _, err = run(paths, capsys, "data", "import", str(f), "--symbol", "SPY")
    assert rc == 2 and "symbol column says PLTR, not SPY" in err and "--rename" in err
    assert _counts(paths, "PLTR", "SPY") == (0, 0)
    rc, _, err = run(paths, capsys, "data", "import", str(f), "--symbol", "pltr")  # the user and the content agree
    assert rc == 0, err
    assert _counts(paths, "PLTR", "SPY") == (4, 0)


def test_symbol_that_the_column_contradicts_needs_rename_and_one_stock(
        paths: AppPaths, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    two = write_two_symbols(tmp_path / "watch.csv")
    for extra in ((), ("--rename",)):
        rc, _, err = run(paths, capsys, "data", "import", str(two), "--symbol", "PLTR", *extra)
        assert rc == 2 and "holds several symbols (PLTR, SPY)" in err
    assert _counts(paths, "PLTR", "SPY") == (0, 0)
    one = _one_symbol_file(tmp_path / "export.csv", "SPY")
    rc, _, err = run(paths, capsys, "data", "import", str(one), "--symbol", "NVDA")
    assert rc == 2 and "says SPY, not NVDA" in err
    rc, out, err = run(paths, capsys, "data", "import", str(one), "--symbol", "NVDA", "--rename")
    assert rc == 0 and "imported NVDA 5m" in out, err
    assert _counts(paths, "NVDA", "SPY") == (4, 0)


def test_a_bad_ticker_in_the_column_stores_nothing_of_the_file(
        paths: AppPaths, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = write_two_symbols(tmp_path / "watch.csv")
    f.write_text(f.read_text() + "2025-12-23 15:00:00+00:00,SPY$X,680,681,679,680.5,5000\n")
    rc, _, err = run(paths, capsys, "data", "import", str(f))
    assert rc == 2 and err.count("\n") == 1
    assert "line 13: 'SPY$X' is not a ticker symbol" in err
    assert _counts(paths, "PLTR", "SPY") == (0, 0)


def _use_keys_of(paths: AppPaths, server: BarsServer) -> None:
    """The app home holds the loopback server's API keys, as the settings dialog would store them."""
    paths.ensure()
    save_keys(paths.env_file, server.api_keys())


def _main_wires_data() -> Path | None:
    """The root ``main.py`` users run, when it (or ``app/main.py`` behind it) wires ``data``."""
    entry = ROOT / "main.py"
    wired = any(p.exists() and "add_data_parser" in p.read_text()
                for p in (entry, ROOT / "app" / "main.py"))
    return entry if entry.exists() and wired else None


@pytest.mark.skipif(_main_wires_data() is None, reason="main.py does not wire the data command yet")
def test_main_py_data_import_subprocess(app_home: Path) -> None:
    main = _main_wires_data()
    assert main is not None
    env = {**os.environ, "AI_TRADER_HOME": str(app_home), "QT_QPA_PLATFORM": "offscreen"}
    ok = subprocess.run([sys.executable, str(main), "data", "import", str(DATA / "half_day_15m.csv"),
                         "--symbol", "PLTR", "--timeframe", "15m"], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "accepted: 39" in ok.stdout
    bad = subprocess.run([sys.executable, str(main), "data", "import", str(DATA / "empty.csv"),
                          "--symbol", "PLTR"], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=120)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "error: empty.csv is empty" in bad.stderr


def test_a_file_of_other_prices_never_overwrites_cached_bars_unasked(tmp_path: Path, app_home: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """SPY's prices (~$690) imported as PLTR (~$190) over cached PLTR bars: refused, nothing
    replaced; --replace overwrites on purpose. A file named just SPY.csv says SPY."""
    from app.engine.paths import AppPaths
    from app.engine.storage import BarRepository, Storage
    from app.main import main

    rows = "".join(f"2024-01-{d:02d},{{p}},{{p}},{{p}},{{p}},1000\n" for d in range(2, 12))
    (tmp_path / "pltr.csv").write_text("date,open,high,low,close,volume\n" + rows.replace("{p}", "190"))
    (tmp_path / "SPY.csv").write_text("date,open,high,low,close,volume\n" + rows.replace("{p}", "690"))
    (tmp_path / "other.csv").write_text("date,open,high,low,close,volume\n" + rows.replace("{p}", "690"))
    home = ["--data-dir", str(app_home)]
    assert main([*home, "data", "import", str(tmp_path / "pltr.csv"), "--symbol", "PLTR", "--timeframe", "1d"]) == 0
    assert main([*home, "data", "import", str(tmp_path / "SPY.csv"), "--symbol", "PLTR", "--timeframe", "1d"]) == 2
    assert "SPY.csv says SPY, not PLTR" in capsys.readouterr().err
    assert main([*home, "data", "import", str(tmp_path / "other.csv"), "--symbol", "PLTR", "--timeframe", "1d"]) == 2
    err = capsys.readouterr().err
    assert "differ from the cached PLTR 1d bars" in err and "cached 190.00, file 690.00" in err
    storage = Storage(AppPaths.resolve(str(app_home)).database)
    try:
        assert {b.close for b in BarRepository(storage).load("PLTR", "1d")} == {190.0}, "nothing replaced"
    finally:
        storage.close()
    assert main([*home, "data", "import", str(tmp_path / "other.csv"), "--symbol", "PLTR", "--timeframe", "1d",
                 "--replace"]) == 0
    storage = Storage(AppPaths.resolve(str(app_home)).database)
    try:
        assert {b.close for b in BarRepository(storage).load("PLTR", "1d")} == {690.0}, "replaced on purpose"
    finally:
        storage.close()


def test_a_pipe_given_as_the_file_is_refused_not_waited_on(tmp_path: Path, app_home: Path) -> None:
    """A FIFO would block a read forever: every command that reads a CSV refuses it at once."""
    import os
    import subprocess
    import sys

    fifo = tmp_path / "bars.csv"
    os.mkfifo(fifo)
    root = Path(__file__).resolve().parents[1]
    for command in (["data", "import", str(fifo), "--symbol", "PLTR"], ["backtest", "--csv", str(fifo)]):
        done = subprocess.run([sys.executable, str(root / "main.py"), "--data-dir", str(app_home), *command],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and "not a regular file" in done.stderr, (command, done.stderr)


@pytest.mark.skipif(not os.access("/proc/kmsg", os.R_OK), reason="needs a readable /proc/kmsg (Linux, as root)")
def test_a_kernel_file_that_waits_when_read_is_refused_not_waited_on(app_home: Path) -> None:
    """/proc/kmsg is a "regular file" of 0 bytes whose read waits for the kernel's next
    message: importing it once hung."""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, str(root / "main.py"), "--data-dir", str(app_home), "data", "import",
                           "/proc/kmsg", "--symbol", "PLTR"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "kmsg is empty" in done.stderr, done.stderr


def test_an_empty_file_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    (tmp_path / "PLTR.csv").write_bytes(b"")
    assert main(["--data-dir", str(tmp_path / "home"), "data", "import", str(tmp_path / "PLTR.csv")]) == 2
    assert "PLTR.csv is empty" in capsys.readouterr().err


def test_small_command_line_gaps_are_refused_with_the_reason(tmp_path: Path, app_home: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    bad = tmp_path / "bad.csv"
    bad.write_text("date,open,high,low,close,volume\n2024-01-02,abc,1,1,1,1\n2024-01-03,x,1,1,1,1\n")
    home = ["--data-dir", str(app_home)]
    assert main([*home, "data", "import", str(bad), "--symbol", "PLTR", "--timeframe", "1d"]) == 2
    assert "every row was rejected" in capsys.readouterr().err
    for speed in ("-1", "nan", "1e-300", "0.5"):  # 1e-300 once ran without ever reaching a bar
        assert main([*home, "run", "--headless", "--speed", speed]) == 2
        assert f"--speed {float(speed):g}: 0 (as fast as possible) or 1 to 100000" in capsys.readouterr().out
    good = tmp_path / "good.csv"
    good.write_text("date,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n2024-01-03,1,1,1,1,1\n")
    assert main([*home, "backtest", "--csv", str(good), "--timeframe", "1d", "--start", "2024-02-01",
                 "--end", "2024-01-01"]) == 2
    assert "--start 2024-02-01 is not before --end 2024-01-01" in capsys.readouterr().err
    for commission in ("5", "1e308"):  # dollars a share: once printed "total return -inf%" and exit 0
        assert main([*home, "backtest", "--csv", str(good), "--timeframe", "1d", "--commission", commission]) == 2
        assert f"--commission {float(commission):g} dollars a share: at most 1" in capsys.readouterr().err
