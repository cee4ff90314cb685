"""Backtest speed: sma_cross --plain through the full engine vs backtesting.py.

Same 120,000 one-minute bars, same strategy, measured side by side in one run
and printed as a ratio (issue #7's target: ratio >= 1). Also checks the two
made the same trades. Run: .venv/bin/python bench/bench_backtest.py [bars]
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loguru import logger  # noqa: E402

from app.engine.backtest.runner import BacktestConfig, run_backtest  # noqa: E402
from test_backtest import _walk, reference_backtest  # noqa: E402


def reference(bars: list) -> tuple[float, int]:
    stats, seconds = reference_backtest(bars)
    return seconds, len(stats["_trades"])  # type: ignore[index]


def main() -> None:
    logger.remove()
    warnings.simplefilter("ignore")
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 120_000
    bars = _walk(n, seed=3)
    ours = run_backtest(bars, BacktestConfig(symbol="TEST", timeframe="1m", cash=1_000_000, plain=True))
    ref_s, ref_trades = reference(bars)
    ours_s = ours.model_seconds + ours.elapsed_seconds  # like Backtest.run, which computes its SMAs too
    ours_rate, ref_rate = n / ours_s, n / ref_s
    print(f"bars: {n:,} one-minute bars, strategy sma_cross 10/20, plain")
    print(f"engine:         {ours_s:6.2f} s  {ours_rate:>10,.0f} bars/s  {len(ours.trades)} trades "
          f"(model {ours.model_seconds:.3f} s + trading cycle {ours.elapsed_seconds:.2f} s)")
    print(f"backtesting.py: {ref_s:6.2f} s  {ref_rate:>10,.0f} bars/s  {ref_trades} trades")
    print(f"ratio engine/backtesting.py: {ours_rate / ref_rate:.2f} (target >= 1.0)")


if __name__ == "__main__":
    main()
