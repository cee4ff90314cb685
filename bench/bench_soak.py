"""Soak: the demo engine at maximum speed for N minutes, with an offscreen chart fed every
closed bar and P(up) of the first symbol, as the window's would be.

Prints, once a minute: simulated days played, bars, the process's resident memory (RSS),
the database's size on disk (file + WAL) and its rows of predictions, signals, orders and
trades. Goal (issue 18): RSS flat within 10% once warmed up, and the database growing only
by orders and trades once the retention (90 days of predictions and signals) is reached.
Run: QT_QPA_PLATFORM=offscreen .venv/bin/python bench/bench_soak.py [minutes] [symbols]
"""

from __future__ import annotations

import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("AI_TRADER_DEMO_TODAY", "2025-03-04T17:00:00+00:00")  # a pinned first day

from loguru import logger
from PySide6.QtWidgets import QApplication

from app.engine.bootstrap import build_engine
from app.engine.events import BarEvent, EventBus, PredictionEvent
from app.engine.paths import AppPaths
from app.engine.settings import Settings
from app.widgets.chart import CandleChart

SYMBOLS = ("PLTR", "NVDA", "AMD", "TSLA", "AAPL", "MSFT", "META", "AMZN", "GOOG", "SPY")


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rows(db: Path) -> dict[str, int]:
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {t: con.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
                for t in ("prediction", "signal", "order", "trade")}
    finally:
        con.close()


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    logger.remove()
    app = QApplication.instance() or QApplication([])
    chart = CandleChart()
    first = SYMBOLS[0]
    closed: list = []

    def on_event(e: object) -> None:
        if isinstance(e, BarEvent) and e.closed and e.bar.symbol == first:
            closed.append(e.bar)
        elif isinstance(e, PredictionEvent) and e.symbol == first:
            chart.add_prediction(e.time, e.p_up)

    with tempfile.TemporaryDirectory() as home:
        paths = AppPaths(Path(home)).ensure()
        bus = EventBus()
        bus.subscribe(on_event)
        settings = Settings(watchlist=SYMBOLS[:n], mode="auto", demo_speed=100_000.0)
        ctx = build_engine(paths, settings, bus=bus)
        chart.set_history([b for b in ctx.history if b.symbol == first])
        start_day = ctx.clock.now()
        t0 = time.monotonic()
        next_report = t0
        print(f"{n} symbols, {minutes:g} min at maximum speed; chart of {first} offscreen")
        print("  min  sim days     bars   RSS MB   DB MB  predictions  signals  orders  trades")
        while True:
            for _ in range(200):
                ctx.replay.step()
            if closed:
                chart.add_bars(tuple(closed))
                closed.clear()
            app.processEvents()
            now = time.monotonic()
            if now >= next_report:
                db = paths.database
                size = sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists()) / 2**20
                r = rows(db)
                days = (ctx.clock.now() - start_day).total_seconds() / 86400
                print(f"{(now - t0) / 60:5.1f} {days:9.1f} {ctx.replay.bars_played:8d} {rss_mb():8.1f} {size:7.1f}"
                      f" {r['prediction']:12d} {r['signal']:8d} {r['order']:7d} {r['trade']:7d}", flush=True)
                next_report += 60
                if now - t0 >= minutes * 60:
                    break
        ctx.close()
    print(f"chart holds {len(chart.bars)} bars")


if __name__ == "__main__":
    main()
