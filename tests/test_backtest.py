"""Backtests run the live engine; the reference strategy matches backtesting.py."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from conftest import simulated_sessions, write_bars_csv

from app.engine.backtest.config import BacktestConfig
from app.engine.backtest.runner import run_backtest
from app.engine.types import Bar

ROOT = Path(__file__).resolve().parents[1]


def _walk(n: int, seed: int = 1, start: datetime = datetime(2024, 1, 2, tzinfo=UTC)) -> list[Bar]:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.001, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.002, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.002, n)))
    return [Bar("TEST", start + timedelta(minutes=i), float(o), float(h), float(lo), float(c), 1000.0)
            for i, (o, h, lo, c) in enumerate(zip(open_, high, low, close))]


def reference_backtest(bars: list[Bar]) -> tuple[object, float]:
    """backtesting.py's ``Backtest.run`` of the same 10/20 SMA cross: (stats, seconds run).
    Shared with bench/bench_backtest.py, which times it beside the engine."""
    import time

    pd = pytest.importorskip("pandas")
    bt = pytest.importorskip("backtesting")
    from backtesting.lib import crossover

    df = pd.DataFrame({"Open": [b.open for b in bars], "High": [b.high for b in bars],
                       "Low": [b.low for b in bars], "Close": [b.close for b in bars],
                       "Volume": [b.volume for b in bars]},
                      index=pd.DatetimeIndex([b.time for b in bars]).tz_convert(None))

    def sma(values: np.ndarray, n: int) -> np.ndarray:
        return pd.Series(values).rolling(n).mean().to_numpy()

    class SmaCross(bt.Strategy):  # type: ignore[misc, name-defined]
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, 10)
            self.slow = self.I(sma, self.data.Close, 20)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    runner = bt.Backtest(df, SmaCross, cash=1_000_000, commission=0.0)
    t0 = time.perf_counter()
    stats = runner.run()
    return stats, time.perf_counter() - t0


def _reference_trades(bars: list[Bar]) -> list[tuple[datetime, datetime, float, float, float]]:
    stats, _ = reference_backtest(bars)
    t = stats["_trades"]  # type: ignore[index]
    return [(a.to_pydatetime(), b.to_pydatetime(), ep, xp, size)
            for a, b, ep, xp, size in zip(t.EntryTime, t.ExitTime, t.EntryPrice, t.ExitPrice, t.Size)]


def _with_ties(n: int, seed: int) -> list[Bar]:
    """Minutes with flat stretches: 25 equal closes make the 10- and 20-bar averages exactly
    equal, which pandas' rolling mean says as 0 and a left-to-right float sum as +-1e-14. Each
    stretch follows a fall, so a strict comparison of that noise once bought there. Elsewhere
    prices move in quarters, whose sums are exact in binary floats: any other tie is an exact
    tie in both backtesters, not a coin toss of rounding."""
    rng = np.random.default_rng(seed)
    closes: list[float] = []
    price = 100.0
    while len(closes) < n:
        closes += [price := price + 0.25 * float(rng.integers(-1, 3)) for _ in range(int(rng.integers(30, 80)))]
        closes += [price := price - 0.25 for _ in range(12)]  # a fall, then flat at a price binary cannot hold
        closes += [price - 0.13] * 25
    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    out, prev = [], closes[0]
    for i, c in enumerate(closes[:n]):
        o = prev + 0.25 * float(rng.integers(-1, 2))
        out.append(Bar("TEST", t0 + timedelta(minutes=i), o, max(o, c) + 0.25, min(o, c) - 0.25, c, 1000.0))
        prev = c
    return out


@pytest.mark.parametrize("bars", [_walk(3000), _with_ties(4000, seed=2)], ids=["random walk", "bars built to tie"])
def test_sma_cross_plain_makes_the_same_trades_as_backtesting_py(bars: list[Bar]) -> None:
    """Trade for trade: entry and exit times, prices and sizes (both size on the fill bar's open:
    whole shares of the whole cash), and the same total return, max drawdown and trade count."""
    ours = run_backtest(bars, BacktestConfig(symbol="TEST", timeframe="1m", cash=1_000_000, plain=True))
    stats, _ = reference_backtest(bars)
    ref = _reference_trades(bars)
    mine = [(t.entry_time.replace(tzinfo=None), t.exit_time.replace(tzinfo=None), t.entry_price, t.exit_price,
             t.qty) for t in ours.trades]
    assert len(ref) > 20
    assert len(mine) == len(ref) == stats["# Trades"]  # type: ignore[index]
    for (ea, xa, epa, xpa, qa), (eb, xb, epb, xpb, qb) in zip(mine, ref, strict=True):
        assert (ea, xa) == (eb, xb)
        assert epa == pytest.approx(epb, rel=1e-12) and xpa == pytest.approx(xpb, rel=1e-12)
        assert qa == qb, f"size at {ea}: {qa} vs backtesting.py {qb}"
    m = ours.metrics
    assert m["total_return"] * 100 == pytest.approx(stats["Return [%]"], rel=1e-9)  # type: ignore[index]
    assert m["max_drawdown"] * 100 == pytest.approx(stats["Max. Drawdown [%]"], rel=1e-9)  # type: ignore[index]


def test_a_tie_of_the_averages_is_not_a_crossover() -> None:
    """Flat at $100.37 after a fall: the averages meet and stay equal. No buy comes of it."""
    from app.engine.strategy.sma_cross import SmaCrossModel

    closes = np.r_[np.linspace(101.0, 100.37, 30).round(2), np.full(40, 100.37)]
    assert (SmaCrossModel().crosses(closes) == 0).all()


def test_product_rules_stop_a_losing_trade_and_flatten_before_the_close(nyse) -> None:  # type: ignore[no-untyped-def]
    # NYSE session bars with a crash inside one day: the 3% stop fires; nothing is held overnight.
    bars = simulated_sessions(15, seed=11)
    res = run_backtest(bars, BacktestConfig(symbol="PLTR", timeframe="5m", strategy="rules"))
    assert res.trades, "the rules strategy trades on this stretch"
    for t in res.trades:
        assert t.entry_time.date() == t.exit_time.date() or t.exit_reason != "end of day"
        session = nyse.session(t.exit_time.astimezone(cal_ny()).date())
        assert session is not None and t.exit_time <= session.close
    assert {t.exit_reason for t in res.trades} & {"end of day", "stop loss", "exit on SELL signal"}
    assert res.metrics["exposure"] < 1.0
    assert res.metrics["max_drawdown"] <= 0.0


def cal_ny():  # type: ignore[no-untyped-def]
    from app.engine.clock import NY

    return NY


def test_metrics_are_what_the_equity_curve_says() -> None:
    bars = _walk(2000, seed=4)
    res = run_backtest(bars, BacktestConfig(symbol="TEST", timeframe="1m", plain=True))
    eq = res.equity
    assert res.metrics["total_return"] == pytest.approx(eq[-1] / eq[0] - 1)
    assert res.metrics["max_drawdown"] == pytest.approx((eq / np.maximum.accumulate(eq) - 1).min())
    assert res.metrics["trades"] == len(res.trades)
    assert res.metrics["buy_and_hold_return"] == pytest.approx(bars[-1].close / bars[0].open - 1)
    pnl = sum(t.pnl for t in res.trades)
    open_value = eq[-1] - (eq[0] + pnl)
    assert abs(open_value) < eq[0] * 0.05  # what is not in closed trades is the open position


def test_cli_writes_json_and_html(tmp_path: Path, app_home: Path) -> None:
    bars = _walk(1500, seed=7)
    csv = tmp_path / "bars.csv"
    write_bars_csv(csv, bars)
    out_json, out_html = tmp_path / "r.json", tmp_path / "r.html"
    from app.main import main

    code = main(["--data-dir", str(app_home), "backtest", "--symbol", "TEST", "--csv", str(csv),
                 "--timeframe", "1m", "--strategy", "sma_cross", "--plain", "--json", str(out_json),
                 "--html", str(out_html)])
    assert code == 0
    data = json.loads(out_json.read_text())
    assert data["bars"] == 1500 and data["elapsed_seconds"] > 0
    assert set(data["trades"][0]) == {"symbol", "entry_time", "exit_time", "entry_price", "exit_price", "qty", "pnl",
                                      "exit_reason"}
    for key in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "max_drawdown_bars", "win_rate",
                "profit_factor", "avg_win", "avg_loss", "exposure", "trades", "turnover", "buy_and_hold_return"):
        assert key in data["metrics"]
    page = out_html.read_text()
    assert page.count("<svg") == 3 and "Trades" in page


def test_sharpe_sortino_and_drawdown_recomputed_from_the_jsons_equity(tmp_path: Path, app_home: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Anyone can check the figures: the JSON carries [time, equity, cash] at every bar, and the
    standard formulas (README: backtest metrics) give back what the report says. Sortino's
    downside deviation is over every bar (min(r, 0)^2), not over the losing bars only."""
    bars = _walk(1500, seed=7)
    csv = tmp_path / "bars.csv"
    write_bars_csv(csv, bars)
    from app.engine.settings import Settings
    from app.main import main

    app_home.mkdir(parents=True, exist_ok=True)
    Settings(risk_free_rate=0.04).save(app_home / "settings.json")
    out_json = tmp_path / "r.json"
    assert main(["--data-dir", str(app_home), "backtest", "--symbol", "TEST", "--csv", str(csv), "--timeframe",
                 "1m", "--strategy", "sma_cross", "--plain", "--json", str(out_json)]) == 0
    data = json.loads(out_json.read_text())
    m = data["metrics"]
    times = [row[0] for row in data["equity"]]
    eq = np.array([row[1] for row in data["equity"]])
    cash = np.array([row[2] for row in data["equity"]])
    assert len(eq) == 1500 and times == sorted(times) and (cash >= 0).all()
    assert m["risk_free_rate"] == 0.04, "the saved setting is the one used"
    n = 390 * 252  # 1-minute bars in a year
    r = np.diff(eq) / eq[:-1] - ((1 + m["risk_free_rate"]) ** (1 / n) - 1)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std() * np.sqrt(n), rel=1e-9)
    assert m["sortino"] == pytest.approx(r.mean() / np.sqrt((np.minimum(r, 0) ** 2).mean()) * np.sqrt(n), rel=1e-9)
    assert m["max_drawdown"] == pytest.approx((eq / np.maximum.accumulate(eq) - 1).min(), rel=1e-12)
    assert m["calmar"] == pytest.approx(m["cagr"] / -m["max_drawdown"])
    assert abs(m["sortino"]) > abs(m["sharpe"]), "downside deviation is below the full deviation"
    capsys.readouterr()


