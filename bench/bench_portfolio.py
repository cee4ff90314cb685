"""A trading cycle for a portfolio of ten symbols: one execution core, ten signal pipelines.

Ten simulated markets of 5-minute bars (a seed each), one bot with the real SQLite record
and the simulated broker (its broker stops working). At each bar time every symbol's bar
closes in turn, then the stop check runs once: that is one full cycle for the portfolio.
Prints p50/p99/max of (a) bar close -> order handed to the broker adapter and (b) the full
cycle for all ten. Targets (issue "Execution core"): both p99 <= 50 ms.
Run: .venv/bin/python bench/bench_portfolio.py [rules|sma_cross] [sessions]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_cycle import TimedBroker, pct
from loguru import logger

from app.engine.backtest.strategies import make_model
from app.engine.bot import TradingBot
from app.engine.clock import MarketCalendar, SimClock
from app.engine.records import SqlRecorder
from app.engine.settings import Settings
from app.engine.simmarket import SimulatedMarket
from app.engine.storage import Storage

SYMBOLS = ("PLTR", "NVDA", "AMD", "TSLA", "SNOW", "CRWD", "NET", "SHOP", "SQ", "COIN")


def main() -> None:
    logger.remove()
    name = sys.argv[1] if len(sys.argv) > 1 else "rules"
    n_sessions = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    cal = MarketCalendar()
    sessions = cal.previous_sessions(datetime(2025, 7, 1, tzinfo=UTC), n_sessions)
    by_time: dict[datetime, list] = {}
    for k, symbol in enumerate(SYMBOLS):
        for bar in SimulatedMarket(symbol, 11 + k, cal).history(sessions):
            by_time.setdefault(bar.time, []).append(bar)
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "trader.db")
        times = sorted(by_time)
        clock = SimClock(times[0])
        broker = TimedBroker(clock, 1_000_000.0, 2.0)
        # room for five 20% positions at once, as the product's limits read
        settings = Settings(mode="auto", auto_threshold=0.7, max_exposure_pct=1.0, max_round_trips=100)
        models = {s: make_model(name)[0] for s in SYMBOLS}
        bot = TradingBot(settings, clock, broker, models[SYMBOLS[0]], SqlRecorder(storage, Path(tmp) / "b.jsonl"),
                         calendar=cal, sleep=lambda s: None, models=models.__getitem__)
        bot.bus.subscribe(lambda e: None)  # a listener, as the GUI has: events are built
        bot.start()
        to_order: list[float] = []
        cycle: list[float] = []
        most_held = 0
        for t in times:
            clock.set(t)
            for bar in by_time[t]:
                broker.on_bar(bar)
            clock.set(t + timedelta(minutes=5))
            t0 = time.perf_counter()
            for bar in by_time[t]:
                before = len(broker.submitted_at)
                b0 = time.perf_counter()
                bot.on_bar_close(bar)
                if len(broker.submitted_at) > before:
                    to_order.append((broker.submitted_at[before] - b0) * 1000)
            bot.on_clock()
            cycle.append((time.perf_counter() - t0) * 1000)
            most_held = max(most_held, len(bot.records.positions()))
        trades = len(bot.records.trades)
        storage.close()
    print(f"model {name}: {len(SYMBOLS)} symbols x {len(times)} bar times ({n_sessions} sessions), "
          f"{len(to_order)} bar closes that sent an order, {trades} round trips, at most {most_held} held at once")
    if to_order:
        print(f"bar close -> order at adapter: p50 {statistics.median(to_order):.2f} ms, "
              f"p99 {pct(to_order, 0.99):.2f} ms, max {max(to_order):.2f} ms (target p99 <= 50 ms)")
    print(f"full cycle, all {len(SYMBOLS)} symbols: p50 {statistics.median(cycle):.2f} ms, "
          f"p99 {pct(cycle, 0.99):.2f} ms, max {max(cycle):.2f} ms (target p99 <= 50 ms)")


if __name__ == "__main__":
    main()
