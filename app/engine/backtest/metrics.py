"""Performance metrics of a backtest, from its equity curve and its trades."""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np

from app.engine.types import Trade, timeframe_of

TRADING_DAYS_PER_YEAR = 252


def compute_metrics(equity: np.ndarray, times: list[datetime], trades: list[Trade], timeframe: str,
                    in_market: np.ndarray, first_open: float, last_close: float,
                    traded_value: float) -> dict[str, float | int | str]:
    start, end = float(equity[0]), float(equity[-1])
    rets = np.diff(equity) / equity[:-1] if len(equity) > 1 else np.zeros(0)
    per_year = timeframe_of(timeframe).bars_per_session * TRADING_DAYS_PER_YEAR
    days = max((times[-1] - times[0]).total_seconds() / 86400, 1e-9)
    peak = np.maximum.accumulate(equity)
    dd = equity / peak - 1.0
    wins = [t.pnl for t in trades if t.pnl > 0]
    losses = [t.pnl for t in trades if t.pnl <= 0]
    downside = rets[rets < 0]
    return {
        "total_return": end / start - 1.0,
        "cagr": (end / start) ** (365.25 / days) - 1.0 if end > 0 and days >= 1 else float("nan"),
        "sharpe": _ratio(rets.mean(), rets.std(), per_year) if len(rets) > 1 else float("nan"),
        "sortino": _ratio(rets.mean(), math.sqrt((downside**2).mean()) if len(downside) else 0.0, per_year),
        "max_drawdown": float(dd.min()),
        "max_drawdown_bars": _longest_underwater(dd),
        "win_rate": len(wins) / len(trades) if trades else float("nan"),
        "profit_factor": (sum(wins) / -sum(losses) if losses and sum(losses) < 0
                          else float("inf") if wins else float("nan")),
        "avg_win": float(np.mean(wins)) if wins else 0.0,
        "avg_loss": float(np.mean(losses)) if losses else 0.0,
        "exposure": float(in_market.mean()) if len(in_market) else 0.0,
        "trades": len(trades),
        "turnover": traded_value / float(np.mean(equity)),
        "buy_and_hold_return": last_close / first_open - 1.0,
        "final_equity": end,
    }


def _ratio(mean: float, dev: float, per_year: int) -> float:
    if not dev or not math.isfinite(dev):
        return float("nan")
    return float(mean / dev * math.sqrt(per_year))


def _longest_underwater(dd: np.ndarray) -> int:
    longest = run = 0
    for under in dd < 0:
        run = run + 1 if under else 0
        longest = max(longest, run)
    return longest