def test_plain_mode_never_spends_more_than_the_cash_when_the_open_gaps_up() -> None:
    """Sized on the decision bar's close and filled at the next open: an open above that close
    once took the cash below zero (down to -$529k on PLTR). The fill now buys what the cash
    pays for, and the rest is cancelled."""
    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    closes = [14.0 - 0.1 * i for i in range(40)] + [10.0 + 0.1 * i for i in range(160)]
    bars = []
    for i, c in enumerate(closes):
        o = c * (1.08 if i % 7 == 0 else 1.0)  # gaps up now and then
        bars.append(Bar("TEST", t0 + timedelta(minutes=i), o, max(o, c) + 0.05, min(o, c) - 0.05, c, 1000.0))
    res = run_backtest(bars, BacktestConfig(symbol="TEST", timeframe="1m", strategy="sma_cross", plain=True,
                                            commission_per_share=0.005))
    assert (res.cash >= -1e-6).all(), f"cash went to {res.cash.min():,.2f}"
    assert res.held.max() > 0, "it bought"


def test_undefined_metrics_say_n_a_and_a_position_open_at_the_end_is_said(tmp_path: Path, app_home: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A buy that never closes once printed "win rate 0.0%" beside a +1020% return."""
    from app.main import main

    t0 = datetime(2024, 1, 2, tzinfo=UTC)
    closes = [14.0 - 0.1 * i for i in range(40)] + [10.0 + 0.1 * i for i in range(160)]  # down, then up: one buy
    bars = [Bar("TEST", t0 + timedelta(minutes=i), c, c + 0.05, c - 0.05, c, 1000.0) for i, c in enumerate(closes)]
    csv = tmp_path / "up.csv"
    write_bars_csv(csv, bars)
    out_json = tmp_path / "r.json"
    assert main(["--data-dir", str(app_home), "backtest", "--symbol", "TEST", "--csv", str(csv), "--timeframe",
                 "1m", "--strategy", "sma_cross", "--plain", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    m = json.loads(out_json.read_text())["metrics"]
    assert m["trades"] == 0 and m["open_positions"] == 1 and m["total_return"] > 0
    assert m["win_rate"] is None and m["avg_win"] is None, "undefined: null in the JSON, not 0"
    assert "win rate n/a" in out and "open at the end: 1 position(s), marked to market" in out


def test_cli_windows_and_commission_modes(tmp_path: Path, app_home: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    bars = _walk(1200, seed=8)
    csv = tmp_path / "bars.csv"
    write_bars_csv(csv, bars)
    base = ["--data-dir", str(app_home), "backtest", "--symbol", "TEST", "--csv", str(csv), "--timeframe",
            "1m", "--plain"]
    assert main(base + ["--commission", "0.001", "--commission-mode", "fraction"]) == 0
    with_fees = capsys.readouterr().out
    assert main(base) == 0
    without = capsys.readouterr().out
    assert with_fees != without, "a commission changes the result"
    assert "win rate, profit factor and the trades' P&L are before them" in with_fees
    assert "before them" not in without
    assert main(base + ["--start", "2030-01-01"]) == 2
    assert "fewer than two bars" in capsys.readouterr().err
    assert main(base + ["--start", "01/02/2024"]) == 2
    assert "is not a date" in capsys.readouterr().err
    assert main(base + ["--cash", "-5"]) == 2
    assert main(base[:-1] + ["--strategy", "ensemble"]) == 2


def test_cli_refuses_a_bad_window(tmp_path: Path, app_home: Path) -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(app_home), "backtest",
                           "--csv", str(tmp_path / "missing.csv")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


def test_a_backtest_leaves_the_desks_trade_log_alone(tmp_path: Path, app_home: Path) -> None:
    bars = _walk(800, seed=5)
    csv = tmp_path / "bars.csv"
    write_bars_csv(csv, bars)
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--data-dir", str(app_home), "backtest",
                           "--symbol", "TEST", "--csv", str(csv), "--timeframe", "1m", "--plain"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    trades = int(proc.stdout.split(" trades in ")[0].rsplit(" ", 1)[1])
    assert trades > 5
    logged = "".join(f.read_text() for f in (app_home / "logs").glob("*.log")) if (app_home / "logs").exists() else ""
    assert "BUY" not in logged and "SELL" not in logged, "simulated fills are not the desk's trades"
    assert "BUY" not in proc.stderr


def test_momentum_strategy_trades_through_the_engine() -> None:
    bars = simulated_sessions(10, seed=2, end=datetime(2025, 9, 1, tzinfo=UTC))
    res = run_backtest(bars, BacktestConfig(symbol="PLTR", timeframe="5m", strategy="momentum"))
    assert res.trades, "momentum trades on trending simulated days"
    assert any("momentum is UNCALIBRATED" in n for n in res.notes), "its P(up) is labelled for what it is"
    assert all(t.qty * t.entry_price <= 100_000 * 0.2 + 1e-6 for t in res.trades), "risk-sized, not whole cash"


@pytest.mark.parametrize("name, timeframe", [("SPY_5m_2024-03-26_2025-04-02.csv", "5m"),
                                             ("PLTR_1d_2020-09-30_2026-03-31_merged.csv", "1d"),
                                             ("daily/TSLA_1d_2020-01-02_2026-02-13_yf_adjusted.csv", "1d")])
def test_real_bars_trade_for_trade_with_backtesting_py(shared_data: Path, name: str, timeframe: str) -> None:
    """The issue's real files (565 SPY 5-minute trades, 35 PLTR and 42 TSLA daily): sizes matched on
    0 of 31 PLTR trades when the app sized on the decision bar's close."""
    from app.engine.data.portfolio import load_portfolio

    bars, _ = load_portfolio([str(shared_data / name)], "X", timeframe, keep_extended=True)
    ours = run_backtest(bars, BacktestConfig(symbol=bars[0].symbol, timeframe=timeframe, cash=1_000_000,
                                             plain=True))
    stats, _ = reference_backtest(bars)
    mine = [(t.entry_time.replace(tzinfo=None), t.exit_time.replace(tzinfo=None), t.qty) for t in ours.trades]
    assert mine == [(a, b, q) for a, b, _, _, q in _reference_trades(bars)]
    assert ours.metrics["total_return"] * 100 == pytest.approx(stats["Return [%]"], rel=1e-9)  # type: ignore[index]
    assert ours.metrics["max_drawdown"] * 100 == pytest.approx(stats["Max. Drawdown [%]"],  # type: ignore[index]
                                                               rel=1e-9)


def _cli(app_home: Path, csv: Path, *extra: str) -> tuple[int, dict, str]:  # type: ignore[type-arg]
    from app.main import main

    out_json = csv.with_suffix(".json")
    code = main(["--data-dir", str(app_home), "backtest", "--symbol", "TEST", "--csv", str(csv), "--timeframe",
                 "1m", "--json", str(out_json), *extra])
    return code, json.loads(out_json.read_text()) if code == 0 else {}, ""


def test_backtests_use_the_saved_settings_and_costs_unless_a_flag_says_otherwise(
        tmp_path: Path, app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The desk's simulated broker charges 2 bps; a backtest at 0 once turned -15.7% into +1.5%.
    Thresholds too: momentum made the same 28 trades at a saved threshold of 0.55 as at 0.80."""
    from app.engine.settings import Settings

    bars = _walk(3000, seed=9)
    csv = tmp_path / "bars.csv"
    write_bars_csv(csv, bars)
    app_home.mkdir(parents=True, exist_ok=True)
    code, data, _ = _cli(app_home, csv, "--strategy", "sma_cross", "--plain")
    out = capsys.readouterr().out
    assert code == 0 and data["settings_used"]["slippage_bps"] == 2.0, "the saved setting's 2 bps by default"
    assert "costs: slippage 2 bps a fill, commission $0 a share" in out
    first = data["trades"][0]
    opens = {b.time.isoformat(): b.open for b in bars}
    assert first["entry_price"] == pytest.approx(opens[first["entry_time"]] * 1.0002), "bought 2 bps above the open"
    code, data, _ = _cli(app_home, csv, "--strategy", "sma_cross", "--plain", "--slippage-bps", "0",
                         "--commission", "0.005")
    assert data["settings_used"]["slippage_bps"] == 0.0 and data["settings_used"]["commission_per_share"] == 0.005
    assert "commission $0.005 a share" in capsys.readouterr().out

    counts = []
    for threshold in (0.55, 0.95):
        Settings(auto_threshold=threshold, approval_threshold=0.5).save(app_home / "settings.json")
        code, data, _ = _cli(app_home, csv, "--strategy", "momentum", "--plain")
        assert code == 0 and data["settings_used"]["rules"].startswith("plain")
        counts.append(data["metrics"]["trades"])
    assert counts[0] > counts[1], f"a lower saved threshold trades more: {counts}"
    Settings(stop_loss_pct=0.05, max_positions=3).save(app_home / "settings.json")
    code, data, _ = _cli(app_home, csv, "--strategy", "momentum")
    assert data["settings_used"]["stop_loss_pct"] == 0.05 and data["settings_used"]["max_positions"] == 3
    assert "stop 5.0%" in capsys.readouterr().out


@pytest.mark.parametrize("flags, said", [(("--commission", "nan"), "not nan or inf"),
                                         (("--slippage-bps", "inf"), "not nan or inf"),
                                         (("--slippage-bps", "150"), "150 bps is 1.5% a fill: at most 100"),
                                         (("--commission", "-1"), "must not be negative"),
                                         (("--commission", "0.2", "--commission-mode", "fraction"), "20% of each"),
                                         (("--commission-mode", "fraction"), "needs --commission"),
                                         (("--cash", "1e30"), "--cash 1e+30: from 1,000 to 10,000,000"),
                                         (("--cash", "0.5"), "--cash 0.5: from 1,000 to 10,000,000"),
                                         (("--cash", "-5"), "--cash -5: from 1,000 to 10,000,000")])
def test_costs_a_backtest_cannot_mean_are_refused_in_one_line(tmp_path: Path, app_home: Path, flags: tuple[str, ...],
                                                              said: str, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "bars.csv"
    write_bars_csv(csv, _walk(100))
    code, _, _ = _cli(app_home, csv, *flags)
    said_out, err = capsys.readouterr()
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1
    assert said_out == ""  # refused before the file was read: a large file is not waited for


def test_the_command_line_says_what_cleaning_did_and_plays_one_bar_a_second(
        tmp_path: Path, app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A backtest's numbers come from the cleaned bars: what was dropped is said on screen and
    in the JSON. A row a fraction of a second after another is the same bar time (bars are
    played to the second): it once played as a second bar at the same time."""
    bars = _walk(600, seed=4)
    csv = tmp_path / "bars.csv"
    write_bars_csv(csv, bars)
    lines = csv.read_text().splitlines()  # the header, then bar k on line k + 1
    bad = bars[400]
    lines[401] = f"{bad.time.isoformat()},{bad.open},{bad.open * 0.5},{bad.low},{bad.close},{bad.volume}"
    b = bars[300]
    late = (b.time + timedelta(milliseconds=500)).isoformat()
    lines.insert(302, f"{late},{b.open * 1.01},{b.high * 1.01},{b.low * 1.01},{b.close * 1.01},{b.volume}")
    csv.write_text("\n".join(lines) + "\n")
    code, data, _ = _cli(app_home, csv, "--strategy", "sma_cross", "--plain")
    out = capsys.readouterr().out
    assert code == 0
    assert "TEST cleaning: 1 duplicate timestamps (kept the last)" in out
    assert "TEST cleaning: 1 bars with high/low outside open/close (dropped)" in out
    assert any("1 duplicate timestamps" in line for line in data["data"])
    times = [row[0] for row in data["equity"]]
    assert len(times) == len(set(times)) == 599, "one bar a time: the late row replaced its bar, the bad one went"
