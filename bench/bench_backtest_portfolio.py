"""Portfolio backtest speed: a year of 5-minute bars for 10 symbols through the engine.

Ten symbols of the simulated market (common factor, each its own level, volatility
and beta), 252 NYSE sessions of 78 bars each: ~196k bar events on one account, with
the product's rules on (risk limits, stops, end-of-day flatten), strategy sma_cross.
Prints bar events per second through the engine (issue 14's target: >= 100,000),
and separately the strategy's vectorised pass (the model's answers). This shared host's
speed drifts by half over a day, so the run ends with a yardstick: backtesting.py's
run of 120,000 one-minute bars (as in bench_backtest.py), timed the same way, to scale
the figure by.
Run: .venv/bin/python bench/bench_backtest_portfolio.py [sessions] [repeat]
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from loguru import logger

from app.engine.backtest.config import BacktestConfig
from app.engine.backtest.runner import run_backtest
from app.engine.clock import MarketCalendar
from app.engine.settings import Settings
from app.engine.simmarket import watchlist_markets

SYMBOLS = ("PLTR", "NVDA", "AMD", "TSLA", "AAPL", "MSFT", "META", "AMZN", "GOOG", "SPY")


def main() -> None:
    logger.remove()
    warnings.simplefilter("ignore")
    sessions = int(sys.argv[1]) if len(sys.argv) > 1 else 252
    repeat = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    cal = MarketCalendar()
    days = cal.previous_sessions(datetime(2025, 6, 1, tzinfo=UTC), sessions)
    t0 = time.perf_counter()
    bars = [b for m in watchlist_markets(SYMBOLS, 7, cal) for b in m.history(days)]
    print(f"{len(bars):,} bar events: {len(SYMBOLS)} symbols x {sessions} sessions of 5-minute bars "
          f"(made in {time.perf_counter() - t0:.1f} s); sma_cross, product rules, max_exposure_pct 1.0")
    settings = Settings(max_exposure_pct=1.0)
    cfg = BacktestConfig(symbol=",".join(SYMBOLS), timeframe="5m", strategy="sma_cross")
    engine: list[float] = []
    for k in range(repeat):
        res = run_backtest(bars, cfg, settings=settings)
        engine.append(res.elapsed_seconds)
        print(f"  run {k + 1}: engine {res.elapsed_seconds:.2f} s ({len(bars) / res.elapsed_seconds:,.0f} bar "
              f"events/s), model {res.model_seconds:.2f} s; {res.metrics['trades']} trades, "
              f"most positions at once {int((res.held > 0).sum(axis=1).max())}")
    med = statistics.median(engine)
    print(f"engine median {med:.2f} s: {len(bars) / med:,.0f} bar events per second (target >= 100,000)")
    from test_backtest import _walk, reference_backtest  # the yardstick: host speed, not the engine's

    walk = _walk(120_000, seed=3)
    ref = statistics.median(reference_backtest(walk)[1] for _ in range(3))
    print(f"yardstick: backtesting.py, 120,000 bars, median of 3: {ref:.2f} s")


if __name__ == "__main__":
    main()
