"""The settings dialog refuses what the engine would refuse, and keeps keys secret."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from alpaca_server import AlpacaServer
from PySide6.QtWidgets import QDialogButtonBox, QDoubleSpinBox, QLineEdit, QSpinBox

from app.engine.broker.alpaca import check_connection
from app.engine.live_gate import CONFIRM_PHRASE, live_gate
from app.engine.settings import Settings
from app.widgets.settings_dialog import SettingsDialog


@pytest.fixture
def dialog(qtbot, tmp_path: Path):  # type: ignore[no-untyped-def]
    dlg = SettingsDialog(Settings(), tmp_path / ".env",
                         live_check=lambda phrase: live_gate(None, __import__("datetime").datetime.now(), phrase))
    qtbot.addWidget(dlg)
    return dlg


def _save_button(dlg: SettingsDialog):  # type: ignore[no-untyped-def]
    return dlg.buttons.button(QDialogButtonBox.StandardButton.Save)


def _set(dlg: SettingsDialog, name: str, value: str | float) -> None:
    editor = dlg.editors[name]
    if isinstance(editor, QLineEdit):
        editor.setText(str(value))
    else:
        assert isinstance(editor, (QSpinBox, QDoubleSpinBox)), type(editor)
        editor.setValue(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("name, value, reason, label", [
    ("approval_threshold", 0.9, 'must not exceed "Execute at confidence"', "Ask approval at confidence"),
    ("trailing_pct", 6.0, 'must be smaller than "Trailing stop starts at gain"', "Trailing distance"),
    ("watchlist", "PLTR, ＮＶＤＡ", "full-width", "Watchlist"),
    ("watchlist", "PLTR, PLTR", "listed twice", "Watchlist"),
])
def test_invalid_values_cannot_be_saved_and_say_why_in_the_dialogs_words(  # type: ignore[no-untyped-def]
        dialog, name: str, value: str | float, reason: str, label: str) -> None:
    assert _save_button(dialog).isEnabled()
    _set(dialog, name, value)
    assert not _save_button(dialog).isEnabled()
    assert reason in dialog.error.text() and label in dialog.error.text(), dialog.error.text()
    assert "_" not in dialog.error.text().split(":", 1)[1], "no internal names"
    shown = "".join(label.text() for label in dialog.reasons.values())
    assert reason in shown


def test_percentages_are_typed_as_percentages_within_the_settings_bounds(dialog, qtbot) -> None:  # type: ignore[no-untyped-def]
    """"5" and "5%" were both refused for 5% while the window said "20% limit"."""
    box = dialog.editors["max_position_pct"]
    assert isinstance(box, QDoubleSpinBox) and box.suffix() == " %" and box.value() == 20.0
    assert (box.minimum(), box.maximum()) == (1.0, 100.0), "the setting's 0.01 to 1.0, as percentages"
    box.setValue(500.0)
    assert box.value() == 100.0, "out of range cannot be typed"
    assert isinstance(dialog.editors["max_positions"], QSpinBox)
    assert dialog.editors["stop_check_seconds"].suffix() == " s"  # type: ignore[attr-defined]
    assert dialog.editors["slippage_bps"].suffix() == " bps"  # type: ignore[attr-defined]
    assert dialog.editors["starting_cash"].prefix() == "$"  # type: ignore[attr-defined]
    _set(dialog, "stop_loss_pct", 4.0)
    _set(dialog, "max_position_pct", 5.0)
    with qtbot.waitSignal(dialog.settingsSaved) as blocker:
        dialog.save()
    assert blocker.args[0].stop_loss_pct == 0.04 and blocker.args[0].max_position_pct == 0.05


def test_a_value_finer_than_the_box_shows_is_kept_when_untouched(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dlg = SettingsDialog(Settings(risk_per_trade=0.0123456), tmp_path / ".env")
    qtbot.addWidget(dlg)
    assert dlg.validate() is not None and dlg.validate().risk_per_trade == 0.0123456  # type: ignore[union-attr]


def test_the_dialog_fits_a_720_line_screen(dialog) -> None:  # type: ignore[no-untyped-def]
    dialog.show()
    assert dialog.minimumSizeHint().height() <= 600 and dialog.height() <= 680
    assert [dialog.pages.tabText(i) for i in range(dialog.pages.count())][:2] == ["Risk", "Signals"]


def test_keys_are_stored_owner_only_and_shown_masked(dialog, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dialog.key_fields["paper_key_id"].setText("PKTESTKEY1234567890")
    dialog.key_fields["paper_secret_key"].setText("very-secret-value-0987654321")
    assert dialog.key_fields["paper_secret_key"].echoMode() == QLineEdit.EchoMode.Password
    dialog.save()
    env = tmp_path / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "very-secret-value-0987654321" in env.read_text()
    again = SettingsDialog(Settings(), env)
    shown = again.key_fields["paper_secret_key"].placeholderText()
    assert "very-secret" not in shown and shown.endswith("4321")
    assert "LIVE_" not in env.read_text(), "paper and live keys are kept apart"


def test_the_live_gate_refuses_a_fresh_account(dialog) -> None:  # type: ignore[no-untyped-def]
    dialog.editors["broker"].setCurrentText("alpaca-live")  # type: ignore[attr-defined]
    dialog.live_phrase.setText(CONFIRM_PHRASE)
    assert not _save_button(dialog).isEnabled()
    assert "no paper-trading history" in dialog.reasons["broker"].text()


def test_live_gate_rules() -> None:
    from datetime import datetime

    now = datetime(2026, 11, 25)
    assert not live_gate("2026-11-20", now, CONFIRM_PHRASE)[0]
    assert not live_gate("2026-11-01", now, "yes")[0]
    assert live_gate("2026-11-01", now, CONFIRM_PHRASE) == (True, "live trading unlocked")


def test_connection_test_reports_without_freezing(qtbot, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                  alpaca_server: AlpacaServer) -> None:
    dlg = SettingsDialog(Settings(), tmp_path / ".env", alpaca_url=alpaca_server.url,
                         check_connection=check_connection)
    qtbot.addWidget(dlg)
    dlg.key_fields["paper_key_id"].setText(alpaca_server.key_id)
    dlg.key_fields["paper_secret_key"].setText(alpaca_server.secret_key)
    dlg.test_connection()
    assert dlg.test_result.text() == "testing…"  # returned at once: the check runs elsewhere
    qtbot.waitUntil(lambda: dlg.test_result.text().startswith("connected"), timeout=15_000)
    dlg.key_fields["paper_secret_key"].setText("wrong-secret-abcdef123456")
    dlg.test_connection()
    qtbot.waitUntil(lambda: dlg.test_result.text().startswith("failed"), timeout=15_000)
    assert "wrong-secret" not in dlg.test_result.text()


def test_window_saves_settings_file(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    from app.main import build_window

    w = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(w)
    try:
        qtbot.waitUntil(lambda: w.engine_ready, timeout=30_000)
        dlg = w.open_settings()
        assert dlg.objectName() == "settingsDialog"
        dlg.editors["max_round_trips"].setValue(7)  # type: ignore[attr-defined]
        dlg.save()
        assert json.loads((app_home / "settings.json").read_text())["max_round_trips"] == 7
        assert "7" in w.account.settings.max_round_trips.__str__()
    finally:
        w.close()


def test_connection_test_runs_as_a_coroutine_inside_qt(qapp, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                        alpaca_server: AlpacaServer) -> None:
    import asyncio

    import qasync

    dlg = SettingsDialog(Settings(), tmp_path / ".env", alpaca_url=alpaca_server.url,
                         check_connection=check_connection)
    dlg.key_fields["paper_key_id"].setText(alpaca_server.key_id)
    dlg.key_fields["paper_secret_key"].setText(alpaca_server.secret_key)
    loop = qasync.QEventLoop(qapp)
    asyncio.set_event_loop(loop)
    ticks = 0

    async def scenario() -> None:
        nonlocal ticks
        dlg.test_connection()
        assert dlg._task is not None  # the qasync path, not the thread pool
        while not dlg.test_result.text().startswith("connected"):
            ticks += 1  # the loop keeps turning while the check runs
            await asyncio.sleep(0.01)

    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 15))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert ticks > 0
    dlg.deleteLater()
