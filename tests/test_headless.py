"""The headless runner: same engine, no window, clean stops, recoverable kills."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC
from pathlib import Path

from app.engine.paths import AppPaths
from app.engine.storage import OrderRepository, Storage
from app.main import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list[str], home: Path) -> tuple[int, list[str]]:
    from app.cli.run import run_headless

    lines: list[str] = []
    args = build_parser().parse_args(["--data-dir", str(home), *argv])
    code = run_headless(args, AppPaths.resolve(args.data_dir), install_signals=False, out=lines.append)
    return code, lines


def test_demo_runs_headless_and_resumes_its_clock(app_home: Path) -> None:
    code, lines = _run(["run", "--headless", "--speed", "0", "--max-bars", "200"], app_home)
    assert code == 0
    assert lines[-1].startswith("stopped after 200 bars")
    storage = Storage(app_home / "trader.db")
    from app.engine.storage import StateRepository

    first_stop = StateRepository(storage).get("demo.clock")
    storage.close()
    code, lines = _run(["run", "--headless", "--speed", "0", "--max-bars", "50"], app_home)
    assert code == 0
    storage = Storage(app_home / "trader.db")
    second_stop = StateRepository(storage).get("demo.clock")
    ids = [o.client_order_id for o in OrderRepository(storage).recent()]
    storage.close()
    assert second_stop > first_stop, "the simulated clock continues where it stopped"
    assert len(ids) == len(set(ids))


def test_replay_of_a_csv_trades_through_the_engine(app_home: Path, tmp_path: Path) -> None:
    from datetime import datetime

    from app.engine.clock import MarketCalendar
    from app.engine.simmarket import SimulatedMarket

    cal = MarketCalendar()
    market = SimulatedMarket("PLTR", 3, cal)
    bars = market.history(cal.previous_sessions(datetime(2025, 3, 1, tzinfo=UTC), 5))
    csv = tmp_path / "bars.csv"
    csv.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"{b.time.isoformat()},{b.open},{b.high},{b.low},{b.close},{b.volume}\n" for b in bars))
    code, lines = _run(["run", "--headless", "--speed", "0", "--replay", str(csv)], app_home)
    assert code == 0, lines
    assert any(line.startswith("replaying") for line in lines)
    assert f"stopped after {len(bars) - 78} bars" in lines[-1]  # the first session warms up
    assert not (app_home / "trader.db").exists(), "a rehearsal never touches the trading record"


def test_replay_of_a_broken_file_fails_with_one_line(app_home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    code, lines = _run(["run", "--headless", "--replay", str(bad)], app_home)
    assert code == 2
    assert lines[-1].startswith("error:") and "\n" not in lines[-1]


def test_replay_of_another_timeframe_says_how_to_replay_it(app_home: Path, tmp_path: Path) -> None:
    """run has no --timeframe: the advice is the setting, not an option it lacks."""
    rows = "".join(f"2025-03-04T15:{m:02d}:00Z,20,20.1,19.9,20,1000\n" for m in range(0, 30))
    one_minute = tmp_path / "PLTR_1m.csv"
    one_minute.write_text("timestamp,open,high,low,close,volume\n" + rows)
    code, lines = _run(["run", "--headless", "--replay", str(one_minute)], app_home)
    assert code == 2
    assert "holds 1m bars" in lines[-1] and '"timeframe": "1m"' in lines[-1] and "--timeframe" not in lines[-1]


def test_sigterm_stops_cleanly_and_sigkill_recovers(app_home: Path) -> None:
    cmd = [sys.executable, str(ROOT / "main.py"), "--data-dir", str(app_home), "run", "--headless",
           "--speed", "3000"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(4)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "stopped after" in out
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(4)
    proc.kill()
    proc.communicate(timeout=30)
    proc = subprocess.run(cmd[:-2] + ["--speed", "0", "--max-bars", "20"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stopped after 20 bars" in proc.stdout
