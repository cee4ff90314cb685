"""Test configuration: headless Qt, an isolated app home for every test."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"  # never the user's real keyring
os.environ.pop("APCA_API_KEY_ID", None)
os.environ.pop("APCA_API_SECRET_KEY", None)

from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

pytest_plugins = ("alpaca_server", "alpaca_bars_server")  # their fixtures, for every test module

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def app_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes into its own app home, never the user's."""
    home = tmp_path / "home"
    monkeypatch.setenv("AI_TRADER_HOME", str(home))
    return home


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent")
    return SHARED_DATA


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


@pytest.fixture(scope="session")
def nyse() -> object:
    """The NYSE calendar (slow to build: one per test run)."""
    from app.engine.clock import MarketCalendar

    return MarketCalendar()
