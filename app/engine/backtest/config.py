"""What a backtest is asked to do, and the names it accepts: light enough for the
window to import at start-up (no pandas, no models)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from app.engine.settings import MIN_RETRAIN_BARS, Settings, field_bounds

STRATEGIES = ("sma_cross", "momentum", "rules", "ensemble")
STRATEGY_PARAMS = {"sma_cross": ("fast", "slow")}  # a strategy's own parameters an optimisation may search
MAXIMIZE = ("sharpe", "sortino", "calmar", "total_return", "profit_factor", "win_rate")  # what it may maximise


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


MAX_PER_SHARE = 1.0  # dollars of commission a share: 200 times what US brokers charge
MAX_FRACTION = 0.1  # of traded value: 10% a trade
MAX_SLIPPAGE_BPS = 100.0  # 1% a fill: the setting's own bound


def check_costs(commission: float, mode: str, slippage_bps: float, cash: float, flags: bool = False) -> None:
    """One line for costs a backtest cannot mean: nan or inf, negative, or past the bounds.
    ``flags``: name them as the command line's flags (--commission), else in words."""
    cash_, fee, slip = ("--cash", "--commission", "--slippage-bps") if flags else ("cash", "commission", "slippage")
    if not all(math.isfinite(v) for v in (cash, commission, slippage_bps)):
        raise ValueError(f"{cash_}, {fee} and {slip} must be numbers (not nan or inf)")
    bounds = field_bounds("starting_cash")  # the account's own bounds, said before any file is read
    if not bounds["min"] <= cash <= bounds["max"]:
        raise ValueError(f"{cash_} {cash:,.10g}: from {bounds['min']:,.0f} to {bounds['max']:,.0f}")
    if commission < 0 or slippage_bps < 0:
        raise ValueError(f"{fee} and {slip} must not be negative")
    if mode == "fraction" and commission >= MAX_FRACTION:
        raise ValueError(f"{fee} {commission:g} as a fraction is {commission:.0%} of each trade: a fraction "
                         f"below {MAX_FRACTION:g} (0.001 is 0.1%)")
    if mode == "per_share" and commission > MAX_PER_SHARE:
        raise ValueError(f"{fee} {commission:.10g} dollars a share: at most {MAX_PER_SHARE:g} (US brokers charge "
                         "0 to 0.005; for a fraction of traded value use the fraction mode)")
    if slippage_bps > MAX_SLIPPAGE_BPS:
        raise ValueError(f"{slip} {slippage_bps:g} bps is {slippage_bps / 100:g}% a fill: at most "
                         f"{MAX_SLIPPAGE_BPS:g} bps")


def settings_used(cfg: BacktestConfig, settings: Settings) -> dict[str, Any]:
    """What a run used, for the report and the JSON: its costs and, unless plain, the product's
    rules from the saved settings (a plain run has none: the whole cash, no stops or limits)."""
    used: dict[str, Any] = {
        "slippage_bps": cfg.slippage_bps,
        "commission_per_share": cfg.commission_per_share,
        "commission_rate": cfg.commission_rate,
        "risk_free_rate": settings.risk_free_rate,
    }
    if cfg.plain:
        return used | {"rules": "plain: whole cash per trade, no stops, limits or session rules"}
    return used | {name: getattr(settings, name) for name in RULES}


RULES = ("auto_threshold", "weight_lstm", "weight_rf", "weight_hist_gb", "weight_momentum", "risk_per_trade",
         "max_positions",
         "max_position_pct", "max_exposure_pct", "daily_loss_limit", "stop_loss_pct", "trailing_start_pct",
         "trailing_pct", "eod_flatten", "flatten_minutes_before_close")


def describe_used(used: dict[str, Any]) -> list[str]:
    """The report's lines for :func:`settings_used`."""
    per_share, rate = used["commission_per_share"], used["commission_rate"]
    commission = f"{rate:.3%} of traded value" if rate else f"${per_share:g} a share"
    lines = [f"costs: slippage {used['slippage_bps']:g} bps a fill, commission {commission}; "
             f"risk-free rate {used['risk_free_rate']:.2%} a year"]
    if "rules" in used:
        return [*lines, used["rules"]]
    weights = "/".join(f"{used[k]:g}" for k in ("weight_lstm", "weight_rf", "weight_hist_gb", "weight_momentum"))
    lines.append(f"rules: trades at confidence >= {used['auto_threshold']:.2f} (weights LSTM/forest/boosting/momentum "
                 f"{weights}); risk {used['risk_per_trade']:.1%} a trade, at most {used['max_positions']} "
                 f"positions of {used['max_position_pct']:.0%}, exposure {used['max_exposure_pct']:.0%}, "
                 f"daily loss limit {used['daily_loss_limit']:.1%}; stop {used['stop_loss_pct']:.1%}, "
                 f"trailing {used['trailing_pct']:.1%} from +{used['trailing_start_pct']:.1%}; "
                 + (f"flat {used['flatten_minutes_before_close']} min before the close" if used["eod_flatten"]
                    else "held overnight"))
    return lines


def heat_color(score: float, lo: float, hi: float) -> str:
    """Red (worst) through dark to green (best); grey where nothing ran."""
    if score == float("inf"):
        return "#1e9e50"  # no losing trade: at least as good as the best finite cell
    if not math.isfinite(score):
        return "#2a2d33"
    t = 0.5 if hi <= lo else (score - lo) / (hi - lo)
    red, green = (int(200 * (1 - t)) + 30, int(170 * t) + 30)
    return f"#{red:02x}{green:02x}40"
