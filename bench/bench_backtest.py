"""Backtest speed beside backtesting.py, in one run, on real bars.

Two comparisons, each alternating the two ``repeat`` times and comparing medians (one pair of
runs swings by +-30% on a shared 2-core machine):

1. The engine: ``run_backtest`` of sma_cross 10/20 --plain (every bar through the live cycle:
   bot, signal pipeline, risk, order router, simulated broker) against backtesting.py's
   ``Backtest(...).run()`` of the same strategy on the same bars. Issue #16's target: >= 2x.
   Both make the same trades (checked here, and trade for trade in tests/test_backtest.py).
2. The whole command line, each in a fresh process: ``python main.py backtest --csv ... --plain
   --json ...`` (start-up, load and clean the CSV, run, write the report) against a script that
   imports backtesting.py, reads the CSV with pandas and runs. Target: the app no slower.

Bars: ../shared/data's SPY 5-minute file (20,769 bars), repeated end to end ``copies`` times
(times shifted by whole weeks) for a longer run. Without that folder: a random walk of minutes.
Run: .venv/bin/python bench/bench_backtest.py [copies] [repeat]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from loguru import logger  # noqa: E402
from test_backtest import _walk, reference_backtest  # noqa: E402

from app.engine.backtest.config import BacktestConfig  # noqa: E402
from app.engine.backtest.runner import run_backtest  # noqa: E402
from app.engine.data.portfolio import load_portfolio  # noqa: E402
from app.engine.types import Bar  # noqa: E402

SPY = ROOT.parent / "shared" / "data" / "SPY_5m_2024-03-26_2025-04-02.csv"

REFERENCE_SCRIPT = """
import sys, warnings
warnings.simplefilter("ignore")
import pandas as pd
from backtesting import Backtest, Strategy
from backtesting.lib import crossover
df = pd.read_csv(sys.argv[1], index_col=0, parse_dates=True)
df.columns = [c.capitalize() for c in df.columns]
def sma(v, n):
    return pd.Series(v).rolling(n).mean().to_numpy()
class SmaCross(Strategy):
    def init(self):
        self.fast = self.I(sma, self.data.Close, 10)
        self.slow = self.I(sma, self.data.Close, 20)
    def next(self):
        if crossover(self.fast, self.slow):
            self.buy()
        elif crossover(self.slow, self.fast):
            self.position.close()
stats = Backtest(df, SmaCross, cash=1_000_000, commission=0.0).run()
print(stats["# Trades"])
"""


def _bars(copies: int) -> tuple[list[Bar], str]:
    if not SPY.exists():
        return _walk(20_000 * copies, seed=3), f"{20_000 * copies:,} random-walk minutes (../shared/data absent)"
    bars, _ = load_portfolio([str(SPY)], "SPY", "5m", keep_extended=True)
    span = bars[-1].time - bars[0].time + timedelta(weeks=1)
    span = timedelta(weeks=span.days // 7 + 1)
    out = [Bar(b.symbol, b.time + k * span, b.open, b.high, b.low, b.close, b.volume)
           for k in range(copies) for b in bars]
    over = f", {copies} times over" if copies > 1 else ""
    return out, f"{len(out):,} real SPY 5-minute bars ({SPY.name}{over})"


def _write_csv(bars: list[Bar], path: Path) -> None:
    with path.open("w") as f:
        f.write("timestamp,open,high,low,close,volume\n")
        for b in bars:
            f.write(f"{b.time.isoformat()},{b.open!r},{b.high!r},{b.low!r},{b.close!r},{b.volume:g}\n")


def _wall(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT, env=env)
    return time.perf_counter() - t0


def _python_env(cache: Path) -> dict[str, str]:
    """The environment both commands run in: Python keeps its compiled bytecode, as on a user's
    machine (this sandbox sets PYTHONDONTWRITEBYTECODE, which recompiled every one of the app's
    modules on each start while the reference's installed packages had theirs), in ``cache``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(cache)
    return env


def main() -> None:
    logger.remove()
    warnings.simplefilter("ignore")
    copies = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    bars, said = _bars(copies)
    n = len(bars)
    cfg = BacktestConfig(symbol=bars[0].symbol, timeframe="5m", cash=1_000_000, plain=True)
    print(f"bars: {said}; sma_cross 10/20, plain, no costs; {repeat} alternating runs; {os.cpu_count()} cores")
    ours_s: list[float] = []
    ref_s: list[float] = []
    for k in range(repeat):
        ours = run_backtest(bars, cfg)
        ours_s.append(ours.model_seconds + ours.elapsed_seconds)
        stats, seconds = reference_backtest(bars)
        ref_s.append(seconds)
        ref_trades = int(stats["# Trades"])  # type: ignore[index]
        print(f"  run {k + 1}: engine {ours_s[-1]:.2f} s, backtesting.py {seconds:.2f} s, ratio "
              f"{seconds / ours_s[-1]:.2f}; trades {len(ours.trades)} vs {ref_trades}")
    ours_med, ref_med = statistics.median(ours_s), statistics.median(ref_s)
    print(f"engine:         median {ours_med:5.2f} s  {n / ours_med:>10,.0f} bars/s")
    print(f"backtesting.py: median {ref_med:5.2f} s  {n / ref_med:>10,.0f} bars/s")
    print(f"engine speed / backtesting.py's (medians): {ref_med / ours_med:.2f}x (target >= 2)")

    with tempfile.TemporaryDirectory() as tmp:
        csv, script, home = Path(tmp) / "SPY.csv", Path(tmp) / "reference.py", Path(tmp) / "home"
        _write_csv(bars, csv)
        script.write_text(REFERENCE_SCRIPT)
        app = [sys.executable, "main.py", "--data-dir", str(home), "backtest", "--csv", f"SPY={csv}",
               "--timeframe", "5m", "--plain", "--slippage-bps", "0", "--json", str(Path(tmp) / "r.json")]
        ref = [sys.executable, str(script), str(csv)]
        env = _python_env(Path(tmp) / "pycache")
        _wall(app, env)  # warm the disk cache and the bytecode for both
        _wall(ref, env)
        app_s, script_s = [], []
        for _ in range(max(3, repeat // 2)):
            app_s.append(_wall(app, env))
            script_s.append(_wall(ref, env))
        a, r = statistics.median(app_s), statistics.median(script_s)
        print(f"whole command line, fresh process each: app {a:.2f} s (load + clean + run + JSON), "
              f"backtesting.py script {r:.2f} s (read_csv + run); app / script {a / r:.2f} (target <= 1)")


if __name__ == "__main__":
    main()
