"""The Watchlist panel, and the window trading several symbols: switch the chart, add and remove live."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from test_gui_desk import window  # noqa: F401 - the shared demo-window fixture

from app.engine.events import PredictionEvent, SignalEvent
from app.engine.types import Bar, Position, Side, SignalStatus, TradingSignal
from app.main import build_window
from app.widgets.watchlist import WatchlistPanel

T0 = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)  # 09:30 New York


def _bar(symbol: str, t: datetime, close: float, open_: float | None = None) -> Bar:
    o = close if open_ is None else open_
    return Bar(symbol, t, o, max(o, close), min(o, close), close, 1000.0)


def _cells(panel: WatchlistPanel, row: int) -> list[str]:
    return [panel.table.item(row, c).text() for c in range(panel.table.columnCount())]  # type: ignore[union-attr]


def test_panel_shows_each_symbols_day_model_signal_and_position(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = WatchlistPanel(("PLTR", "NVDA"))
    qtbot.addWidget(panel)
    panel.on_bars([_bar("PLTR", T0 - timedelta(days=1), 20.0), _bar("NVDA", T0 - timedelta(days=1), 100.0)])
    panel.on_bars([_bar("PLTR", T0, 21.0), _bar("NVDA", T0, 99.0)])  # a new session: yesterday's close is the base
    sig = TradingSignal("NVDA", Side.BUY, 0.83, 99.0, T0, T0 + timedelta(minutes=10), ("x",), (), "NVDA-1-BUY")
    panel.on_signal(SignalEvent(sig, SignalStatus.EXECUTED, "ok"))
    panel.on_prediction(PredictionEvent("PLTR", T0, 0.61, 0.61, (), "rules"))
    panel.on_positions([Position("NVDA", 10, 98.0, 99.0, T0, stop_price=95.0)])
    assert _cells(panel, 0) == ["PLTR", "21.00", "+5.00%", "0.61", "-", "-", "-"]
    assert _cells(panel, 1) == ["NVDA", "99.00", "-1.00%", "-", "BUY 0.83", "10", "+10.00"]
    assert panel.table.item(1, 4).toolTip() == "Latest signal: BUY 0.83, executed"  # type: ignore[union-attr]


def test_click_and_arrow_keys_choose_the_charted_symbol(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = WatchlistPanel(("PLTR", "NVDA", "AMD"))
    qtbot.addWidget(panel)
    panel.show()
    chosen: list[str] = []
    panel.symbolSelected.connect(chosen.append)
    rect = panel.table.visualItemRect(panel.table.item(2, 0))
    qtbot.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert chosen == ["AMD"]
    panel.table.setFocus()
    qtbot.keyClick(panel.table, Qt.Key.Key_Up)
    assert chosen == ["AMD", "NVDA"]
    panel.on_bars([_bar("PLTR", T0, 20.0)])  # a refresh does not look like the user choosing
    assert chosen == ["AMD", "NVDA"] and panel.selected == "NVDA"


def test_add_and_remove_ask_through_signals(qtbot) -> None:  # type: ignore[no-untyped-def]
    panel = WatchlistPanel(("PLTR",))
    qtbot.addWidget(panel)
    assert not panel.remove_button.isEnabled(), "the watchlist is never emptied"
    asked: list[str] = []
    panel.addRequested.connect(asked.append)
    qtbot.keyClicks(panel.add_field, "amd")
    qtbot.keyClick(panel.add_field, Qt.Key.Key_Return)
    assert asked == ["AMD"] and panel.add_field.text() == ""
    panel.set_symbols(("PLTR", "AMD"))
    assert panel.remove_button.isEnabled() and panel.table.rowCount() == 2


THREE_SYMBOLS = pytest.mark.settings(
    {"watchlist": ["PLTR", "NVDA", "AMD"], "mode": "auto", "max_exposure_pct": 1.0, "demo_speed": 3000})


@pytest.fixture
def desk(window):  # type: ignore[no-untyped-def]  # noqa: F811 - the imported fixture, by name
    """The shared demo window (test_gui_desk's fixture), with the test's settings."""
    return window


@THREE_SYMBOLS
def test_the_chart_follows_the_watchlist_choice_with_that_symbols_bars(qtbot, desk) -> None:  # type: ignore[no-untyped-def]
    w = desk
    assert [w.watchlist.table.item(r, 0).text() for r in range(3)] == ["PLTR", "NVDA", "AMD"]
    assert {b.symbol for b in w.chart.bars} == {"PLTR"} and w.chart.symbol_label.text() == "PLTR"
    qtbot.waitUntil(lambda: all(w.chart_book.prices.get(s) for s in ("PLTR", "NVDA", "AMD")), timeout=30_000)
    w.watchlist.select("AMD")
    assert w.chart_symbol == "AMD" and w.chart.symbol_label.text() == "AMD"
    assert w.chart.bars and {b.symbol for b in w.chart.bars} == {"AMD"}
    n = len(w.chart.bars)
    qtbot.waitUntil(lambda: len(w.chart.bars) > n, timeout=30_000)  # AMD's new bars arrive on its chart
    assert {b.symbol for b in w.chart.bars} == {"AMD"}
    amd_close = w.chart_book.bars["AMD"][-1].close
    assert abs(w.chart.bars[-1].close - amd_close) < 1e-9


@THREE_SYMBOLS
def test_adding_and_removing_symbols_while_running(qtbot, desk) -> None:  # type: ignore[no-untyped-def]
    w = desk
    w.add_symbol("TSLA")
    qtbot.waitUntil(lambda: w.watchlist.table.rowCount() == 4, timeout=10_000)
    assert json.loads((w.paths.settings).read_text())["watchlist"] == ["PLTR", "NVDA", "AMD", "TSLA"]
    assert w.chart_book.bars.get("TSLA"), "the new symbol's recent bars came with it"
    seen = len(w.chart_book.bars["TSLA"])
    qtbot.waitUntil(lambda: len(w.chart_book.bars["TSLA"]) > seen, timeout=30_000)  # and it trades on
    for symbol in ("NVDA", "AMD", "TSLA"):
        w.remove_symbol(symbol)
    qtbot.waitUntil(lambda: w.watchlist.table.rowCount() == 1, timeout=10_000)
    asked: list[str] = []
    w.confirm = lambda title, text: asked.append(text) or True
    w.remove_symbol("PLTR")  # the last one: refused before asking or closing anything
    assert not asked and w.settings.watchlist == ("PLTR",) and "only symbol" in w.status_bar.currentMessage()
    for symbol in ("NVDA", "AMD", "TSLA"):
        w.add_symbol(symbol)
    qtbot.waitUntil(lambda: w.watchlist.table.rowCount() == 4, timeout=10_000)
    w.add_symbol("ÅPL")  # refused with the reason, nothing changes
    assert "ÅPL" in w.status_bar.currentMessage() and w.watchlist.table.rowCount() == 4
    w.watchlist.select("NVDA")
    w.remove_symbol("NVDA")
    qtbot.waitUntil(lambda: w.watchlist.table.rowCount() == 3, timeout=10_000)
    assert w.chart_symbol == "PLTR", "the chart leaves a removed symbol"
    assert [w.model_tab.picker.itemText(i) for i in range(w.model_tab.picker.count())] == ["PLTR", "AMD", "TSLA"]


@THREE_SYMBOLS
def test_removing_a_held_symbol_asks_and_closes_it(qtbot, desk) -> None:  # type: ignore[no-untyped-def]
    w = desk
    asked: list[str] = []
    w.confirm = lambda title, text: asked.append(text) or False  # the user says No
    qtbot.waitUntil(lambda: bool(w.held), timeout=60_000)
    symbol = next(iter(w.held))
    w.remove_symbol(symbol)
    assert asked and "holds" in asked[0] and symbol in w.settings.watchlist, "No keeps it"
    w.confirm = lambda title, text: True
    w.remove_symbol(symbol)
    qtbot.waitUntil(lambda: symbol not in w.held, timeout=30_000)
    assert symbol not in w.settings.watchlist


def test_a_bad_ticker_in_the_settings_file_is_said_and_resets_only_itself(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    app_home.mkdir(parents=True, exist_ok=True)
    (app_home / "settings.json").write_text(json.dumps({"watchlist": ["PLTR", "\uff2e\uff36\uff24\uff21"],
                                                        "max_positions": 2, "mode": "manual"}))
    w = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(w)
    try:
        assert (w.settings.max_positions, w.settings.mode, w.settings.watchlist) == (2, "manual", ("PLTR",))
        assert any(a.message.startswith("Settings: watchlist:") for a in w.alerts)
        assert "Settings: watchlist:" in w.status_bar.currentMessage()
    finally:
        w.close()
