"""The Backtest tab, driven like a user would: real widgets, real engine, real files."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from conftest import simulated_sessions, write_bars_csv
from PySide6.QtCore import Qt, QThread, QTimer
from PySide6.QtWidgets import QFileDialog, QWidget

from app.main import build_window
from app.widgets.backtest_tab import BacktestTab, format_metric


@pytest.fixture(scope="module")
def session_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 NYSE sessions of simulated 5-minute PLTR bars."""
    return write_bars_csv(tmp_path_factory.mktemp("bt") / "pltr-5m.csv", simulated_sessions(30, seed=11))


@pytest.fixture(scope="module")
def long_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """250,000 one-minute bars round the clock: ten seconds of backtest or more."""
    n = 250_000
    rng = np.random.default_rng(3)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.004, n)))
    open_ = np.r_[close[0], close[:-1]]
    high, low = np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999
    start = int(datetime(2024, 1, 2, tzinfo=UTC).timestamp())
    path = tmp_path_factory.mktemp("bt") / "long-1m.csv"
    path.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"{start + 60 * i},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},1000\n"
        for i, (o, h, lo, c) in enumerate(zip(open_, high, low, close))))
    return path


@pytest.fixture
def tab(qtbot):  # type: ignore[no-untyped-def]
    """A Backtest tab on its own; fails the test if its thread is left running."""
    w = BacktestTab("PLTR", "5m")
    qtbot.addWidget(w)
    w.resize(1200, 420)
    w.show()
    yield w
    w.shutdown()
    assert not w.worker.thread.isRunning(), "backtest thread left running"
    assert w.job.process is None or not w.job.process.is_alive(), "backtest process left running"


def _run(qtbot, tab: BacktestTab, timeout: int = 60_000) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(tab.runFinished, timeout=timeout):
        qtbot.mouseClick(tab.run_button, Qt.MouseButton.LeftButton)


def _metric(tab: BacktestTab, name: str) -> str:
    t = tab.metrics_table
    for r in range(t.rowCount()):
        if t.item(r, 0).text() == name:
            return t.item(r, 1).text()
    raise AssertionError(f"no metric {name!r}")


def test_sma_cross_run_shows_metrics_trades_and_curves(qtbot, tab: BacktestTab, session_csv: Path) -> None:  # type: ignore[no-untyped-def]
    tab.csv_edit.setText(str(session_csv))
    tab.strategy_box.setCurrentText("sma_cross")
    tab.plain_box.setChecked(True)
    assert tab.run_button.isEnabled() and not tab.cancel_button.isEnabled()
    _run(qtbot, tab)
    assert tab.error == "", tab.error
    o = tab.outcome
    assert o is not None and o.config.strategy == "sma_cross" and o.config.plain
    trades = o.metrics["trades"]
    assert trades > 5
    assert tab.trades_model.rowCount() == trades == int(_metric(tab, "trades"))
    assert _metric(tab, "total return").endswith("%")
    assert _metric(tab, "final equity").startswith("$")
    x, y = tab.equity_curve.getOriginalDataset()
    assert len(y) == o.bars == 30 * 78
    assert np.allclose(y, o.equity)
    _, dd = tab.dd_curve.getOriginalDataset()
    assert dd.max() <= 0 and dd.min() == pytest.approx(o.metrics["max_drawdown"] * 100)
    assert tab.progress.value() == 100
    assert f"{30 * 78:,} bars" in tab.status.text() and f"{trades} trades" in tab.status.text()
    assert "costs: slippage 0 bps a fill, commission $0 a share" in tab.status.text(), "the costs used, shown"
    assert "plain: whole cash per trade" in tab.status.text()
    assert tab.run_button.isEnabled() and not tab.cancel_button.isEnabled() and tab.export_button.isEnabled()
    assert tab.trades_model.index(0, 0).data() == "PLTR"
    first = tab.trades_model.index(0, 1).data()
    assert first.startswith("20"), "entry time shown"


