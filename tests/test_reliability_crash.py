"""Crash safety: the headless engine killed at random points, over and over,
then restarted on the same app home. Nothing recorded may be lost or doubled,
and the engine's positions must match the paper broker's book.

Every kill is a SIGKILL, sent two ways: from outside after a random delay
(start-up, reconciliation, replay: wherever it lands), and by the engine's test
hook ``AI_TRADER_CRASH_AT`` (``app.engine.orders.crash_point``) at the 1st-3rd
visit of a point on the order path: between recording an intent and sending it,
between the broker accepting an order and the record saying so, and between a
fill being booked (position, trade) and the order being recorded filled.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
POINTS = ("before_submit", "after_submit", "after_fill")
KILLS = 21


def _cmd(home: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "--data-dir", str(home), "run", "--headless",
            "--speed", "0", *extra]


def _db(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{home / 'trader.db'}?mode=ro", uri=True)


def _integrity(home: Path) -> str:
    with _db(home) as con:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])


def _kill_once(home: Path, rng: random.Random, point: str | None) -> str:
    """One run, killed: by the hook at ``point`` or by SIGKILL after a random delay."""
    env = dict(os.environ)
    env.pop("AI_TRADER_CRASH_AT", None)
    if point:
        env["AI_TRADER_CRASH_AT"] = f"{point}:{rng.randint(1, 3)}"
    proc = subprocess.Popen(_cmd(home), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + (10.0 if point else rng.uniform(0.8, 4.0))
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        how = "SIGKILL after a random delay" if not point else f"SIGKILL from outside ({point} not reached)"
    else:
        how = f"SIGKILL at {point}"
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, err[-2000:])
    assert "Traceback" not in err, err[-2000:]
    return how


# the paper broker as a thin market and a slow exchange: an order takes at most 1% of a tick's
# volume (entries fill over several ticks), and a cancel lands a minute later (it can fill meanwhile)
THIN_AND_SLOW = {"sim_fill_participation": 0.01, "sim_cancel_delay_s": 60}


@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is a POSIX signal")
@pytest.mark.parametrize("broker", [{}, THIN_AND_SLOW], ids=["whole fills", "partial fills, slow cancels"])
def test_killed_twenty_times_and_restarted_nothing_is_lost_or_doubled(app_home: Path, broker: dict) -> None:
    home = app_home
    home.mkdir(parents=True, exist_ok=True)
    # trade often, so that kills land on the order path
    (home / "settings.json").write_text(json.dumps(
        {"mode": "auto", "auto_threshold": 0.6, "approval_threshold": 0.6, "max_round_trips": 100, **broker}))
    rng = random.Random(1234)
    started = time.perf_counter()
    kills: Counter[str] = Counter()
    for i in range(KILLS):
        point = POINTS[i % 4] if i % 4 < 3 else None
        kills[_kill_once(home, rng, point)] += 1
        if (home / "trader.db").exists():
            assert _integrity(home) == "ok", f"after kill {i + 1}"
    done = subprocess.run(_cmd(home, "--max-bars", "40"), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    elapsed = time.perf_counter() - started

    with _db(home) as con:
        integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
        orders = con.execute('SELECT client_order_id, side, order_type, status, filled_qty, filled_at, reason '
                             'FROM "order"').fetchall()
        dupes = con.execute('SELECT client_order_id FROM "order" GROUP BY client_order_id '
                            'HAVING COUNT(*) > 1').fetchall()
        lost_trades = con.execute(
            'SELECT o.client_order_id FROM "order" o WHERE o.side = \'SELL\' AND o.status = \'filled\' '
            'AND NOT EXISTS (SELECT 1 FROM trade t WHERE t.symbol = o.symbol AND t.exit_time = o.filled_at)'
        ).fetchall()
        trades = con.execute("SELECT COUNT(*) FROM trade").fetchone()[0]
        engine_pos = dict(con.execute("SELECT symbol, qty FROM position").fetchall())
        book_pos = dict(con.execute("SELECT symbol, qty FROM sim_position").fetchall())
        book_orders = json.loads(con.execute("SELECT value FROM state WHERE key = 'paper.open_orders'")
                                 .fetchone()[0])
    recorded = {o[0]: o for o in orders}
    book_ids = [o["client_order_id"] for o in book_orders]
    missing = [c for c in book_ids if c not in recorded]
    status_differs = [(o["client_order_id"], o["status"], recorded[o["client_order_id"]][3])
                      for o in book_orders
                      if o["client_order_id"] in recorded and o["status"] != recorded[o["client_order_id"]][3]]
    net = sum((o[4] if o[1] == "BUY" else -o[4]) for o in orders)  # partly filled ones too
    never_sent = sum("never reached the broker" in (o[6] or "") for o in orders)
    fills = sum(o[3] == "filled" for o in orders)
    partial = sum(o[4] > 0 and o[3] != "filled" for o in orders)
    print(f"\ncrash: {sum(kills.values())} kills ({dict(kills)}) + a clean run in {elapsed:.1f} s; "
          f"{len(orders)} orders ({fills} filled, {partial} partly filled and ended or working, "
          f"{never_sent} intents dropped as never sent), "
          f"{trades} trades, duplicate ids {len(dupes)}, lost trades {len(lost_trades)}, "
          f"broker orders missing from the record {len(missing)}, status mismatches {len(status_differs)}, "
          f"positions engine {engine_pos} / paper book {book_pos}, integrity {integrity}")
    assert sum(kills.values()) >= 20
    assert sum(v for k, v in kills.items() if k.startswith("SIGKILL at")) >= 10, kills
    assert len(orders) >= 20 and fills >= 10, "the kills landed on a busy order path"
    assert integrity == "ok"
    assert dupes == [] and len(book_ids) == len(set(book_ids))
    assert lost_trades == [], lost_trades
    assert missing == [] and status_differs == [], (missing, status_differs)
    assert engine_pos == book_pos
    assert abs(net - sum(book_pos.values())) < 1e-6, "every fill the broker made is in the record"
