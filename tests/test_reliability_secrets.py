"""Secrets: known fake keys, given through Alpaca's environment variables and
through the app's .env file, used against an unreachable broker and against one
that answers 401/403/500 with the keys echoed in the body. Afterwards no file
the app wrote (logs, database, settings, backups; all but .env itself) and
nothing it printed may hold either key."""

from __future__ import annotations

import json
import os
import pickle
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from itertools import cycle
from pathlib import Path

import pytest
from alpaca_server import AlpacaServer, Fault
from loguru import logger

from app.engine import logs
from app.engine.bootstrap import build_live_engine
from app.engine.clock import MarketCalendar, SimClock
from app.engine.events import Event, EventBus
from app.engine.paths import AppPaths
from app.engine.secrets import ApiKeys, Secret, load_keys, save_keys
from app.engine.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KEY = "PKLEAKTEST9Z8Y7X6W5V"
SECRET = "leak-test-secret-5e1f0a9c3b7d2e4f6a8b"


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there now: connection refused


class EchoingServer(AlpacaServer):
    """Answers every request with 401, 403 or 500 and the request's keys in the body,
    as a misconfigured proxy or gateway might."""

    def __init__(self) -> None:
        super().__init__(key_id=KEY, secret_key=SECRET)
        bodies = cycle([
            (401, json.dumps({"code": 40110000, "message": f"invalid key {KEY} / {SECRET}"})),
            (403, json.dumps({"message": f"forbidden for APCA-API-KEY-ID={KEY} APCA-API-SECRET-KEY={SECRET}"})),
            (500, f"<html><body>upstream error: headers {KEY}:{SECRET}</body></html>"),
        ])
        self.faults = lambda method, path: Fault.http(*next(bodies))


@pytest.fixture
def echoing() -> Iterator[str]:
    server = EchoingServer().start()
    try:
        yield server.url
    finally:
        server.stop()


def _leaks(home: Path, *texts: str) -> list[str]:
    """Every place (file under the home but .env, or captured text) holding a key."""
    found = []
    for path in sorted(home.rglob("*")):
        if path.is_file() and path.name != ".env":
            data = path.read_bytes()
            found += [f"{path.relative_to(home)}: {name}" for name, k in (("key id", KEY), ("secret", SECRET))
                      if k.encode() in data]
    for i, text in enumerate(texts):
        found += [f"captured text {i}: {name}" for name, k in (("key id", KEY), ("secret", SECRET)) if k in text]
    return found


