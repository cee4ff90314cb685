"""What a backtest is asked to do, and the names it accepts: light enough for the
window to import at start-up (no pandas, no models)."""

from __future__ import annotations

from dataclasses import dataclass

from app.engine.settings import MIN_RETRAIN_BARS, field_bounds

STRATEGIES = ("sma_cross", "momentum", "rules", "ensemble")


class BacktestCancelled(RuntimeError):
    """The progress callback asked to stop; the partial run is thrown away."""


@dataclass(frozen=True)
class BacktestConfig:
    symbol: str = "PLTR"
    timeframe: str = "5m"
    strategy: str = "sma_cross"
    cash: float = 100_000.0
    commission_per_share: float = 0.0
    commission_rate: float = 0.0  # a fraction of traded value
    slippage_bps: float = 0.0
    plain: bool = False
    retrain_every: int = 0  # ensemble: 0 = the saved model; N = walk forward, retrained every N bars


def commission_terms(amount: float, mode: str) -> tuple[float, float]:
    """One commission as the user gives it -> (dollars per share, fraction of traded value)."""
    if mode not in ("per_share", "fraction"):
        raise ValueError(f"commission mode {mode!r}: per_share or fraction")
    return (amount, 0.0) if mode == "per_share" else (0.0, amount)


def check_retrain_every(every: int, strategy: str) -> None:
    """0 (the saved model), or from MIN_RETRAIN_BARS up to the setting's maximum; ensemble only."""
    most = field_bounds("backtest_retrain_bars")["max"]
    if every != 0 and not MIN_RETRAIN_BARS <= every <= most:
        raise ValueError(f"retrain every N bars: N must be 0 (the saved model) or from {MIN_RETRAIN_BARS} "
                         f"to {most:,} (got {every})")
    if every and strategy != "ensemble":
        raise ValueError(f"retraining every N bars applies to the ensemble only, not to {strategy}")
