"""Backtest speed: sma_cross --plain through the full engine vs backtesting.py.

Same 120,000 one-minute bars, same strategy, measured side by side in one run
and printed as a ratio (issue #7's target: ratio >= 1). Also checks the two
made the same trades. Run: .venv/bin/python bench/bench_backtest.py [bars]
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loguru import logger  # noqa: E402

from app.engine.backtest.runner import BacktestConfig, run_backtest  # noqa: E402
from test_backtest import _walk  # noqa: E402


def reference(bars: list) -> tuple[float, int]:
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    df = pd.DataFrame({"Open": [b.open for b in bars], "High": [b.high for b in bars],
                       "Low": [b.low for b in bars], "Close": [b.close for b in bars],
                       "Volume": [b.volume for b in bars]},
                      index=pd.DatetimeIndex([b.time for b in bars]).tz_convert(None))

    def sma(v: np.ndarray, n: int) -> np.ndarray:
        return pd.Series(v).rolling(n).mean().to_numpy()

    class SmaCross(Strategy):
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, 10)
            self.slow = self.I(sma, self.data.Close, 20)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    bt = Backtest(df, SmaCross, cash=1_000_000, commission=0.0)
    t0 = time.perf_counter()
    stats = bt.run()
    return time.perf_counter() - t0, len(stats["_trades"])


def main() -> None:
    logger.remove()
    warnings.simplefilter("ignore")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 120_000
    bars = _walk(n, seed=3)
    ours = run_backtest(bars, BacktestConfig(symbol="TEST", timeframe="1m", cash=1_000_000, plain=True))
    ref_s, ref_trades = reference(bars)
    ours_rate, ref_rate = n / ours.elapsed_seconds, n / ref_s
    print(f"bars: {n:,} one-minute bars, strategy sma_cross 10/20, plain")
    print(f"engine:         {ours.elapsed_seconds:6.2f} s  {ours_rate:>10,.0f} bars/s  {len(ours.trades)} trades")
    print(f"backtesting.py: {ref_s:6.2f} s  {ref_rate:>10,.0f} bars/s  {ref_trades} trades")
    print(f"ratio engine/backtesting.py: {ours_rate / ref_rate:.2f} (target >= 1.0)")


if __name__ == "__main__":
    main()
