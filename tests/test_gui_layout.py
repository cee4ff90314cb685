"""The desk on a laptop screen: what fits at 1280x720, what an approval shows, what a restart keeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from test_gui_desk import T0

from app.engine.events import SignalEvent
from app.engine.settings import Settings
from app.engine.types import Side, SignalStatus, TradingSignal
from app.widgets.panels import ApprovalPanel

ROOT = Path(__file__).resolve().parents[1]


def test_an_approval_shows_everything_to_decide_on_without_scrolling(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Behind a scrollbar in a seven-column table, the votes, the prices and the reasons went unread."""
    panel = ApprovalPanel()
    qtbot.addWidget(panel)
    panel.resize(290, 300)  # the right column's width at 1280x720
    panel.show()
    panel.set_account(Settings(), 100_000.0, 100_000.0)
    sig = TradingSignal("PLTR", Side.BUY, 0.76, 25.5, T0, T0 + timedelta(minutes=5),
                        ("fast SMA crossed above slow", "volume up"), (("lstm", 0.74), ("momentum", 0.8)), "card1",
                        expected_bps=12.34)
    panel.tick(T0, {"PLTR": 25.6})
    panel.set_pace(600.0, False)
    panel.on_signal(SignalEvent(sig, SignalStatus.PENDING))
    text = panel.detail.text()
    # 2% of $100k at risk over a 3% stop at $25.50 is 2,614 shares; 20% of equity caps it at 784
    for said in ("BUY PLTR", "about 784 shares", "25.50 then, now 25.60 (+0.39%)", "Stop", "24.73",
                 "0.76", "+12.3 bps after costs", "lstm 0.74, momentum 0.80", "fast SMA crossed above slow; volume up"):
        assert said in text, f"{said!r} not on the card"
    assert "Time left</td><td>0 s" in text or "Time left</td><td>1 s" in text, "5 simulated minutes at 600x"
    assert panel.detail.isVisible() and panel.detail.height() > 0
    assert panel.detail.sizeHint().width() <= 290 or panel.detail.wordWrap(), "wrapped to the column"
    panel.on_signal(SignalEvent(sig, SignalStatus.EXPIRED))
    assert not panel.detail.isVisible(), "no card without a signal"


def test_sigterm_closes_the_window_as_quit_does_and_keeps_the_layout(tmp_path: Path) -> None:
    """A logout or ``kill`` once lost the layout: the window was never closed."""
    home = tmp_path / "home"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "AI_TRADER_STARTUP_PROBE": "1"}
    proc = subprocess.Popen([sys.executable, "main.py", "--demo", "--data-dir", str(home)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith("window-shown") or not line:
                break
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    qs = QSettings(str(home / "window.ini"), QSettings.Format.IniFormat)
    assert qs.value("state") is not None and str(qs.value("layout_version")) == "2", "the layout was saved"


@pytest.mark.parametrize("meta, said", [
    ({"symbol": "PLTR", "timeframe": "1d", "edge": True}, "The desk trades 5m bars, so it does not use this model"),
    ({"symbol": "TSLA", "timeframe": "5m", "edge": True}, "TSLA is not on the watchlist"),
    ({"symbol": "PLTR", "timeframe": "5m", "edge": False, "edge_reason": "Brier no better than the base rate"},
     "no demonstrated edge (Brier no better than the base rate): the desk keeps trading PLTR with its rules"),
    ({"symbol": "PLTR", "timeframe": "5m", "edge": True}, "the desk trades PLTR with it from the next start"),
])
def test_a_saved_model_is_announced_for_what_it_will_do(tmp_path: Path, meta: dict, said: str) -> None:  # type: ignore[type-arg]
    """"New model saved: it trades from the next start" once came for a 1d model on a 5m desk, and
    for a model without an edge, which then said "rules fallback" after the restart."""
    from app.main_window import model_saved_message

    (tmp_path / "metadata.json").write_text(json.dumps(meta))
    text = model_saved_message(str(tmp_path), Settings(timeframe="5m", watchlist=["PLTR"]))
    assert said in text, text


def test_the_days_pnl_is_drawn_as_it_goes_and_split_by_symbol(qtbot) -> None:  # type: ignore[no-untyped-def]
    from app.engine.events import PortfolioEvent
    from app.engine.types import Account, Position, Trade
    from app.widgets.panels import AccountSummary

    panel = AccountSummary(Settings())
    qtbot.addWidget(panel)
    start = 100_000.0
    held = (Position("PLTR", 100, 25.0, 25.5, T0),)
    for k, equity in enumerate((100_000.0, 100_080.0, 99_950.0, 100_120.0)):
        panel.update_from(PortfolioEvent(Account(equity, equity, equity, start), held, 0.0, 0), False,
                          T0 + timedelta(minutes=5 * k))
    x, y = panel.day_curve.curve.getData()
    assert list(y) == [0.0, 80.0, -50.0, 120.0] and len(x) == 4, "every update of the day, in order"
    panel.add_trade(Trade("NVDA", 10, T0, T0 + timedelta(minutes=20), 100.0, 104.0, 40.0, "exit"), T0.date())
    panel.add_trade(Trade("NVDA", 10, T0 - timedelta(days=1), T0 - timedelta(days=1), 100.0, 90.0, -100.0, "x"),
                    T0.date())  # yesterday's: not today's P&L
    panel.update_from(PortfolioEvent(Account(start, start, start, start), held, 0.0, 0), False,
                      T0 + timedelta(minutes=25))
    text = panel.by_symbol.text()
    assert "<b>NVDA</b>" in text and "realised +40.00, open +0.00" in text
    assert "<b>PLTR</b>" in text and "realised +0.00, open +50.00" in text
    panel.update_from(PortfolioEvent(Account(start, start, start, start), (), 0.0, 0), False,
                      T0 + timedelta(days=1))
    assert len(panel.day_curve.times) == 1 and panel.by_symbol.text() == "", "a new day starts again"


def test_a_short_window_makes_room_for_the_card_when_a_signal_waits(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    """At 1280x701 with the account and the approvals stacked, the card was cut after two lines."""
    from app.engine.events import SignalEvent as Event
    from app.main import build_window

    app_home.mkdir(parents=True, exist_ok=True)
    w = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.engine_ready, timeout=30_000)
    w.resize(1280, 701)
    qtbot.wait(50)
    sig = TradingSignal("PLTR", Side.BUY, 0.75, 25.5, T0, T0 + timedelta(days=36_500), ("a reason",), (), "short1")
    w.on_signal(Event(sig, SignalStatus.PENDING))
    qtbot.wait(50)
    assert w.approval_dock.height() >= 290 or w.tabifiedDockWidgets(w.approval_dock), "room for the card"
    assert w.approvals.card_area.height() >= min(w.approvals.detail.sizeHint().height(), 200)
    w.close()
