"""Backtests over a portfolio: several symbols, one shared account, the same engine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import write_bars_csv

from app.engine.backtest.config import BacktestConfig
from app.engine.backtest.runner import run_backtest
from app.engine.clock import MarketCalendar
from app.engine.settings import Settings
from app.engine.simmarket import watchlist_markets
from app.engine.types import NY, Bar

SYMBOLS = ("AAA", "BBB", "CCC")


def portfolio_bars(sessions: int = 12, seed: int = 5, symbols: tuple[str, ...] = SYMBOLS) -> list[Bar]:
    """5-minute bars of the simulated market for each symbol, over the same NYSE sessions."""
    cal = MarketCalendar()
    days = cal.previous_sessions(datetime(2025, 6, 1, tzinfo=UTC), sessions)
    return [b for m in watchlist_markets(symbols, seed, cal) for b in m.history(days)]


def test_three_symbols_respect_positions_exposure_and_size_at_every_bar() -> None:
    """Tight limits that bind: at most 2 positions, 30% each, 50% in all. After every bar
    time the held symbols and what each entry cost stay inside them."""
    bars = portfolio_bars()
    settings = Settings(max_positions=2, max_position_pct=0.30, max_exposure_pct=0.50, risk_per_trade=0.05)
    res = run_backtest(bars, BacktestConfig(symbol="AAA,BBB,CCC", timeframe="5m", strategy="sma_cross"),
                       settings=settings)
    assert res.symbols == SYMBOLS
    held, closes, eq = res.held, res.closes, res.equity
    assert held.shape == closes.shape == (len(res.times), 3)
    assert {t.symbol for t in res.trades} == set(SYMBOLS), "every symbol traded"
    assert (held > 0).sum(axis=1).max() == 2, "the position limit was reached (so it could have been broken)"
    assert ((held > 0).sum(axis=1) <= 2).all()
    opens = {(b.symbol, b.time): b.open for b in bars}
    entries = 0
    for i in range(1, len(res.times)):
        for k, symbol in enumerate(SYMBOLS):
            bought = held[i, k] - held[i - 1, k]
            if bought <= 0:
                continue
            entries += 1
            price = opens[(symbol, res.times[i])]  # filled at this bar's open
            assert held[i, k] * price <= 0.30 * eq[i - 1] * 1.02, f"{symbol} over 30% at {res.times[i]}"
            others = sum(held[i, j] * closes[i - 1, j] for j in range(3) if j != k)
            assert others + held[i, k] * price <= 0.50 * eq[i - 1] * 1.02, f"over 50% at {res.times[i]}"
    assert entries >= 10


def test_each_symbols_sleeve_adds_up_to_the_portfolio() -> None:
    bars = portfolio_bars(sessions=8)
    res = run_backtest(bars, BacktestConfig(symbol="AAA,BBB,CCC", timeframe="5m", strategy="sma_cross"),
                       settings=Settings(max_exposure_pct=1.0))
    assert set(res.per_symbol) == set(SYMBOLS)
    total = sum(m["total_return"] for m in res.per_symbol.values())
    assert total == pytest.approx(res.metrics["total_return"], abs=1e-9)
    for symbol, m in res.per_symbol.items():
        mine = [t for t in res.trades if t.symbol == symbol]
        assert m["trades"] == len(mine)
        assert m["final_equity"] - 100_000 == pytest.approx(sum(t.pnl for t in mine), abs=0.01)  # flat each night
    assert res.bars == len(bars) and len(res.times) == len(bars) // 3


def test_one_symbol_alone_trades_as_it_does_in_a_portfolio_without_limits_binding() -> None:
    """With room for everything, a symbol's trades do not depend on its neighbours."""
    bars = portfolio_bars(sessions=6)
    roomy = Settings(max_positions=5, max_position_pct=0.2, max_exposure_pct=1.0)
    cfg = BacktestConfig(symbol="AAA", timeframe="5m", strategy="sma_cross")
    together = run_backtest(bars, cfg, settings=roomy)
    alone = run_backtest([b for b in bars if b.symbol == "BBB"], cfg, settings=roomy)
    mine = [(t.entry_time, t.exit_time, t.entry_price) for t in together.trades if t.symbol == "BBB"]
    assert mine and [(t.entry_time, t.exit_time, t.entry_price) for t in alone.trades] == mine


def test_a_symbol_whose_data_ends_while_held_is_closed_that_day_not_carried() -> None:
    """BBB's file stops mid-session while it is held: its end-of-day sell fills at its last
    price that evening; it does not sit in the portfolio (blocking room) to the end."""
    bars = portfolio_bars(sessions=8)
    full = run_backtest(bars, BacktestConfig(symbol="AAA,BBB,CCC", timeframe="5m", strategy="sma_cross"),
                        settings=Settings(max_exposure_pct=1.0))
    entry = next(t for t in full.trades if t.symbol == "BBB" and t.entry_time.day != bars[0].time.day)
    cut = entry.entry_time + timedelta(minutes=10)  # held when its data stop
    short = [b for b in bars if b.symbol != "BBB" or b.time <= cut]
    res = run_backtest(short, BacktestConfig(symbol="AAA,BBB,CCC", timeframe="5m", strategy="sma_cross"),
                       settings=Settings(max_exposure_pct=1.0))
    mine = [t for t in res.trades if t.symbol == "BBB"]
    assert mine[-1].entry_time == entry.entry_time and mine[-1].exit_time.date() == cut.date()
    assert all(t.exit_time.astimezone(NY).date() == t.entry_time.astimezone(NY).date() for t in res.trades)
    k = res.symbols.index("BBB")
    assert res.held[res.times.index(next(t for t in res.times if t.date() > cut.date())):, k].max() == 0
    assert res.per_symbol["BBB"]["final_equity"] - 100_000 == pytest.approx(sum(t.pnl for t in mine), abs=0.01)


