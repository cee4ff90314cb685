"""The real window over a real engine in demo mode, driven like a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import pytest
from conftest import simulated_sessions, write_bars_csv
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from app.main import EXIT_ALREADY_RUNNING, build_window, main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def window(qtbot, app_home: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """A demo window; fails the test if its engine thread is left running."""
    marker = request.node.get_closest_marker("settings")
    app_home.mkdir(parents=True, exist_ok=True)
    if marker:
        (app_home / "settings.json").write_text(json.dumps(marker.args[0]))
    w = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(w)
    w.confirm = lambda title, text: True  # the user answers Yes to every confirmation
    w.show()
    qtbot.waitUntil(lambda: w.engine_ready, timeout=30_000)
    yield w
    w.close()
    assert not w.engine.thread.isRunning(), "engine thread left running after close"


def _pending(qtbot, w) -> str:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: bool(w.approvals.pending), timeout=60_000)
    return next(iter(w.approvals.pending))


def _pause(qtbot, w) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Q_ARG, QMetaObject

    QMetaObject.invokeMethod(w.worker, "setPaused", Qt.ConnectionType.BlockingQueuedConnection,
                             Q_ARG(bool, True))


def _resume(w) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import Q_ARG, QMetaObject

    QMetaObject.invokeMethod(w.worker, "setPaused", Qt.ConnectionType.QueuedConnection, Q_ARG(bool, False))


@pytest.mark.settings({"mode": "manual", "demo_speed": 3000})
def test_demo_session_advances_and_approval_opens_a_position(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    w = window
    start = len(w.chart.bars)
    assert start > 100, "the chart opens with history"
    assert w.status_bar.broker.text().strip() == "SIMULATED"
    assert "SIMULATED" in w.banner.text()
    qtbot.waitUntil(lambda: len(w.chart.bars) > start, timeout=30_000)
    buy = None
    while buy is None:  # the long-only book ignores SELL signals while flat
        sid = _pending(qtbot, w)
        _pause(qtbot, w)
        sig = w.approvals.pending[sid]
        if sig.side.value == "BUY":
            buy = sid
        else:
            qtbot.mouseClick(w.approvals.reject_button, Qt.MouseButton.LeftButton)
            _resume(w)
    row = list(w.approvals.pending).index(buy)
    w.approvals.table.selectRow(row)
    qtbot.mouseClick(w.approvals.approve_button, Qt.MouseButton.LeftButton)
    assert buy not in w.approvals.pending
    _resume(w)
    qtbot.waitUntil(lambda: w.positions.model_.rowCount() == 1, timeout=30_000)
    p = w.positions.model_.rows[0]
    assert p.symbol == "PLTR" and p.qty > 0
    assert p.stop_price == pytest.approx(p.avg_price * 0.97, rel=1e-3)
    assert w.orders.table.rowCount() >= 1

    # Flatten All empties the table (the user confirms).
    qtbot.mouseClick(w.flatten_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: w.positions.model_.rowCount() == 0, timeout=30_000)
    qtbot.waitUntil(lambda: w.trades.table.rowCount() >= 1, timeout=10_000)


@pytest.mark.settings({"mode": "manual", "demo_speed": 3000})
def test_reject_removes_the_signal(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    w = window
    sid = _pending(qtbot, w)
    _pause(qtbot, w)
    w.approvals.table.selectRow(list(w.approvals.pending).index(sid))
    qtbot.mouseClick(w.approvals.reject_button, Qt.MouseButton.LeftButton)
    assert sid not in w.approvals.pending
    assert w.positions.model_.rowCount() == 0


def test_auto_mode_needs_confirmation(qtbot, window) -> None:  # type: ignore[no-untyped-def]
    w = window
    w.confirm = lambda title, text: False
    qtbot.mouseClick(w.mode_switch.buttons[list(w.mode_switch.buttons)[2]], Qt.MouseButton.LeftButton)
    assert w.mode_switch.mode.value == "hybrid", "declining the confirmation keeps Hybrid"
    w.confirm = lambda title, text: True
    with qtbot.waitSignal(w.worker.statusChanged, timeout=10_000,
                          check_params_cb=lambda s: s.mode.value == "auto"):
        qtbot.mouseClick(w.mode_switch.buttons[list(w.mode_switch.buttons)[2]], Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "AUTO" in w.status_bar.mode.text(), timeout=5000)


def test_window_names_for_tests_and_accessibility(window) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QWidget

    for name in ("chart", "positionsTable", "approvalPanel", "approveButton", "rejectButton",
                 "modeSwitch", "flattenAllButton", "accountSummary", "statusBar"):
        assert window.findChild(QWidget, name) is not None, name


def test_screenshot_writes_a_picture(tmp_path: Path, app_home: Path) -> None:
    out = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--demo", "--data-dir", str(app_home),
                           "--screenshot", str(out), "--after", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    img = QImage(str(out))
    assert img.width() > 800 and img.height() > 500
    colors = {img.pixel(x, y) for x in range(0, img.width(), 37) for y in range(0, img.height(), 23)}
    assert len(colors) > 20, "the picture is blank"


def test_second_instance_does_not_start_an_engine(app_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from app.engine.instance import InstanceLock

    with InstanceLock(app_home / "engine.lock"):  # as if another instance were trading
        code = main(["--demo", "--data-dir", str(app_home)])
    assert code == EXIT_ALREADY_RUNNING
    assert "already running" in capsys.readouterr().err



def test_a_second_launch_brings_the_running_window_forward_and_exits_0(qtbot, app_home: Path,  # type: ignore[no-untyped-def]
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A second double-click once exited 3 with a line on a stderr nobody sees."""
    from PySide6.QtWidgets import QWidget

    import app.single_instance as single
    from app.engine.instance import InstanceLock

    raised: list[object] = []
    monkeypatch.setattr(single, "bring_forward", raised.append)
    running = QWidget()
    qtbot.addWidget(running)
    app_home.mkdir(parents=True, exist_ok=True)
    with InstanceLock(app_home / "engine.lock"):  # as if that window were trading
        single.serve_raise(running, app_home)
        assert main(["--demo", "--data-dir", str(app_home)]) == 0
        qtbot.waitUntil(lambda: raised == [running], timeout=5_000)
    other = app_home.parent / "other-home"
    assert single.server_name(other) != single.server_name(app_home), "each home its own window"


