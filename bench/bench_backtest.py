"""Backtest speed: sma_cross --plain through the full engine vs backtesting.py.

Same 120,000 one-minute bars, same strategy, measured side by side in one run
and printed as a ratio (issue #7's target: ratio >= 1). The two alternate,
``repeat`` times each, and the ratio of the medians is the headline: one pair
of runs swings by +-0.3 on this shared machine. The engine's time includes
the strategy's vectorised pass (backtesting.py's ``run`` computes its SMAs too).
Also checks the two made the same number of trades.
Run: .venv/bin/python bench/bench_backtest.py [bars] [repeat]
"""

from __future__ import annotations

import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loguru import logger
from test_backtest import _walk, reference_backtest

from app.engine.backtest.config import BacktestConfig
from app.engine.backtest.runner import run_backtest


def main() -> None:
    logger.remove()
    warnings.simplefilter("ignore")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 120_000
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    bars = _walk(n, seed=3)
    cfg = BacktestConfig(symbol="TEST", timeframe="1m", cash=1_000_000, plain=True)
    ours_s: list[float] = []
    ref_s: list[float] = []
    print(f"bars: {n:,} one-minute bars, strategy sma_cross 10/20, plain; {repeat} alternating runs")
    for k in range(repeat):
        ours = run_backtest(bars, cfg)
        ours_s.append(ours.model_seconds + ours.elapsed_seconds)
        stats, seconds = reference_backtest(bars)
        ref_s.append(seconds)
        ref_trades = len(stats["_trades"])  # type: ignore[index]
        print(f"  run {k + 1}: engine {ours_s[-1]:.2f} s (model {ours.model_seconds:.3f} s), "
              f"backtesting.py {seconds:.2f} s, ratio {seconds / ours_s[-1]:.2f}; "
              f"trades {len(ours.trades)} vs {ref_trades}")
    ours_med, ref_med = statistics.median(ours_s), statistics.median(ref_s)
    print(f"engine:         median {ours_med:5.2f} s  {n / ours_med:>10,.0f} bars/s")
    print(f"backtesting.py: median {ref_med:5.2f} s  {n / ref_med:>10,.0f} bars/s")
    print(f"ratio engine/backtesting.py (medians): {ref_med / ours_med:.2f} (target >= 1.0); "
          f"per run {min(r / o for o, r in zip(ours_s, ref_s)):.2f} .. {max(r / o for o, r in zip(ours_s, ref_s)):.2f}")


if __name__ == "__main__":
    main()
