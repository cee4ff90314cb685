"""Trading-cycle latency with the real record (SQLite) and the simulated broker.

Prints p50/p99/max of (a) bar close -> order handed to the broker adapter and
(b) the whole cycle per bar, over a few simulated sessions of 5-minute bars.
Targets (issue #5): (a) <= 50 ms p99 (network excluded); (b) <= 100 ms with the
ensemble. Run: .venv/bin/python bench/bench_cycle.py [rules|sma_cross]
or:  .venv/bin/python bench/bench_cycle.py ensemble APP_HOME PLTR_5m.csv
(APP_HOME holds a model trained with `main.py train`; the CSV's bars are replayed).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loguru import logger

from app.engine.bot import TradingBot
from app.engine.broker.simulated import SimulatedBroker
from app.engine.clock import MarketCalendar, SimClock
from app.engine.records import SqlRecorder
from app.engine.settings import Settings
from app.engine.simmarket import SimulatedMarket
from app.engine.storage import Storage
from app.engine.types import Order


class TimedBroker(SimulatedBroker):
    """Notes when each order reaches the adapter."""

    def __init__(self, *a: object, **kw: object) -> None:
        super().__init__(*a, **kw)  # type: ignore[arg-type]
        self.submitted_at: list[float] = []

    def submit(self, order: Order) -> Order:
        self.submitted_at.append(time.perf_counter())
        return super().submit(order)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    logger.remove()
    name = sys.argv[1] if len(sys.argv) > 1 else "rules"
    cal = MarketCalendar()
    if name == "ensemble":
        from app.engine.data.csv_import import read_csv
        from app.engine.data.frame import frame_to_bars
        from app.engine.ml.live import load_signal_model
        from app.engine.paths import AppPaths

        bars = frame_to_bars(read_csv(sys.argv[3]).frame, "PLTR")[-1600:]
        model, notes = load_signal_model(AppPaths.resolve(sys.argv[2]), Settings())
        print("model:", model.name, *notes)
    else:
        from app.engine.backtest.strategies import make_model

        sessions = cal.previous_sessions(datetime(2025, 7, 1, tzinfo=UTC), 20)
        bars = SimulatedMarket("PLTR", 9, cal).history(sessions)
        model, _ = make_model(name)
    with tempfile.TemporaryDirectory() as tmp:
        storage = Storage(Path(tmp) / "trader.db")
        clock = SimClock(bars[0].time)
        broker = TimedBroker(clock, 100_000.0, 2.0)
        settings = Settings(mode="auto", auto_threshold=0.7)
        bot = TradingBot(settings, clock, broker, model, SqlRecorder(storage, Path(tmp) / "b.jsonl"),
                         calendar=cal, sleep=lambda s: None)
        bot.bus.subscribe(lambda e: None)  # a listener, as the GUI has: events are built
        bot.start()
        to_order: list[float] = []
        cycle: list[float] = []
        for bar in bars:
            clock.set(bar.time)
            broker.on_bar(bar)
            clock.set(bar.time + timedelta(minutes=5))
            before = len(broker.submitted_at)
            t0 = time.perf_counter()
            bot.on_bar_close(bar)
            t1 = time.perf_counter()
            cycle.append((t1 - t0) * 1000)
            if len(broker.submitted_at) > before:
                to_order.append((broker.submitted_at[before] - t0) * 1000)
        storage.close()
    print(f"model {name}: {len(bars)} bars, {len(to_order)} bar closes that sent an order")
    if to_order:
        print(f"bar close -> order at adapter: p50 {statistics.median(to_order):.2f} ms, "
              f"p99 {pct(to_order, 0.99):.2f} ms, max {max(to_order):.2f} ms (target p99 <= 50 ms)")
    print(f"full cycle per bar: p50 {statistics.median(cycle):.2f} ms, p99 {pct(cycle, 0.99):.2f} ms, "
          f"max {max(cycle):.2f} ms")


if __name__ == "__main__":
    main()