def test_a_portfolio_of_files_shows_the_portfolio_and_each_symbol(qtbot, tab: BacktestTab,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    from test_backtest_portfolio import portfolio_bars

    bars = portfolio_bars(sessions=6, symbols=("AAA", "BBB"))
    a = write_bars_csv(tmp_path / "a.csv", [b for b in bars if b.symbol == "AAA"])
    b = write_bars_csv(tmp_path / "BBB_5m.csv", [b for b in bars if b.symbol == "BBB"])
    tab.csv_edit.setText(f"AAA={a}; {b}")
    _run(qtbot, tab)
    assert not tab.error, tab.error
    o = tab.outcome
    headers = [tab.metrics_table.horizontalHeaderItem(c).text() for c in range(tab.metrics_table.columnCount())]
    assert headers == ["Metric", "Portfolio", "AAA", "BBB"]
    assert set(o.per_symbol) == {"AAA", "BBB"} and o.bars == len(bars) and len(o.equity) == len(bars) // 2
    symbols = {tab.trades_model.index(r, 0).data() for r in range(tab.trades_model.rowCount())}
    assert symbols == {"AAA", "BBB"}
    assert "Each symbol" in o.html
    tab.csv_edit.setText(str(b))  # one file that names its symbol: the file's word, not the box's PLTR
    _run(qtbot, tab)
    assert {tab.trades_model.index(r, 0).data() for r in range(tab.trades_model.rowCount())} == {"BBB"}


def test_cancel_stops_a_long_run(qtbot, tab: BacktestTab, long_csv: Path) -> None:  # type: ignore[no-untyped-def]
    tab.csv_edit.setText(str(long_csv))
    tab.timeframe_box.setCurrentText("1m")
    tab.plain_box.setChecked(True)
    qtbot.mouseClick(tab.run_button, Qt.MouseButton.LeftButton)
    assert tab.running and tab.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: tab.progress.maximum() == 100 and tab.progress.value() >= 2, timeout=60_000)
    t0 = time.monotonic()
    with qtbot.waitSignal(tab.runFinished, timeout=10_000):
        qtbot.mouseClick(tab.cancel_button, Qt.MouseButton.LeftButton)
    assert time.monotonic() - t0 < 3.0, "cancel takes effect at the next progress check"
    assert tab.outcome is None
    assert tab.status.text().startswith("Cancelled") and "of 250000" in tab.status.text()
    assert tab.progress.value() < 90
    assert tab.run_button.isEnabled() and not tab.cancel_button.isEnabled()


@pytest.mark.parametrize("content, expected", [
    ("hello,world\n1,2\n", "lacks required column"),
    (None, "no such file"),
    ("timestamp,open,high,low,close,volume\n", "no data rows"),
])
def test_a_bad_csv_is_an_error_in_the_tab(qtbot, tab: BacktestTab, tmp_path: Path, content: str | None,  # type: ignore[no-untyped-def]
                                          expected: str) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    tab.csv_edit.setText(str(path))
    _run(qtbot, tab)
    assert expected in tab.error
    assert tab.status.text().startswith("Error:") and expected in tab.status.text()
    assert "Traceback" not in tab.status.text()
    assert "ef5350" in tab.status.styleSheet(), "errors are shown in red"
    assert tab.outcome is None and tab.run_button.isEnabled()


def test_a_strategy_not_available_says_so(qtbot, tab: BacktestTab, session_csv: Path) -> None:  # type: ignore[no-untyped-def]
    tab.csv_edit.setText(str(session_csv))
    tab.strategy_box.setCurrentText("ensemble")
    _run(qtbot, tab)
    text = tab.status.text()  # no trained model in a fresh app home: said in words, in the tab
    assert text.startswith("Error:") and "ensemble" in text and "Traceback" not in text


def test_export_writes_the_html_report(qtbot, tab: BacktestTab, session_csv: Path, tmp_path: Path,  # type: ignore[no-untyped-def]
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tab.csv_edit.setText(str(session_csv))
    tab.strategy_box.setCurrentText("rules")
    _run(qtbot, tab)
    out = tmp_path / "report.html"
    # The user picks report.html in the save dialog.
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "")))
    qtbot.mouseClick(tab.export_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: tab.status.text().startswith("Report written"), timeout=30_000)
    assert str(out) in tab.status.text()
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.count("<svg") == 3 and "rules" in page
    assert "costs: slippage 0 bps a fill" in page and "rules: trades at confidence &gt;= 0.80" in page
    tab.export_html(str(tmp_path / "missing" / "r.html"))  # a folder that does not exist
    qtbot.waitUntil(lambda: tab.status.text().startswith("Error: cannot write"), timeout=30_000)


