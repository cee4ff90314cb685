"""GUI smoothness: the GUI thread while a backtest runs, and chart frames with 100k candles.

(a) A demo window replays the simulated market at high speed while a long
    backtest runs in its Backtest tab. A 10 ms QTimer on the GUI thread is the
    watchdog: every gap between its ticks beyond 10 ms is time the GUI thread
    could not answer. Prints the worst gap, p99 and how many gaps passed 50 ms
    (target: none; the GUI thread never blocks more than 50 ms). A baseline
    without the backtest runs first, so the backtest's own cost shows. Also
    prints how long Python's garbage collector held the interpreter, since a
    collection stops every thread.
(b) A chart holding 100,000 candles is panned 100 times (dragged a few candles
    at a time, and in jumps across the whole history); each frame is timed
    until it is painted by the event loop (``processEvents``) and, separately,
    with ``QWidget.grab`` (a full offscreen render). Target <= 16 ms a frame.

Prints measured figures, asserts nothing.
(c) The demo at its default speed (600x) while the Model tab retrains the
    ensemble in its own process: the same watchdog.
Run: .venv/bin/python bench/bench_gui.py [seconds=20] [backtest bars=300000] [parts=abc]
"""

from __future__ import annotations

import gc
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
from loguru import logger
from PySide6.QtCore import QElapsedTimer, QTimer
from PySide6.QtWidgets import QApplication

from app.engine.types import Bar


def walk_bars(n: int, seed: int = 3, minutes: int = 5) -> list[Bar]:
    rng = np.random.default_rng(seed)
    close = 40 * np.exp(np.cumsum(rng.normal(0, 0.003, n)))
    open_ = np.r_[close[0], close[:-1]]
    high, low = np.maximum(open_, close) * 1.002, np.minimum(open_, close) * 0.998
    vol = rng.integers(1_000, 50_000, n).astype(float)
    t0 = datetime(2020, 1, 2, 14, 30, tzinfo=UTC)
    return [Bar("PLTR", t0 + timedelta(minutes=minutes * i), *map(float, row))
            for i, row in enumerate(zip(open_, high, low, close, vol))]


def write_csv(path: Path, n: int) -> Path:
    bars = walk_bars(n, minutes=1)
    path.write_text("timestamp,open,high,low,close,volume\n" + "".join(
        f"{int(b.time.timestamp())},{b.open:.4f},{b.high:.4f},{b.low:.4f},{b.close:.4f},{b.volume:.0f}\n"
        for b in bars))
    return path


class Watchdog:
    """A 10 ms timer on the GUI thread; records the gaps between its ticks."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self.clock = QElapsedTimer()
        self.timer = QTimer()
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self.gaps.clear()
        self.clock.start()
        self.timer.start(10)

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        self.gaps.append(self.clock.nsecsElapsed() / 1e6)
        self.clock.restart()


class GcMeter:
    """Wall time of every garbage collection, whatever thread triggered it."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float]] = []
        self._t = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t = time.perf_counter()
        else:
            self.pauses.append((info["generation"], (time.perf_counter() - self._t) * 1000))


def measure(app: QApplication, w: object, seconds: float, label: str, keep_running: object = None) -> None:
    """Spin the event loop for ``seconds`` (restarting the backtest whenever it ends) and print the gaps."""
    dog, meter = Watchdog(), GcMeter()
    gc.callbacks.append(meter)
    bars0, runs, t_end = len(w.chart.bars), 0, time.monotonic() + seconds  # type: ignore[attr-defined]
    dog.start()
    while time.monotonic() < t_end:
        if keep_running is not None and not keep_running.running:  # type: ignore[attr-defined]
            keep_running.run()  # type: ignore[attr-defined]
            runs += 1
        app.processEvents()
        time.sleep(0.001)
    dog.stop()
    gc.callbacks.remove(meter)
    gaps = sorted(dog.gaps)
    extra = f", {runs} backtest run(s) started" if keep_running is not None else ""
    print(f"    {label} for {seconds:.0f} s (+{len(w.chart.bars) - bars0:,} candles{extra}):")  # type: ignore[attr-defined]
    print(f"      ticks {len(gaps):,}; gap p50 {statistics.median(gaps):.1f} ms, p99 "
          f"{gaps[int(len(gaps) * 0.99) - 1]:.1f} ms, max {gaps[-1]:.1f} ms -> max stall beyond the tick "
          f"{max(0.0, gaps[-1] - 10):.1f} ms; gaps > 50 ms: {sum(g > 50 for g in gaps)} (target 0)")
    if meter.pauses:
        worst = max(meter.pauses, key=lambda p: p[1])
        print(f"      GC in this process: {len(meter.pauses)} collections, worst {worst[1]:.1f} ms (gen {worst[0]})")
    if keep_running is not None:
        print(f"      backtest tab: {keep_running.status.text()}")  # type: ignore[attr-defined]


