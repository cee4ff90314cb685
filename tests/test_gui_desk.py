"""The desk around the engine: notifications, shortcuts, tooltips, chart overlays and
timeframes, and the desktop launcher."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractSpinBox,
    QComboBox,
    QDockWidget,
    QLineEdit,
    QMainWindow,
    QTabBar,
    QWidget,
)

from app.engine.events import AlertEvent, SignalEvent
from app.engine.types import Bar, Order, OrderStatus, OrderType, Side, SignalStatus, Trade, TradingMode, TradingSignal
from app.main import build_window
from app.widgets.chart import CandleChart
from app.widgets.chart_series import BarSeries, bollinger, ema
from app.widgets.notifications import MIN_INTERVAL_S, ApprovalNotifier
from app.widgets.panels import ApprovalPanel

T0 = datetime(2025, 3, 3, 14, 30, tzinfo=UTC)  # a Monday, 09:30 New York


@pytest.fixture
def window(qtbot, app_home: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A demo window; fails the test if a thread of it is left running."""
    app_home.mkdir(parents=True, exist_ok=True)
    marker = request.node.get_closest_marker("settings")
    if marker:
        (app_home / "settings.json").write_text(json.dumps(marker.args[0]))
    w = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(w)
    w.confirm = lambda title, text: True
    w.show()
    qtbot.waitUntil(lambda: w.engine_ready, timeout=30_000)
    yield w
    w.close()
    assert not w.engine.thread.isRunning(), "engine thread left running after close"
    assert not w.backtest_tab.worker.thread.isRunning(), "backtest thread left running after close"


def _bars(n: int, start: datetime = T0, minutes: int = 5, seed: int = 2) -> list[Bar]:
    rng = np.random.default_rng(seed)
    close = 30 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.r_[close[0], close[:-1]]
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    vol = rng.integers(1000, 5000, n).astype(float)
    return [Bar("PLTR", start + timedelta(minutes=minutes * i), *map(float, row))
            for i, row in enumerate(zip(open_, high, low, close, vol))]


def _signal(sid: str = "s1", side: Side = Side.BUY) -> TradingSignal:
    """A pending signal the running demo's clock cannot expire while the test acts on it."""
    return TradingSignal("PLTR", side, 0.75, 25.5, T0, T0 + timedelta(days=36_500), ("test",), (), sid)