def test_metric_formats() -> None:
    assert format_metric("total_return", 0.1234) == "+12.34%"
    assert format_metric("max_drawdown", -0.05) == "-5.00%"
    assert format_metric("final_equity", 101234.5) == "$101,234.50"
    assert format_metric("avg_loss", -147.5) == "-$147.50"
    assert format_metric("sharpe", float("nan")) == "n/a"
    assert format_metric("profit_factor", float("inf")) == "∞"
    assert format_metric("trades", 1234) == "1,234"


def test_the_window_stays_responsive_while_a_backtest_runs(qtbot, app_home: Path, long_csv: Path) -> None:  # type: ignore[no-untyped-def]
    """The demo market keeps replaying and the GUI thread keeps ticking during a long backtest."""
    app_home.mkdir(parents=True, exist_ok=True)
    w = build_window(["--demo", "--data-dir", str(app_home), "--speed", "3000"])
    qtbot.addWidget(w)
    try:
        w.show()
        qtbot.waitUntil(lambda: w.engine_ready, timeout=30_000)
        tab = w.findChild(QWidget, "backtestTab")
        assert tab is w.backtest_tab and w.tabs.indexOf(tab) >= 0
        w.tabs.setCurrentWidget(tab)
        tab.csv_edit.setText(str(long_csv))
        tab.timeframe_box.setCurrentText("1m")
        tab.plain_box.setChecked(True)
        gaps: list[float] = []
        last = [time.perf_counter()]

        def tick() -> None:
            now = time.perf_counter()
            gaps.append(now - last[0])
            last[0] = now

        watchdog = QTimer()
        watchdog.timeout.connect(tick)
        watchdog.start(10)
        bars_before = len(w.chart.bars)
        qtbot.mouseClick(tab.run_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: tab.progress.maximum() == 100 and tab.progress.value() >= 10, timeout=60_000)
        last[0] = time.perf_counter()
        gaps.clear()
        qtbot.wait(1500)
        watchdog.stop()
        assert tab.running, "still running: the measurement covered the backtest"
        assert tab.job.thread() is not QThread.currentThread()
        assert len(w.chart.bars) > bars_before, "the demo market kept replaying"
        assert max(gaps) < 0.25, f"GUI thread stalled {max(gaps) * 1000:.0f} ms"
        with qtbot.waitSignal(tab.runFinished, timeout=10_000):
            tab.cancel()
    finally:
        w.close()
    assert not w.backtest_tab.worker.thread.isRunning(), "backtest thread left running after close"
    assert not w.backtest_tab.job.process.is_alive(), "backtest process left running after close"
    assert not w.engine.thread.isRunning()


def test_an_optimisation_shows_walk_forward_beside_in_sample_and_a_heatmap(qtbot, tab: BacktestTab,  # type: ignore[no-untyped-def]
                                                                          session_csv: Path, tmp_path: Path) -> None:
    tab.csv_edit.setText(str(session_csv))
    tab.strategy_box.setCurrentText("sma_cross")
    tab.plain_box.setChecked(True)
    tab.optimize_edit.setText("fast=5:15:5 slow=20:30:10")
    tab.folds_box.setValue(2)
    _run(qtbot, tab, timeout=120_000)
    assert tab.error == "", tab.error
    opt = tab.outcome.optimization
    assert opt is not None and opt["combinations"] == 6 and len(opt["walk_forward"]["folds"]) == 2
    assert (tab.heatmap.rowCount(), tab.heatmap.columnCount()) == (2, 3)
    assert tab.heatmap.horizontalHeaderItem(0).text() == "5" and tab.heatmap.verticalHeaderItem(1).text() == "slow 30"
    assert tab.result_tabs.tabText(2) == "Heatmap (fast across, slow down)"
    cells = [tab.heatmap.item(i, j).text() for i in range(2) for j in range(3)]
    assert all(c for c in cells), "every combination was run and scored"
    assert tab.result_tabs.currentWidget() is tab.heatmap, "the heatmap is shown"
    assert tab.metrics_table.horizontalHeaderItem(2).text().startswith("IN-SAMPLE fast=")
    text = tab.status.text()
    assert "Walk-forward (out of sample, 2 folds): return" in text and "IN-SAMPLE best (fast=" in text
    x, y = tab.equity_curve.getOriginalDataset()
    assert len(y) == len(opt["walk_forward"]["equity"]), "the curve is the stitched out-of-sample equity"
    assert "Heatmap: IN-SAMPLE sharpe" in tab.outcome.html
    assert any(label.text == "walk-forward (out of sample)" for _, label in tab.equity_plot.legend.items)