def open_demo(app: QApplication, home: str, *extra: str) -> Any:
    """A shown demo window whose engine is ready (or 60 s have passed)."""
    from app.main import build_window

    w = build_window(["--demo", "--data-dir", home, *extra])
    w.resize(1400, 860)
    w.show()
    deadline = time.monotonic() + 60
    while not w.engine_ready and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.005)
    return w


def bench_responsiveness(app: QApplication, seconds: float, backtest_bars: int) -> None:
    with tempfile.TemporaryDirectory() as home:
        csv = write_csv(Path(home) / "long-1m.csv", backtest_bars)
        w = open_demo(app, home, "--speed", "30000")
        tab = w.backtest_tab
        w.tabs.setCurrentWidget(tab)
        tab.csv_edit.setText(str(csv))
        tab.timeframe_box.setCurrentText("1m")
        tab.plain_box.setChecked(True)
        print("(a) GUI thread, demo market at 30000x; a 10 ms watchdog timer on the GUI thread")
        measure(app, w, seconds / 2, "demo only (baseline)")
        measure(app, w, seconds, f"+ {backtest_bars:,}-bar 1m backtests in the Backtest tab", keep_running=tab)
        w.close()
        app.processEvents()


def bench_training(app: QApplication, seconds: float) -> None:
    """(c) The issue's own scenario: the demo at its default speed while the Model
    tab retrains the ensemble (a separate process) on PLTR daily bars."""
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "PLTR_1d_2020-09-30_2026-03-31_merged.csv"
    with tempfile.TemporaryDirectory() as home:
        if real.exists():
            csv = real
        else:
            csv = Path(home) / "daily.csv"
            rows = ["date,open,high,low,close,volume"]
            price = 20.0
            for i, day in enumerate(np.arange(np.datetime64("2020-01-02"), np.datetime64("2025-06-01"))):
                price *= float(np.exp(np.sin(i / 9.0) * 0.01))
                rows.append(f"{day},{price},{price * 1.01},{price * 0.99},{price},{1_000_000 + i}")
            csv.write_text("\n".join(rows) + "\n")
        w = open_demo(app, home)
        tab = w.model_tab
        tab.timeframe.setCurrentText("1d")
        tab.csv.setText(str(csv))
        w.tabs.setCurrentWidget(tab)
        print(f"(c) GUI thread, demo market at its default speed, Retrain running in the Model tab ({csv.name})")
        tab.start_training()
        measure(app, w, seconds, "demo + training")
        print(f"    training: {tab.status.text()[:100]}")
        w.close()
        app.processEvents()


def bench_chart(app: QApplication, n: int = 100_000, frames: int = 100) -> None:
    from app.widgets.chart import CandleChart

    chart = CandleChart()
    chart.resize(1400, 800)
    chart.show()
    bars = walk_bars(n)
    t0 = time.perf_counter()
    chart.set_history(bars)
    app.processEvents()
    t_set = time.perf_counter() - t0
    more = walk_bars(n + 50)[n:]
    t0 = time.perf_counter()
    for b in more:
        chart.add_bars((b,))
    t_add = (time.perf_counter() - t0) / len(more)
    print(f"(b) chart with {n:,} candles: set_history {t_set * 1000:.0f} ms once; a new bar "
          f"{t_add * 1000:.2f} ms (arrays appended, not rebuilt)")
    cases = (("160 candles, dragged 8 at a time", 160, 8, ()),
             ("160 candles, jumps across history", 160, 0, ()),
             ("160 candles, jumps, EMA + Bollinger", 160, 0, ("ema", "bb")),
             ("3,000 candles, dragged 150 at a time", 3000, 150, ()),
             ("50,000 candles (merged blocks), dragged 500", 50_000, 500, ()))
    for label, width, drag, overlays in cases:
        for name in ("ema", "bb"):
            chart.overlay_boxes[name].setChecked(name in overlays)
        for how in ("paint", "grab"):
            times = []
            for i in range(frames):
                lo = max(0, n - width - (drag * (frames - i) if drag else (n - width) * (frames - i) // frames))
                t0 = time.perf_counter()
                chart.price.setXRange(lo, lo + width, padding=0)
                if how == "paint":
                    app.processEvents()  # the event loop's own path: one coalesced paint
                else:
                    chart.grab()
                times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            print(f"    {label:<44} {how:<5}: mean {statistics.fmean(times):5.1f} ms, "
                  f"p95 {times[int(frames * 0.95) - 1]:5.1f} ms, max {times[-1]:5.1f} ms per frame")
    chart.close()


def main() -> None:
    logger.remove()
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    backtest_bars = int(sys.argv[2]) if len(sys.argv) > 2 else 300_000
    parts = sys.argv[3] if len(sys.argv) > 3 else "abc"
    app = QApplication.instance() or QApplication(sys.argv[:1])
    if "b" in parts:
        bench_chart(app)
    if "a" in parts:
        bench_responsiveness(app, seconds, backtest_bars)
    if "c" in parts:
        bench_training(app, seconds)


if __name__ == "__main__":
    main()