# ------------------------------------------------------------ notifications
@pytest.mark.settings({"mode": "manual", "demo_speed": 3000})
def test_the_approval_dock_counts_pending_signals(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    w = window
    assert w.approval_dock.windowTitle() == "Signals awaiting approval"
    qtbot.waitUntil(lambda: bool(w.approvals.pending), timeout=60_000)
    qtbot.waitUntil(lambda: w.approval_dock.windowTitle().endswith(f"({len(w.approvals.pending)})"), timeout=5000)
    assert w.notifier.notified >= 1 and "PLTR" in w.notifier.last_message
    assert w.notifier.tray is None and not w.notifier.sound, "offscreen: no tray balloon, no beep"


@pytest.mark.settings({"mode": "manual", "demo_speed": 3000})
def test_a_waiting_signal_pauses_the_demo_and_the_window_says_so(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    w = window
    qtbot.waitUntil(lambda: bool(w.approvals.pending), timeout=60_000)
    qtbot.waitUntil(lambda: w.pause_button.text() == "Resume", timeout=5_000)
    assert w.pause_button.isChecked() and "awaits your approval" in w.status_bar.currentMessage()
    assert w.approvals.table.item(0, 1).text() == "paused", "time left: nothing ages while it waits"
    waiting = set(w.approvals.pending)
    with qtbot.waitSignal(w.engine.worker.pausedChanged, timeout=5_000) as resumed:
        w.pause_button.click()  # Resume: the user lets it run on
    assert resumed.args == [False, ""]
    qtbot.waitUntil(lambda: not waiting & set(w.approvals.pending), timeout=30_000)  # they expired at their time


def test_time_left_is_in_the_users_seconds_not_simulated_minutes(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = ApprovalPanel()
    qtbot.addWidget(panel)
    sig = TradingSignal("PLTR", Side.BUY, 0.75, 25.5, T0, T0 + timedelta(minutes=5), ("test",), (), "s1")
    panel.on_signal(SignalEvent(sig, SignalStatus.PENDING))
    panel.tick(T0, {"PLTR": 25.5})
    assert panel.table.item(0, 1).text() == "5.0 min", "live: the clock is the wall's"
    panel.set_pace(600.0, False)
    assert panel.table.item(0, 1).text() == "0 s", "at 600x five simulated minutes are half a second"
    panel.set_pace(10.0, False)
    assert panel.table.item(0, 1).text() == "30 s"
    panel.set_pace(600.0, True)
    assert panel.table.item(0, 1).text() == "paused"


@pytest.mark.parametrize("answer", [True, False])
def test_the_mode_comes_back_after_a_restart_and_auto_asks_first(qtbot, app_home: Path, answer: bool) -> None:  # type: ignore[no-untyped-def]
    """Auto once became Hybrid at every restart without a word; it must neither vanish nor
    resume trading unasked."""
    app_home.mkdir(parents=True, exist_ok=True)
    (app_home / "settings.json").write_text(json.dumps({"mode": "manual"}))
    first = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(first)
    first.confirm = lambda title, text: True
    qtbot.waitUntil(lambda: first.engine_ready, timeout=30_000)
    assert first.mode_switch.mode.value == "manual"
    first.mode_switch.choose(TradingMode.AUTO)
    first.close()
    assert json.loads((app_home / "settings.json").read_text())["mode"] == "auto", "the choice is kept"
    asked: list[str] = []
    again = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(again)
    again.confirm = lambda title, text: asked.append(text) or answer
    assert again.worker.settings.mode == "hybrid", "the engine starts in Hybrid until the user says"
    qtbot.waitUntil(lambda: bool(asked), timeout=30_000)
    assert "was in Auto when it last closed" in asked[0]
    qtbot.waitUntil(lambda: again.mode_switch.mode.value == ("auto" if answer else "hybrid"), timeout=5_000)
    qtbot.waitUntil(lambda: again.worker.ctx.bot.mode.value == ("auto" if answer else "hybrid"), timeout=5_000)
    assert json.loads((app_home / "settings.json").read_text())["mode"] == ("auto" if answer else "hybrid")
    again.close()


def test_notifier_counts_and_rate_limits(qtbot) -> None:  # type: ignore[no-untyped-def]
    win = QMainWindow()
    qtbot.addWidget(win)
    dock = QDockWidget("Signals awaiting approval", win)
    now = [100.0]
    n = ApprovalNotifier(dock, win, clock=lambda: now[0])
    n.set_count(2)
    assert dock.windowTitle() == "Signals awaiting approval (2)"
    assert n.notify_pending(_signal("a"))
    assert not n.notify_pending(_signal("b")), "a second signal moments later stays quiet"
    assert n.notified == 1 and "BUY PLTR at 25.50" in n.last_message
    now[0] += MIN_INTERVAL_S + 0.1
    assert n.notify_pending(_signal("c")) and n.notified == 2
    n.set_count(0)
    assert dock.windowTitle() == "Signals awaiting approval"


def test_the_counter_follows_the_panel(window) -> None:  # type: ignore[no-untyped-def]
    from app.engine.events import SignalEvent

    w = window  # driven the way the worker's signals drive it; no events run in between
    w.on_signal(SignalEvent(_signal("x1"), SignalStatus.PENDING))
    w.on_signal(SignalEvent(_signal("x2", Side.SELL), SignalStatus.PENDING))
    n = len(w.approvals.pending)
    assert n >= 2 and w.approval_dock.windowTitle().endswith(f"({n})")
    w.on_signal(SignalEvent(_signal("x1"), SignalStatus.EXPIRED))
    assert w.approval_dock.windowTitle().endswith(f"({n - 1})")


# ------------------------------------------------------------ shortcuts and tooltips
@pytest.mark.settings({"backtest_retrain_bars": 1500, "risk_free_rate": 0.03, "commission_per_share": 0.005})
def test_the_backtest_tab_starts_from_the_saved_settings(window) -> None:  # type: ignore[no-untyped-def]
    """Costs, thresholds and risk rules as the desk trades them: a run at 0 bps once turned -15.7% into +1.5%."""
    tab = window.backtest_tab
    req = tab.request()
    assert tab.retrain_box.value() == 1500 and req.settings["risk_free_rate"] == 0.03
    assert (req.slippage_bps, req.commission, req.commission_mode) == (2.0, 0.005, "per_share")
    assert req.settings["auto_threshold"] == 0.80 and req.settings["stop_loss_pct"] == 0.03
    tab.slippage_box.setValue(5.0)  # the user's own choice for this run stays while other settings change
    window.apply_settings(window.settings.updated(backtest_retrain_bars=3000, risk_free_rate=0.05))
    assert tab.retrain_box.value() == 3000 and tab.request().settings["risk_free_rate"] == 0.05
    assert tab.request().slippage_bps == 5.0
    window.apply_settings(window.settings.updated(slippage_bps=4.0))
    assert tab.request().slippage_bps == 4.0, "a newly saved cost is the new starting point"
    assert json.loads((window.paths.settings).read_text())["backtest_retrain_bars"] == 3000


def test_keyboard_shortcuts_are_wired(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    w = window
    keys = {s.key().toString() for s in w.findChildren(QShortcut)}
    assert {"Ctrl+Return", "Ctrl+Enter", "Ctrl+Backspace"} <= keys
    assert w.flatten_button.shortcut() == QKeySequence("Ctrl+Shift+F")
    assert [b.shortcut().toString() for b in w.mode_switch.buttons.values()] == ["Ctrl+1", "Ctrl+2", "Ctrl+3"]
    # Pressed like a user would (through the window, where Qt looks shortcuts up).
    w.activateWindow()
    qtbot.waitUntil(lambda: w.isActiveWindow(), timeout=5000)

    def press(key: Qt.Key, mods: Qt.KeyboardModifier = Qt.KeyboardModifier.ControlModifier) -> None:
        qtbot.keyClick(w.windowHandle(), key, mods)

    press(Qt.Key.Key_1)
    qtbot.waitUntil(lambda: w.mode_switch.mode.value == "manual", timeout=2000)
    press(Qt.Key.Key_2)
    qtbot.waitUntil(lambda: w.mode_switch.mode.value == "hybrid", timeout=2000)
    from app.engine.events import SignalEvent

    w.on_signal(SignalEvent(_signal("k1"), SignalStatus.PENDING))
    w.approvals.table.selectRow(list(w.approvals.pending).index("k1"))
    with qtbot.waitSignal(w.approvals.rejectRequested, timeout=2000) as rejected:
        press(Qt.Key.Key_Backspace)
    assert rejected.args == ["k1"] and "k1" not in w.approvals.pending
    w.on_signal(SignalEvent(_signal("k2"), SignalStatus.PENDING))
    w.approvals.table.selectRow(list(w.approvals.pending).index("k2"))
    with qtbot.waitSignal(w.approvals.approveRequested, timeout=2000) as approved:
        press(Qt.Key.Key_Return)
    assert approved.args == ["k2"]
    # typing in a text field: Ctrl+Backspace deletes a word there, and rejects nothing
    w.on_signal(SignalEvent(_signal("k3"), SignalStatus.PENDING))
    field = w.watchlist.findChild(QLineEdit)
    field.setText("NVDA AMD")
    field.setFocus()
    qtbot.waitUntil(field.hasFocus, timeout=2000)
    rejects: list[str] = []
    w.approvals.rejectRequested.connect(rejects.append)
    press(Qt.Key.Key_Backspace)
    assert rejects == [] and "k3" in w.approvals.pending, "a signal rejected while the user typed"
    assert field.text() == "NVDA ", "the word behind the cursor is deleted, as in any text field"
    asked: list[str] = []
    w.confirm = lambda title, text: asked.append(title) is not None  # the user says No
    press(Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    qtbot.waitUntil(lambda: asked == ["Flatten all?"], timeout=2000)


def _qt_internal(widget: QWidget) -> bool:
    """Parts Qt builds inside its own widgets (dock title buttons, tab scrollers, spin-box editors)."""
    parent = widget.parentWidget()
    return (widget.objectName().startswith("qt_") or isinstance(parent, (QTabBar, QAbstractSpinBox))
            or (isinstance(parent, QComboBox) and isinstance(widget, QLineEdit)))


def test_every_control_has_a_tooltip(window) -> None:  # type: ignore[no-untyped-def]
    missing = []
    for cls in (QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox):
        for c in window.findChildren(cls):
            if not _qt_internal(c) and not c.toolTip().strip():
                missing.append(f"{type(c).__name__} {c.objectName() or getattr(c, 'text', lambda: '')()!r}")
    assert not missing, missing
    names = {c.objectName() for c in window.findChildren(QWidget)}
    assert {"flattenAllButton", "approveButton", "speedSelector", "overlay_ema", "chartTimeframe",
            "backtestRun", "backtestCsv", "backtestCash"} <= names, "the walk reached every part of the window"


# ------------------------------------------------------------ chart
def test_overlays_toggle_and_match_numpy(qtbot) -> None:  # type: ignore[no-untyped-def]
    chart = CandleChart()
    qtbot.addWidget(chart)
    chart.resize(900, 600)
    chart.show()
    bars = _bars(1500)
    chart.set_history(bars)
    closes = np.array([b.close for b in bars])
    assert chart.curves["sma10"].isVisible() and not chart.curves["ema12"].isVisible()
    chart.overlay_boxes["ema"].setChecked(True)
    chart.overlay_boxes["bb"].setChecked(True)
    assert chart.curves["ema26"].isVisible() and chart.curves["bb_up"].isVisible()
    x, y = chart.curves["ema26"].getOriginalDataset()
    assert x[-1] == len(bars) - 1
    assert y[-1] == pytest.approx(ema(closes, 26)[-1], rel=1e-6)
    _, up = chart.curves["bb_up"].getOriginalDataset()
    last20 = closes[-20:]
    assert up[-1] == pytest.approx(last20.mean() + 2 * last20.std())
    chart.overlay_boxes["bb"].setChecked(False)
    assert not chart.curves["bb_lo"].isVisible()
    chart.add_bars(tuple(_bars(1, start=bars[-1].time + timedelta(minutes=5), seed=9)))
    x, _ = chart.curves["ema12"].getOriginalDataset()
    assert x[-1] == len(bars), "overlays follow a new bar"


def test_timeframe_selector_aggregates_for_display(qtbot) -> None:  # type: ignore[no-untyped-def]
    chart = CandleChart(bar_minutes=5)
    qtbot.addWidget(chart)
    chart.show()
    bars = _bars(78 * 3)
    chart.set_history(bars)
    chart.add_signal_marker(bars[7].time, bars[7].close, "executed", key="sig")
    assert [chart.timeframe.itemText(i) for i in range(chart.timeframe.count())] == ["5m", "15m", "30m"]
    chart.timeframe.setCurrentIndex(1)
    assert chart.factor == 3 and len(chart.view) == 78
    first = chart.view.ohlcv[0]
    assert first[0] == bars[0].open and first[3] == bars[2].close
    assert first[1] == max(b.high for b in bars[:3]) and first[4] == sum(b.volume for b in bars[:3])
    assert chart.time_at(1) == bars[3].time
    assert chart.marker_items["executed"].data["x"][0] == 2, "bar 7 lives in the third 15-minute candle"
    # A forming bar inside the last bucket merges into it; the next bucket's bar adds a candle.
    nxt = _bars(2, start=bars[-1].time + timedelta(minutes=5), seed=5)
    chart.set_forming(nxt[0])
    assert len(chart.view) == 79
    chart.add_bars((nxt[0],))
    chart.set_forming(nxt[1])
    assert len(chart.view) == 79 and chart.view.ohlcv[-1][3] == nxt[1].close
    chart.timeframe.setCurrentIndex(2)
    assert len(chart.view) == 40 and chart.marker_items["executed"].data["x"][0] == 1


def test_the_chart_keeps_every_candle_of_a_long_history(qtbot) -> None:  # type: ignore[no-untyped-def]
    chart = CandleChart()
    qtbot.addWidget(chart)
    bars = _bars(100_000)
    chart.set_history(bars)
    assert len(chart.view) == 100_000 and np.isfinite(chart.view.ohlcv[0]).all()
    chart.price.setXRange(10, 170, padding=0)  # pan back to the start: candles are there
    assert chart.time_at(10) == bars[10].time


def test_a_chart_left_running_keeps_a_bounded_window_with_its_annotations(  # type: ignore[no-untyped-def]
        qtbot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars arriving for days (a demo at 100,000x): the chart keeps the newest, and the P(up)
    points and markers of the bars it keeps stay on their own bars."""
    from app.widgets import chart as chart_module

    monkeypatch.setattr(chart_module, "KEEP_BARS", 300)
    monkeypatch.setattr(chart_module, "TRIM_SLACK", 50)
    chart = CandleChart()
    qtbot.addWidget(chart)
    bars = _bars(2_000)
    chart.set_history(bars[:100])
    for k, b in enumerate(bars[100:], start=100):
        chart.add_bars((b,))
        chart.add_prediction(b.time, 0.5 + (k % 7) / 100)
        if k % 100 == 0:
            chart.add_signal_marker(b.time, b.close, "executed", key=f"s{k}")
        assert len(chart.bars) <= 350 and len(chart.series) == len(chart.bars)
    assert chart.bars[-1] == bars[-1] and len(chart.bars) >= 300
    first = chart.bars[0].time
    assert all(chart.time_at(x) is not None and chart.time_at(x) >= first for x in chart.pup_x)
    x = chart.pup_x[-1]
    assert chart.time_at(x) == bars[-1].time and chart.pup_y[-1] == pytest.approx(0.5 + (1999 % 7) / 100)
    kept = {key for key in chart._markers}
    assert kept == {f"s{k}" for k in range(100, 2_000, 100) if bars[k].time >= first}
    assert all(chart.time_at(i) == bars[int(key[1:])].time for key, (i, _, _) in chart._markers.items())


def test_bar_series_aggregation_matches_pandas_resample() -> None:
    pd = pytest.importorskip("pandas")
    bars = [b for i, b in enumerate(_bars(78 * 4, seed=4)) if i not in (5, 6, 100)]  # with gaps
    s = BarSeries(300)
    s.reset(bars[:40])
    for k in range(40, len(bars), 7):  # appended in pieces, viewed in between
        s.append(bars[k:k + 7])
        s.view(3), s.view(6)
    df = pd.DataFrame([(b.open, b.high, b.low, b.close, b.volume) for b in bars], columns=list("ohlcv"),
                      index=pd.DatetimeIndex([b.time for b in bars]))
    for factor in (3, 6):
        want = df.resample(f"{5 * factor}min").agg(
            {"o": "first", "h": "max", "l": "min", "c": "last", "v": "sum"}).dropna()
        got = s.view(factor)
        assert np.allclose(got.ohlcv, want.to_numpy())
        assert (got.times == want.index.as_unit("s").asi8).all()


def test_indicators_match_pandas() -> None:
    pd = pytest.importorskip("pandas")
    x = 50 + np.cumsum(np.random.default_rng(1).normal(0, 0.3, 3000))
    assert np.allclose(ema(x, 12), pd.Series(x).ewm(span=12, adjust=False).mean())
    mid, up, lo = bollinger(x, 20, 2.0)
    roll = pd.Series(x).rolling(20)
    assert np.allclose(up[19:], (roll.mean() + 2 * roll.std(ddof=0))[19:])
    assert np.isnan(mid[:19]).all()


# ------------------------------------------------------------ desktop launcher
def test_install_launcher_writes_this_checkouts_paths(tmp_path: Path) -> None:
    from app.desktop import ROOT, install_launcher

    path = install_launcher(home=tmp_path)
    assert path == tmp_path / ".local" / "share" / "applications" / "ai-trader.desktop"
    lines = path.read_text().splitlines()
    entries = dict(line.split("=", 1) for line in lines[1:] if "=" in line)
    assert lines[0] == "[Desktop Entry]"
    assert entries["Type"] == "Application" and entries["Name"] == "AI Trader"
    assert "Finance;" in entries["Categories"] and entries["Terminal"] == "false"
    python, main = entries["Exec"].split(" ")
    assert Path(python).is_absolute() and Path(python).exists()
    assert main == str(ROOT / "main.py") and Path(main).exists()
    assert entries["Icon"] == str(ROOT / "resources" / "icon.png") and Path(entries["Icon"]).exists()
    assert entries["Path"] == str(ROOT)
    assert oct(path.stat().st_mode & 0o777) == "0o644"


def test_install_desktop_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.desktop import add_desktop_parser, run_desktop_command

    parser = argparse.ArgumentParser()
    add_desktop_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["install-desktop", "--home", str(tmp_path)])
    assert run_desktop_command(args) == 0
    assert "ai-trader.desktop" in capsys.readouterr().out
    (tmp_path / "blocked").write_text("a file where a folder should be")
    assert run_desktop_command(parser.parse_args(["install-desktop", "--home", str(tmp_path / "blocked")])) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_exec_arguments_are_quoted_per_the_spec(tmp_path: Path) -> None:
    from app.desktop import exec_arg, launcher_text

    assert exec_arg("/opt/ai/python") == "/opt/ai/python"
    assert exec_arg("/home/me/My Apps/main.py") == '"/home/me/My Apps/main.py"'
    assert exec_arg('/a$b/"c"') == '"/a\\\\$b/\\\\"c\\\\""'
    assert exec_arg("/100%/x") == "/100%%/x"
    with pytest.raises(ValueError):
        exec_arg("/a\nb")
    text = launcher_text(Path("/p y/python"), Path("/q/main.py"), Path("/q/icon.png"), Path("/q"))
    assert 'Exec="/p y/python" /q/main.py' in text and "#" not in text


# ------------------------------------------------------------ a laptop screen
def _area(widget) -> int:  # type: ignore[no-untyped-def]
    return widget.width() * widget.height()


def test_the_window_fits_1280x720_with_the_chart_taking_most_of_it(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    """It once needed 918x837: the status bar fell off a 720-line screen, and the chart had 30%."""
    w = window
    hint = w.minimumSizeHint()
    assert hint.height() <= 680 and hint.width() <= 1280, f"minimum {hint.width()}x{hint.height()}"
    w.resize(1280, 720)
    qtbot.waitUntil(lambda: w.height() == 720, timeout=5_000)
    assert w.statusBar().isVisible() and w.statusBar().geometry().bottom() < 720, "the status bar is on screen"
    share = _area(w.chart) / _area(w)
    assert share >= 0.55, f"the chart has {share:.0%} of the window"
    assert w.record_filter.isVisible() and not w.orders.filter.isVisible(), "one filter, beside the record's tabs"


# ------------------------------------------------------------ notices
def test_every_result_is_kept_with_its_time_and_full_text(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    """A second flatten once overwrote the first's report in the status bar; a failed import never
    reached the Log tab; messages named settings by their internal names."""
    w = window
    w.on_flatten_report(["sold 10 PLTR at 25.10", "cancelled 1 stop"])
    w.on_flatten_report(["nothing to close"])
    long_error = "Import failed: bars.csv: cannot read bars.csv: C error: EOF inside string starting at row 7 " * 3
    w.on_alert(AlertEvent("error", long_error))
    w.notify("max_position_pct must be at most 1", "warning")
    texts = w.notices.texts()
    assert texts[3] == "Flatten all: sold 10 PLTR at 25.10 | cancelled 1 stop", "the first report is still there"
    assert texts[2] == "Flatten all: nothing to close"
    assert texts[1] == long_error, "the whole text, not 60 characters of it"
    assert texts[0] == '"Max position size" must be at most 1', "the label the settings dialog shows"
    qtbot.waitUntil(lambda: any("Import failed: bars.csv" in line for _, line in w.log_view.lines), timeout=5_000)
    assert w.statusBar().currentMessage().startswith('"Max position size"'), "the status bar shows the latest"
    assert w.notices.table.item(1, 1).text() == "error"


@pytest.mark.settings({"mode": "manual"})
def test_an_expired_signal_says_so(window) -> None:  # type: ignore[no-untyped-def]
    w = window
    w.on_signal(SignalEvent(_signal("gone"), SignalStatus.PENDING))
    w.on_signal(SignalEvent(_signal("gone"), SignalStatus.EXPIRED))
    assert "gone" not in w.approvals.pending
    assert w.notices.texts()[0].startswith("Signal expired: BUY PLTR at 25.50 (confidence 0.75) was not approved")


def test_a_restart_brings_back_the_chart_as_left_and_the_days_record(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    """Timeframe and overlays were lost at every restart, and today's orders and trades with them."""
    app_home.mkdir(parents=True, exist_ok=True)
    first = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(first)
    qtbot.waitUntil(lambda: first.engine_ready, timeout=30_000)
    first.chart.timeframe.setCurrentIndex(1)
    first.chart.overlay_boxes["sma"].setChecked(False)
    first.chart.overlay_boxes["bb"].setChecked(True)
    factor = first.chart.timeframe.currentData()
    first.close()
    again = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.engine_ready, timeout=30_000)
    assert again.chart.timeframe.currentData() == factor
    assert {n for n, b in again.chart.overlay_boxes.items() if b.isChecked()} == {"bb"}
    stop = Order("sim-stop-1", "PLTR", Side.SELL, 10, OrderType.STOP, OrderStatus.NEW, T0, stop_price=24.0)
    trade = Trade("PLTR", 10, T0, T0 + timedelta(minutes=30), 25.0, 25.5, 5.0, "exit on SELL signal")
    again.on_ready({"history": (), "notices": (), "orders": (stop,), "trades": (trade,)})
    assert again.orders.table.rowCount() >= 1 and again.orders.table.item(0, 1).text() == "PLTR"
    assert any(again.orders.table.item(r, c) and "24.00" in again.orders.table.item(r, c).text()
               for r in range(again.orders.table.rowCount()) for c in range(again.orders.table.columnCount()))
    assert again.trades.table.rowCount() == 1
    again.close()


def test_the_chart_tags_the_last_price_keeps_stops_in_view_and_crosses_the_mouse(qtbot) -> None:  # type: ignore[no-untyped-def]
    chart = CandleChart()
    qtbot.addWidget(chart)
    chart.resize(900, 500)
    chart.show()
    bars = _bars(120)
    chart.set_history(bars)
    assert chart.last_line.isVisible() and chart.last_line.value() == pytest.approx(bars[-1].close)
    assert chart.last_line.label.toPlainText() == f"{bars[-1].close:.2f}", "the tag says the last price"
    low = min(b.low for b in bars)
    chart.set_stops([(low * 0.9, False)])  # below every candle in view
    y0, y1 = chart.price.vb.viewRange()[1]
    assert y0 <= low * 0.9 <= y1, "the stop line is inside the view, not off its edge"
    centre = chart.price.vb.mapViewToScene(QPointF(100, (y0 + y1) / 2))
    chart._on_mouse(centre)
    assert chart.hline.isVisible() and chart.hline.value() == pytest.approx((y0 + y1) / 2, rel=1e-6)
    assert chart.hline.label.toPlainText() == f"{(y0 + y1) / 2:.2f}", "the crosshair says the price"
    assert chart.vline.value() == 100


# ------------------------------------------------------------ the order ticket
@pytest.mark.settings({"mode": "manual", "max_position_pct": 0.05})
def test_the_order_ticket_is_judged_by_the_risk_rules(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    """A buy bigger than the risk rules size is refused with the reason, in the ticket and the notices."""
    w = window
    qtbot.waitUntil(lambda: bool(w.chart_book.prices.get("PLTR")), timeout=30_000)
    keys = {s.key().toString() for s in w.findChildren(QShortcut)} | {
        a.shortcut().toString() for a in w.menuBar().actions()[0].menu().actions()}
    assert "Ctrl+T" in keys
    ticket = w.open_ticket()
    assert ticket.symbol.currentText() == "PLTR" and "broker stop at" in ticket.preview.text()
    ticket.quantity.setValue(1_000_000)
    ticket.send()
    qtbot.waitUntil(lambda: "refused" in ticket.answer.text(), timeout=10_000)
    assert "more than the" in ticket.answer.text() and "5% of equity in one position" in ticket.answer.text()
    assert w.notices.texts()[0].startswith("Order ticket: PLTR: refused")
    ticket.quantity.setValue(1)
    ticket.send()
    qtbot.waitUntil(lambda: "manual buy 1" in ticket.answer.text() or "refused" in ticket.answer.text(),
                    timeout=10_000)
    market_open = bool(w.status and w.status.market_open)
    assert ("manual buy 1" in ticket.answer.text()) == market_open, ticket.answer.text()
    ticket.close()


def test_every_tables_columns_can_be_hidden_and_stay_so_after_a_restart(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    """Positions hid Stop, P&L % and Trailing behind a scrollbar, and nothing could be shown or hidden."""
    app_home.mkdir(parents=True, exist_ok=True)
    first = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(first)
    qtbot.waitUntil(lambda: first.engine_ready, timeout=30_000)
    for name, view in first.column_tables().items():
        header = view.horizontalHeader()
        assert header.contextMenuPolicy() == Qt.ContextMenuPolicy.CustomContextMenu, name
    header = first.positions.horizontalHeader()
    header.customContextMenuRequested.emit(header.rect().center())
    menu = first.positions.property("columnMenu")
    actions = menu.actions()
    assert [a.text() for a in actions][:2] == ["Symbol", "Qty"]
    actions[1].setChecked(False)  # hide Qty
    assert header.isSectionHidden(1)
    header.resizeSection(0, 140)
    first.close()
    again = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(again)
    qtbot.waitUntil(lambda: again.engine_ready, timeout=30_000)
    kept = again.positions.horizontalHeader()
    assert kept.isSectionHidden(1) and kept.sectionSize(0) == 140, "hidden and sized as left"
    again.close()


def test_a_stop_line_dragged_on_the_chart_asks_the_engine(qtbot) -> None:  # type: ignore[no-untyped-def]
    chart = CandleChart()
    qtbot.addWidget(chart)
    chart.set_history(_bars(60))
    chart.set_stops([(29.0, False)])
    (line,) = chart.stop_lines
    assert line.movable
    line.setValue(29.4)
    with qtbot.waitSignal(chart.stopDragged) as blocker:
        line.sigPositionChangeFinished.emit(line)
    assert blocker.args == [29.0, 29.4]
    assert line.value() == 29.0, "the line stays where the stop is until the engine has moved it"


@pytest.mark.parametrize("confirmed", [True, False])
def test_a_stop_dragged_below_the_initial_stop_asks_first(qtbot, window, confirmed: bool) -> None:  # type: ignore[no-untyped-def]
    w = window
    w.entries = {"PLTR": 20.0}  # held at 20: the initial stop is 19.40
    asked: list[str] = []
    w.confirm = lambda title, text: asked.append(text) or confirmed
    sent: list[tuple[str, float, bool]] = []
    w.requestMoveStop.connect(lambda s, p, ok: sent.append((s, p, ok)))
    w.on_stop_dragged(19.4, 19.8)  # tighter: no question
    assert sent == [("PLTR", 19.8, False)] and not asked
    w.on_stop_dragged(19.8, 18.5)
    assert "below the initial stop 19.40" in asked[0]
    assert sent[1:] == ([("PLTR", 18.5, True)] if confirmed else [])
    if not confirmed:
        assert w.notices.texts()[0] == "PLTR: stop left at 19.80"
