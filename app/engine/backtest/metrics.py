"""Performance metrics of a backtest, from its equity curve and its trades.

The definitions (the README's "Backtest metrics" says the same): with r_t the return of the
equity from one bar's close to the next, f the risk-free rate per bar ((1 + annual)^(1/N) - 1)
and N the bars in a year (the timeframe's bars per session x 252):

* Sharpe = mean(r - f) / std(r - f) x sqrt(N) (population std);
* Sortino = mean(r - f) / sqrt(mean(min(r - f, 0)^2)) x sqrt(N): the downside deviation over
  every bar, not only the losing ones;
* max drawdown = min(equity / running peak - 1), its duration the longest run of bars under a
  peak; Calmar = CAGR / |max drawdown|;
* win rate and profit factor over closed trades; a position still open at the end is marked
  to market at the last close (in the equity and the return) and counted in ``open_positions``;
* buy and hold = last close / first open - 1.

A value that is undefined (no trades, no losing bar, no drawdown) is NaN, shown as "n/a", never 0.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from app.engine.types import Trade, timeframe_of

TRADING_DAYS_PER_YEAR = 252


def compute_metrics(equity: np.ndarray, times: list[datetime], trades: list[Trade], timeframe: str,
                    in_market: np.ndarray, first_open: float, last_close: float,
                    traded_value: float, risk_free_rate: float = 0.0,
                    open_positions: int = 0) -> dict[str, float | int | str]:
    start, end = float(equity[0]), float(equity[-1])
    rets = np.diff(equity) / equity[:-1] if len(equity) > 1 else np.zeros(0)
    per_year = timeframe_of(timeframe).bars_per_session * TRADING_DAYS_PER_YEAR
    excess = rets - ((1.0 + risk_free_rate) ** (1.0 / per_year) - 1.0)
    days = max((times[-1] - times[0]).total_seconds() / 86400, 1e-9)
    peak = np.maximum.accumulate(equity)
    dd = equity / peak - 1.0
    wins = [t.pnl for t in trades if t.pnl > 0]
    losses = [t.pnl for t in trades if t.pnl <= 0]
    downside = np.minimum(excess, 0.0)
    cagr = (end / start) ** (365.25 / days) - 1.0 if end > 0 and days >= 1 else float("nan")
    max_dd = float(dd.min())
    return {
        "total_return": end / start - 1.0,
        "cagr": cagr,
        "sharpe": _ratio(excess.mean(), excess.std(), per_year) if len(rets) > 1 else float("nan"),
        "sortino": (_ratio(excess.mean(), math.sqrt((downside**2).mean()), per_year) if len(rets) > 1
                    else float("nan")),
        "calmar": cagr / -max_dd if max_dd < 0 and math.isfinite(cagr) else float("nan"),
        "max_drawdown": max_dd,
        "max_drawdown_bars": _longest_underwater(dd),
        "win_rate": len(wins) / len(trades) if trades else float("nan"),
        "profit_factor": (sum(wins) / -sum(losses) if losses and sum(losses) < 0
                          else float("inf") if wins else float("nan")),
        "avg_win": float(np.mean(wins)) if wins else float("nan"),
        "avg_loss": float(np.mean(losses)) if losses else float("nan"),
        "exposure": float(in_market.mean()) if len(in_market) else 0.0,
        "trades": len(trades),
        "turnover": traded_value / float(np.mean(equity)),
        "buy_and_hold_return": last_close / first_open - 1.0,
        "final_equity": end,
        "open_positions": open_positions,
        "risk_free_rate": risk_free_rate,
    }


def _ratio(mean: float, dev: float, per_year: int) -> float:
    if not dev or not math.isfinite(dev):
        return float("nan")
    return float(mean / dev * math.sqrt(per_year))


def _longest_underwater(dd: np.ndarray) -> int:
    """The longest run of bars below a peak."""
    under = np.r_[False, np.asarray(dd) < 0, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(under))  # starts and ends of the runs, in pairs
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0