def _give_keys(how: str, paths: AppPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    if how == "env":
        monkeypatch.setenv("APCA_API_KEY_ID", KEY)
        monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    else:
        save_keys(paths.env_file, ApiKeys(Secret(KEY), Secret(SECRET)))


@pytest.mark.parametrize("how", ["env", "dotenv"])
@pytest.mark.parametrize("broker", ["unreachable", "echoing"])
def test_a_paper_session_with_a_failing_broker_leaks_no_key(
        app_home: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest,
        how: str, broker: str) -> None:
    paths = AppPaths(app_home).ensure()
    _give_keys(how, paths, monkeypatch)
    url = _closed_port_url() if broker == "unreachable" else request.getfixturevalue("echoing")
    logs.configure(paths.logs)  # the app's own logging, scrubber included
    # and the most talkative sink there is: DEBUG, with loguru's variable dumps on
    sink = logger.add(paths.logs / "debug-capture.log", level="DEBUG", diagnose=True, backtrace=True)
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    session = MarketCalendar().session(date(2025, 6, 12))
    assert session is not None
    clock = SimClock(session.open + timedelta(minutes=40))
    try:
        ctx = build_live_engine(paths, Settings(mode="auto"), bus=bus, clock=clock, sleep=lambda s: None,
                                alpaca_url=url)
        for _ in range(4):
            clock.advance(timedelta(minutes=5))
            ctx.replay.step()
        ctx.bot.flatten_all()
        ctx.bot.close_position("PLTR")
        status = ctx.bot.status()
        ctx.close()
    finally:
        logger.remove(sink)
    captured = "\n".join(repr(e) for e in events) + repr(status) + repr(ctx.notices) + repr(ctx.settings)
    leaks = _leaks(app_home, captured)
    log_text = (paths.logs / "debug-capture.log").read_text()
    print(f"\nsecrets ({how}, {broker} broker): {len(events)} events, {len(log_text.splitlines())} log lines, "
          f"{sum(1 for _ in app_home.rglob('*'))} paths under the home searched; leaks: {leaks or 'none'}")
    assert "unreachable" in log_text or "401" in log_text or "403" in log_text, "the failures were logged"
    assert not status.connected
    assert leaks == []
    if how == "dotenv":
        assert stat.S_IMODE(paths.env_file.stat().st_mode) == 0o600
        assert KEY in paths.env_file.read_text()  # the one place the keys belong


@pytest.mark.skipif(os.name == "nt", reason="stopped with SIGTERM")
@pytest.mark.parametrize("how, broker", [("env", "unreachable"), ("dotenv", "echoing")])
def test_the_headless_paper_runner_leaks_no_key(app_home: Path, monkeypatch: pytest.MonkeyPatch,
                                               request: pytest.FixtureRequest, how: str, broker: str) -> None:
    paths = AppPaths(app_home).ensure()
    _give_keys(how, paths, monkeypatch)  # the child inherits the environment
    (app_home / "settings.json").write_text(json.dumps({"stop_check_seconds": 1, "mode": "auto"}))
    url = _closed_port_url() if broker == "unreachable" else request.getfixturevalue("echoing")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--data-dir", str(app_home), "run", "--headless",
         "--broker", "alpaca-paper", "--alpaca-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)  # start-up, a few polls of the failing broker
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    leaks = _leaks(app_home, out, err)
    files = sorted(str(p.relative_to(app_home)) for p in app_home.rglob("*") if p.is_file())
    print(f"\nsecrets (headless, {how}, {broker}): exit {proc.returncode}, files {files}; leaks: {leaks or 'none'}")
    assert "Traceback" not in out + err, err[-3000:]
    assert proc.returncode == 0, out + err
    assert "stopped after 0 bars" in out
    assert (app_home / "logs" / "trading_bot.log").exists() and (app_home / "trader.db").exists()
    assert leaks == []
    if how == "dotenv":
        assert stat.S_IMODE(paths.env_file.stat().st_mode) == 0o600


def test_settings_and_secrets_print_masked(monkeypatch: pytest.MonkeyPatch, app_home: Path) -> None:
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    keys = load_keys(None)
    assert keys.key_id.reveal() == KEY  # the value is there; only reveal() shows it
    shown = [repr(Settings()), str(Settings()), repr(Settings().to_dict()), repr(keys), str(keys),
             repr(keys.key_id), str(keys.secret_key), f"{keys.secret_key}", f"{keys.secret_key!r}",
             f"{keys.key_id} {keys.secret_key!r}", f"{keys.key_id}", repr([keys.key_id])]
    print(f"\nsecrets: masked as {str(keys.secret_key)!r} / {keys.key_id!r}")
    assert all(KEY not in s and SECRET not in s for s in shown), shown
    assert str(keys.secret_key) == "••••" + SECRET[-4:]
    with pytest.raises(TypeError):
        pickle.dumps(keys.secret_key)
    save_keys(AppPaths(app_home).env_file, keys)
    assert stat.S_IMODE(os.stat(AppPaths(app_home).env_file).st_mode) == 0o600
    Settings().save(AppPaths(app_home).ensure().settings)
    assert KEY not in AppPaths(app_home).settings.read_text()


def test_saving_keys_never_writes_through_a_symlinked_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.engine.secrets.os_keyring", lambda: None)  # the file is where keys go
    target = tmp_path / "someone_elses_file"
    target.write_text("precious\n")
    env = tmp_path / "home" / ".env"
    env.parent.mkdir()
    env.symlink_to(target)
    save_keys(env, ApiKeys(Secret("PKTEST1234"), Secret("s3cr3t-value")))
    assert target.read_text() == "precious\n", "the link's target is untouched"
    assert not env.is_symlink() and stat.S_IMODE(env.stat().st_mode) == 0o600
    assert load_keys(env).key_id.reveal() == "PKTEST1234"


def test_an_env_file_others_can_read_is_warned_about(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("APCA_API_KEY_ID=PKTEST1234\nAPCA_API_SECRET_KEY=s3cr3t-value\n")
    env.chmod(0o644)
    said: list[str] = []
    sink = logger.add(lambda m: said.append(str(m)), level="WARNING")
    try:
        keys = load_keys(env)
    finally:
        logger.remove(sink)
    assert keys.complete and any("can be read by other users" in line and "644" in line for line in said)
    assert not any("s3cr3t-value" in line for line in said)


@pytest.mark.parametrize("head", [b"\xef\xbb\xbf", b"# cl\xe9s Alpaca (Latin-1)\n"], ids=["bom", "latin-1-comment"])
def test_an_env_file_from_another_editor_still_gives_its_keys(tmp_path: Path, head: bytes,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Notepad's byte-order mark once hid the first key; a Latin-1 comment stopped every start."""
    monkeypatch.setattr("app.engine.secrets.os_keyring", lambda: None)
    env = tmp_path / ".env"
    env.write_bytes(head + b"APCA_API_KEY_ID=PKTEST1234\nAPCA_API_SECRET_KEY=s3cr3t-value\n")
    env.chmod(0o600)
    keys = load_keys(env)
    assert keys.complete and keys.key_id.reveal() == "PKTEST1234"