def test_plain_never_spends_the_cash_twice_on_one_bar_close() -> None:
    """--plain buys with the whole cash; two symbols signalling at one close share it, not double it."""
    bars = portfolio_bars(sessions=8)
    res = run_backtest(bars, BacktestConfig(symbol="AAA,BBB,CCC", timeframe="5m", strategy="sma_cross", plain=True))
    value = (res.held * res.closes).sum(axis=1)
    assert (res.held > 0).sum(axis=1).max() >= 2, "two held at once: the case this is about"
    assert (value <= res.equity * 1.02).all(), "never more in stock than the account is worth (no leverage)"


def test_cli_portfolio_json_html_and_file_names(tmp_path: Path, app_home: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    bars = portfolio_bars(sessions=6)
    files = [write_bars_csv(tmp_path / f"{s.lower()}.csv", [b for b in bars if b.symbol == s]) for s in SYMBOLS[:2]]
    named = write_bars_csv(tmp_path / "CCC_5m_2025.csv", [b for b in bars if b.symbol == "CCC"])
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    code = main(["--data-dir", str(app_home), "backtest", "--timeframe", "5m", "--strategy", "sma_cross",
                 "--csv", f"AAA={files[0]}", "--csv", f"BBB={files[1]}", "--csv", str(named),
                 "--json", str(out_json), "--html", str(out_html)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "of 3 symbols" in printed and "CCC:" in printed
    data = json.loads(out_json.read_text())
    assert data["symbols"] == list(SYMBOLS) and set(data["per_symbol"]) == set(SYMBOLS)
    assert {t["symbol"] for t in data["trades"]} <= set(SYMBOLS) and data["trades"]
    assert data["bars"] == len(bars) and data["elapsed_seconds"] > 0
    assert set(data["per_symbol"]["AAA"]) == set(data["metrics"])
    page = out_html.read_text()
    assert "Each symbol" in page and page.count("<svg") == 2 + 3  # equity, drawdown, a price plot per symbol


def test_cli_refuses_a_symbol_twice_and_an_unnamed_file_among_several(tmp_path: Path, app_home: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    bars = portfolio_bars(sessions=3)
    a = write_bars_csv(tmp_path / "a.csv", [b for b in bars if b.symbol == "AAA"])
    b = write_bars_csv(tmp_path / "b.csv", [b for b in bars if b.symbol == "BBB"])
    assert main(["--data-dir", str(app_home), "backtest", "--csv", f"AAA={a}", "--csv", f"AAA={b}"]) == 2
    assert "AAA is given twice" in capsys.readouterr().err
    assert main(["--data-dir", str(app_home), "backtest", "--csv", f"AAA={a}", "--csv", str(b)]) == 2
    assert "cannot tell which ticker b.csv holds" in capsys.readouterr().err


def test_a_window_that_leaves_a_symbol_without_bars_says_so(tmp_path: Path, app_home: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    bars = portfolio_bars(sessions=6, symbols=("AAA", "BBB"))
    days = sorted({b.time.date() for b in bars})
    a = write_bars_csv(tmp_path / "a.csv", [b for b in bars if b.symbol == "AAA"])
    b = write_bars_csv(tmp_path / "b.csv", [b for b in bars if b.symbol == "BBB" and b.time.date() < days[2]])
    code = main(["--data-dir", str(app_home), "backtest", "--csv", f"AAA={a}", "--csv", f"BBB={b}",
                 "--start", days[3].isoformat()])
    assert code == 0
    out = capsys.readouterr().out
    assert "note: BBB has no bars in the chosen window: left out" in out


def test_headless_replay_of_two_symbols(tmp_path: Path, app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    bars = portfolio_bars(sessions=3, symbols=("AAA", "BBB"))
    a = write_bars_csv(tmp_path / "a.csv", [b for b in bars if b.symbol == "AAA"])
    b = write_bars_csv(tmp_path / "BBB_5m.csv", [b for b in bars if b.symbol == "BBB"])
    code = main(["--data-dir", str(app_home), "run", "--headless", "--speed", "0", "--replay", f"AAA={a}",
                 "--replay", str(b)])
    assert code == 0
    out = capsys.readouterr().out
    assert "replaying AAA: 234 bars from a.csv" in out and "replaying BBB: 234 bars from BBB_5m.csv" in out
    assert "market AAA, BBB" in out
    assert "stopped after 156 bars" in out  # two sessions played (the first warms up), one bar time each