def test_a_refused_start_is_said_in_a_dialog_when_there_is_a_screen(app_home: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Double-clicked, the app has no terminal: a start it refuses must be said on the screen."""
    from PySide6.QtWidgets import QMessageBox

    import app.main as main_module

    shown: list[str] = []
    monkeypatch.setattr(main_module, "_has_screen", lambda: True)
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text: shown.append(f"{title}: {text}"))
    app_home.mkdir(parents=True, exist_ok=True)
    os.mkfifo(app_home / "settings.json")
    assert main(["--demo", "--data-dir", str(app_home)]) == 2
    assert len(shown) == 1 and shown[0].startswith("AI Trader cannot start: ") and "settings.json" in shown[0]
    os.unlink(app_home / "settings.json")
    from app.engine.instance import InstanceLock

    with InstanceLock(app_home / "engine.lock"):
        assert main(["--demo", "--data-dir", str(app_home)]) == EXIT_ALREADY_RUNNING
    assert len(shown) == 2 and "already running" in shown[1]
    assert "already running" in capsys.readouterr().err


def test_a_corrupted_database_stops_trading_and_is_kept(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    app_home.mkdir(parents=True, exist_ok=True)
    db = app_home / "trader.db"
    db.write_bytes(b"this is not a database, but it is the user's record" * 10)
    before = db.read_bytes()
    w = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(w)
    try:
        with qtbot.waitSignal(w.worker.failed, timeout=30_000) as blocker:
            pass
        assert "not a SQLite database" in blocker.args[0]
        assert "Move it aside" in w.status_bar.currentMessage()
        assert not w.engine_ready
        assert db.read_bytes() == before, "the file is never silently recreated"
    finally:
        w.close()


def test_replay_rehearses_recorded_bars_in_the_window(qtbot, app_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from datetime import datetime

    bars = simulated_sessions(3, seed=4, end=datetime(2025, 3, 1, tzinfo=UTC))
    csv = tmp_path / "day.csv"
    write_bars_csv(csv, bars)
    w = build_window(["--data-dir", str(app_home), "--replay", str(csv), "--speed", "30000"])
    qtbot.addWidget(w)
    try:
        qtbot.waitUntil(lambda: w.engine_ready, timeout=30_000)
        assert "REPLAY of day.csv" in w.banner.text()
        start = len(w.chart.bars)
        qtbot.waitUntil(lambda: len(w.chart.bars) > start + 10, timeout=30_000)
        assert w.chart.bars[-1].time.date() > bars[77].time.date(), "the sessions after the warm-up play"
        qtbot.waitUntil(lambda: w.status is not None and w.status.data_source == "replay", timeout=10_000)
        assert not (app_home / "trader.db").exists(), "a rehearsal never touches the trading record"
    finally:
        w.close()


def test_importing_a_file_named_spy_offers_spy_not_the_charted_symbol(  # type: ignore[no-untyped-def]
        qtbot, window, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QFileDialog, QInputDialog

    asked: list[tuple[str, list[str], int]] = []

    def get_item(parent, title, label, items, current=0, editable=True):  # type: ignore[no-untyped-def]
        asked.append((title, list(items), current))
        return items[current], True

    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: ("/data/SPY_15m_2024.csv", ""))
    monkeypatch.setattr(QInputDialog, "getItem", get_item)
    with qtbot.waitSignal(window.requestImport, timeout=2000) as sent:
        window.import_csv()
    from app.main_window import FROM_FILE

    assert sent.args == ["/data/SPY_15m_2024.csv", "", "15m"], "as the file says: the worker reads it"
    assert asked[0][1][:3] == [FROM_FILE, "SPY", "PLTR"], "the file's word first, its name, then the watchlist"


@pytest.mark.settings({"demo_speed": 20000})
def test_a_record_damaged_mid_session_turns_the_banner_red_and_stops_the_engine(  # type: ignore[no-untyped-def]
        qtbot, window, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.engine import records
    from app.engine.storage import Storage

    w = window
    with qtbot.waitSignal(w.worker.recordProblem, timeout=30_000) as blocker:
        monkeypatch.setattr(records, "CHECK_EVERY_S", 0.0)
        monkeypatch.setattr(Storage, "quick_check", lambda self: "database disk image is malformed")
    message, halted = blocker.args
    assert halted and "malformed" in message
    qtbot.waitUntil(lambda: "TRADING STOPPED" in w.banner.text(), timeout=5_000)
    assert "#b71c1c" in w.banner.styleSheet()
    assert "malformed" in w.banner.toolTip()
    qtbot.wait(300)
    seen = len(w.chart.bars)
    qtbot.wait(1000)
    assert len(w.chart.bars) == seen, "the engine went on after it stopped itself"
