"""Live trading starts only past the gate, and then says LIVE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alpaca_server import AlpacaServer

from app.engine.bootstrap import build_live_engine
from app.engine.clock import SimClock
from app.engine.live_gate import LIVE_CONFIRMED_KEY, PAPER_FIRST_DAY_KEY
from app.engine.paths import AppPaths
from app.engine.records import SqlRecorder
from app.engine.secrets import ApiKeys, Secret, save_keys
from app.engine.settings import Settings
from app.engine.storage import Storage
from app.engine.types import BrokerKind

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def _state(home: Path, **values: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    storage = Storage(home / "trader.db")
    records = SqlRecorder(storage, home / "backup.jsonl")
    for key, value in values.items():
        records.state_set(key, value)
    storage.close()


def _live(home: Path, server: AlpacaServer):  # type: ignore[no-untyped-def]
    save_keys(home / ".env", ApiKeys(Secret(server.key_id), Secret(server.secret_key)), live=True)
    return build_live_engine(AppPaths(home), Settings(broker="alpaca-live"), clock=SimClock(NOW),
                             alpaca_url=server.url, live=True, sleep=lambda s: None)


def test_a_fresh_account_cannot_go_live(app_home: Path, alpaca_server: AlpacaServer) -> None:
    with pytest.raises(ValueError, match="no paper-trading history"):
        _live(app_home, alpaca_server)
    assert alpaca_server.request_count == 0, "the live endpoint was never contacted"


def test_too_little_paper_history_or_no_confirmation_is_refused(app_home: Path,
                                                                  alpaca_server: AlpacaServer) -> None:
    _state(app_home, **{PAPER_FIRST_DAY_KEY: (NOW - timedelta(days=5)).date().isoformat()})
    with pytest.raises(ValueError, match="only 5 days"):
        _live(app_home, alpaca_server)
    _state(app_home, **{PAPER_FIRST_DAY_KEY: (NOW - timedelta(days=20)).date().isoformat()})
    with pytest.raises(ValueError, match="never confirmed"):
        _live(app_home, alpaca_server)
    assert alpaca_server.request_count == 0


def test_past_the_gate_the_engine_trades_live_and_says_so(app_home: Path,
                                                          alpaca_server: AlpacaServer) -> None:
    _state(app_home, **{PAPER_FIRST_DAY_KEY: (NOW - timedelta(days=20)).date().isoformat(),
                        LIVE_CONFIRMED_KEY: NOW.isoformat()})
    ctx = _live(app_home, alpaca_server)
    try:
        assert ctx.broker.kind == BrokerKind.LIVE
        assert ctx.bot.status().broker == BrokerKind.LIVE
        assert ctx.records.state_get(PAPER_FIRST_DAY_KEY) == (NOW - timedelta(days=20)).date().isoformat()
    finally:
        ctx.close()


def test_choosing_live_in_settings_records_the_confirmation(qtbot, app_home: Path) -> None:  # type: ignore[no-untyped-def]
    from app.main import build_window

    w = build_window(["--demo", "--data-dir", str(app_home)])
    qtbot.addWidget(w)
    try:
        qtbot.waitUntil(lambda: w.engine_ready, timeout=30_000)
        w.apply_settings(Settings(broker="alpaca-live"))
        qtbot.waitUntil(lambda: w.worker.ctx.records.state_get(LIVE_CONFIRMED_KEY) is not None, timeout=10_000)
    finally:
        w.close()
