"""Launch-to-window time: spawn the app, read when its window is up, repeat.

Beside it, the floor: an empty window of the same stack (PySide6, pyqtgraph and pandas
imported, one plot shown), launched and timed the same way, alternating with the app.
Targets: the app <= 1.5 s (issue #2), and <= 1.5x the floor (issue #17), medians.
Run: .venv/bin/python bench/bench_startup.py [runs]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(home: str) -> float:
    env = {**os.environ, "AI_TRADER_STARTUP_PROBE": "1", "QT_QPA_PLATFORM": "offscreen"}
    out = Path(home) / "shot.png"
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--demo", "--data-dir", home,
                           "--screenshot", str(out), "--after", "0.5"],
                          env=env, capture_output=True, text=True, timeout=120)
    for line in proc.stdout.splitlines():
        if line.startswith("window-shown"):
            return float(line.split()[1]) - t0
    raise RuntimeError(f"no window-shown line (rc {proc.returncode}): {proc.stderr[-400:]}")


FLOOR = """
import sys, time
import pandas
import pyqtgraph as pg
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow()
w.setCentralWidget(pg.PlotWidget())
w.resize(1400, 860)
w.show()
QTimer.singleShot(0, lambda: (print(f"window-shown {time.time():.4f}", flush=True), app.quit()))
app.exec()
"""


def floor_run(script: Path) -> float:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    t0 = time.time()
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    for line in proc.stdout.splitlines():
        if line.startswith("window-shown"):
            return float(line.split()[1]) - t0
    raise RuntimeError(f"no window-shown line from the floor (rc {proc.returncode}): {proc.stderr[-400:]}")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with tempfile.TemporaryDirectory() as home:
        script = Path(home) / "floor.py"
        script.write_text(FLOOR)
        one_run(home)  # warm the OS file cache and create the database once
        floor_run(script)
        times, floors = [], []
        for _ in range(runs):
            times.append(one_run(home))
            floors.append(floor_run(script))
    for i, (t, f) in enumerate(zip(times, floors, strict=True), 1):
        print(f"run {i}: launch -> window shown {t:.3f} s; empty PySide6 + pyqtgraph + pandas window {f:.3f} s")
    app, floor = statistics.median(times), statistics.median(floors)
    print(f"median {app:.3f} s, max {max(times):.3f} s over {runs} runs (target <= 1.5 s)")
    print(f"floor median {floor:.3f} s: the app takes {app / floor:.2f}x the floor (target <= 1.5x)")


if __name__ == "__main__":
    main()
