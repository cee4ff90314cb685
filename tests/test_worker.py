"""The engine worker's slots and signals, driven on the test's own thread."""

from __future__ import annotations

from pathlib import Path

from app.engine.paths import AppPaths
from app.engine.settings import Settings
from app.worker import EngineWorker


def _worker(app_home: Path, qtbot, **settings: object) -> EngineWorker:  # type: ignore[no-untyped-def]
    w = EngineWorker(AppPaths.resolve(str(app_home)), Settings(**settings), demo=True)  # type: ignore[arg-type]
    ready: list[object] = []
    w.ready.connect(ready.append)
    w.start()  # builds the engine here, as it would in its thread
    assert ready and ready[0]["history"], "history reaches the chart"  # type: ignore[index]
    return w


def test_commands_reach_the_engine_and_events_come_back(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    w = _worker(app_home, qtbot, mode="manual", demo_speed=100_000)
    pending: list[object] = []
    statuses: list[object] = []
    bars: list[object] = []
    w.signalChanged.connect(lambda e: pending.append(e) if e.status == "pending" else None)
    w.statusChanged.connect(statuses.append)
    w.barsClosed.connect(bars.append)
    for _ in range(400):
        w._advance()
        if pending:
            break
    w._flush_latest()
    assert pending, "a signal waits for approval in manual mode"
    assert statuses and bars
    waiting = [e.signal.signal_id for e in pending if e.signal.signal_id in w.ctx.bot.pending]  # type: ignore[attr-defined]
    assert waiting, "the signal announced as pending is still pending"
    w.reject(waiting[-1])
    assert waiting[-1] not in w.ctx.bot.pending
    w.setMode("auto")
    assert w.ctx.bot.mode.value == "auto"
    reports: list[object] = []
    w.flattenReported.connect(reports.append)
    w.flattenAll()
    assert reports and "nothing to flatten" in reports[0][0]  # type: ignore[index]
    alerts: list[object] = []
    w.alertRaised.connect(alerts.append)
    w.closePosition("PLTR")
    w.approve("no-such-signal")
    assert any("no longer pending" in a.message for a in alerts)  # type: ignore[attr-defined]
    w.applySettings(Settings(max_round_trips=3, demo_speed=600))
    assert w.ctx.bot.settings.max_round_trips == 3
    w.setPaused(True)
    assert not w._timer.isActive()
    w.setPaused(False)
    assert w._timer.isActive()
    stopped: list[object] = []
    w.stopped.connect(lambda: stopped.append(True))
    w.stop()
    assert stopped and w.ctx is None


def test_csv_import_reports_counts_and_errors(qtbot, app_home: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    w = _worker(app_home, qtbot)
    alerts: list[object] = []
    w.alertRaised.connect(alerts.append)
    good = tmp_path / "bars.csv"
    good.write_text("date,open,high,low,close,volume\n2024-01-02,10,11,9,10.5,1000\n2024-01-03,10.5,11,10,10.8,900\n"
                    "2024-01-04,10.8,10.9,10.1,abc,800\n")
    w.importCsv(str(good), "PLTR", "1d")
    message = alerts[-1].message  # type: ignore[attr-defined]
    assert "accepted: 2, rejected: 1" in message and "text in close" in message
    w.importCsv(str(tmp_path / "missing.csv"), "PLTR", "1d")
    assert alerts[-1].level == "error" and "Import failed" in alerts[-1].message  # type: ignore[attr-defined]
    both = tmp_path / "two.csv"
    both.write_text("symbol,date,open,high,low,close,volume\nAMD,2024-01-02,10,11,9,10.5,1000\n"
                    "NVDA,2024-01-02,50,51,49,50.5,900\nAMD,2024-01-03,10.5,11,10,10.8,900\n")
    w.importCsv(str(both), "", "1d")  # as the file says: each stock under its own symbol
    message = alerts[-1].message  # type: ignore[attr-defined]
    assert alerts[-1].level == "info" and "AMD: " in message and "NVDA: " in message  # type: ignore[attr-defined]
    from app.engine.storage import BarRepository

    repo = BarRepository(w.ctx.storage)
    assert repo.count("AMD", "1d") == 2 and repo.count("NVDA", "1d") == 1
    w.stop()


def test_a_broken_database_is_reported_not_raised(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    app_home.mkdir(parents=True, exist_ok=True)
    (app_home / "trader.db").write_bytes(b"garbage" * 100)
    w = EngineWorker(AppPaths.resolve(str(app_home)), Settings(), demo=True)
    failures: list[str] = []
    w.failed.connect(failures.append)
    w.start()
    assert failures and "not a SQLite database" in failures[0]
    assert w.ctx is None


def test_a_signal_waiting_for_approval_pauses_the_demo_until_the_user_acts(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    """At the default 600x a signal's five minutes last half a second of wall time: the demo
    waits for the user instead, here 10 s of wall time, and goes on once they act."""
    w = _worker(app_home, qtbot, mode="manual", demo_speed=100_000)
    pauses: list[tuple[bool, str]] = []
    w.pausedChanged.connect(lambda paused, why: pauses.append((paused, why)))
    qtbot.waitUntil(lambda: bool(w.ctx.bot.pending), timeout=120_000)  # type: ignore[attr-defined]
    assert pauses and pauses[-1][0] and "awaits your approval" in pauses[-1][1]
    (sid,) = w.ctx.bot.pending  # type: ignore[attr-defined]
    w.setSpeed(600)  # the default speed: nothing moves while it waits
    clock = w.ctx.bot.clock.now()  # type: ignore[attr-defined]
    qtbot.wait(10_000)
    assert sid in w.ctx.bot.pending and w.ctx.bot.clock.now() == clock  # type: ignore[attr-defined]
    assert not w._timer.isActive()
    w.reject(sid)
    assert w._timer.isActive() and pauses[-1] == (False, "")
    w.stop()


def test_resume_lets_a_waiting_signal_expire_and_the_setting_turns_the_pause_off(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    w = _worker(app_home, qtbot, mode="manual", demo_speed=100_000)
    for _ in range(2_000):
        w._advance()
        if w.ctx.bot.pending:  # type: ignore[attr-defined]
            break
    (sid,) = w.ctx.bot.pending  # type: ignore[attr-defined]
    assert not w._timer.isActive()
    w.setPaused(False)  # the user resumes past it
    assert w._timer.isActive()
    for _ in range(50):
        w._advance()
    assert sid not in w.ctx.bot.pending, "it expired at its time"  # type: ignore[attr-defined]
    w.setPaused(True)
    assert not w._timer.isActive()
    w.setPaused(False)
    w.applySettings(w.settings.updated(demo_pause_on_approval=False))
    for _ in range(2_000):
        w._advance()
        if w.ctx.bot.pending:  # type: ignore[attr-defined]
            break
    assert w.ctx.bot.pending and w._timer.isActive(), "with the setting off the demo runs on"  # type: ignore[attr-defined]
    w.stop()
