"""Risk rules as pure functions: facts in, a decision and its reason out.

Every order that opens or adds to a position passes :func:`check_entry`; no
other path sizes an entry. Exits (stops, end of day, flatten) only ever
reduce risk, so they are checked by :func:`check_exit` for sanity alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from app.engine.settings import Settings
from app.engine.types import Position, RiskDecision, Side


@dataclass(frozen=True, slots=True)
class RiskContext:
    """Everything the rules need to know, captured at one instant."""

    symbol: str
    side: Side
    price: float
    equity: float
    buying_power: float
    positions: tuple[Position, ...]
    day_start_equity: float | None  # None: not known yet (the broker could not be read)
    round_trips_today: int
    market_open: bool
    minutes_to_close: float | None
    data_stale: bool = False
    breaker_tripped: bool = False
    working_cost: float = 0.0  # what the entries still working will cost: cash already spoken for
    record_failing: str = ""  # why the trading record cannot be written ("" while it can)


def exposure(positions: tuple[Position, ...]) -> float:
    return sum(abs(p.qty) * p.last_price for p in positions)


def breaker_should_trip(equity: float, day_start_equity: float, limit: float) -> bool:
    """True once the day's loss reaches ``limit`` of the day's starting equity."""
    if day_start_equity <= 0:
        return False
    return (equity - day_start_equity) / day_start_equity <= -limit


def check_entry(ctx: RiskContext, s: Settings) -> RiskDecision:
    """Whether a new position may be opened, and with how many shares."""
    refusal = entry_refusal(ctx, s)
    if refusal:
        return RiskDecision(False, refusal)
    qty = size_position(ctx, s)
    if qty <= 0:
        return RiskDecision(False, "position size rounds to zero shares within the limits")
    return RiskDecision(True, f"size {qty:g} shares", qty)


def entry_refusal(ctx: RiskContext, s: Settings) -> str:
    """Why no new position may be opened now, whatever its size ("" when one may)."""
    if not (math.isfinite(ctx.price) and ctx.price > 0):
        return f"invalid price {ctx.price}"
    if not (math.isfinite(ctx.equity) and ctx.equity > 0):
        return "account equity is not positive"
    if ctx.side == Side.SELL:
        return "the app trades long only (long-only): a sell never opens a position"
    if ctx.record_failing:
        return f"the trading record cannot be written ({ctx.record_failing}): no new positions"
    if not ctx.market_open:
        return "market is closed"
    if ctx.data_stale:
        return "market data is stale"
    if ctx.day_start_equity is None:
        return "the day's starting equity is not known yet (the broker could not be read)"
    if ctx.breaker_tripped or breaker_should_trip(ctx.equity, ctx.day_start_equity, s.daily_loss_limit):
        return f"daily loss limit of {s.daily_loss_limit:.0%} reached (circuit breaker)"
    if ctx.minutes_to_close is not None and ctx.minutes_to_close <= s.no_entry_minutes_before_close:
        return f"no new entries in the last {s.no_entry_minutes_before_close} minutes before the close"
    if any(p.symbol == ctx.symbol and p.qty != 0 for p in ctx.positions):
        return f"already holding {ctx.symbol}"
    if sum(1 for p in ctx.positions if p.qty != 0) >= s.max_positions:
        return f"already at the maximum of {s.max_positions} open positions"
    if ctx.round_trips_today >= s.max_round_trips:
        return f"already {ctx.round_trips_today} round trips today (limit {s.max_round_trips})"
    return ""


def check_plain(ctx: RiskContext, s: Settings) -> RiskDecision:
    """The textbook backtest's rule: the whole available cash, nothing else.
    Only for ``--plain`` backtests; never used with a live broker."""
    if not (math.isfinite(ctx.price) and ctx.price > 0):
        return RiskDecision(False, f"invalid price {ctx.price}")
    if any(p.symbol == ctx.symbol and p.qty != 0 for p in ctx.positions):
        return RiskDecision(False, f"already holding {ctx.symbol}")
    cash = ctx.buying_power - ctx.working_cost  # two signals of one bar close never share one cash twice
    qty = math.floor(max(cash, 0.0) / (ctx.price * (1 + s.slippage_bps / 10_000)) + 1e-9)
    if qty <= 0:
        return RiskDecision(False, "not enough cash for one share")
    return RiskDecision(True, f"whole cash: {qty} shares", float(qty))


def size_position(ctx: RiskContext, s: Settings) -> float:
    """Shares to buy: risk budget over stop distance, capped by every limit."""
    risk_budget = ctx.equity * s.risk_per_trade
    per_share_risk = ctx.price * s.stop_loss_pct
    qty = risk_budget / per_share_risk
    qty = min(qty, ctx.equity * s.max_position_pct / ctx.price)
    room = ctx.equity * s.max_exposure_pct - exposure(ctx.positions)
    qty = min(qty, max(room, 0.0) / ctx.price)
    # leave room for slippage so a market order cannot overdraw the account
    qty = min(qty, max(ctx.buying_power, 0.0) / (ctx.price * (1 + s.slippage_bps / 10_000 + 0.001)))
    if not s.fractional:
        return float(math.floor(qty + 1e-9))
    return math.floor(qty * 1e4) / 1e4


def check_exit(position: Position | None, qty: float) -> RiskDecision:
    """An exit may only reduce what is held."""
    if position is None or position.qty <= 0:
        return RiskDecision(False, "nothing held to sell")
    if qty <= 0:
        return RiskDecision(False, "exit quantity must be positive")
    return RiskDecision(True, "reduces risk", min(qty, position.qty))


def initial_stop(entry: float, s: Settings) -> float:
    return round(entry * (1 - s.stop_loss_pct), 4)


def update_trailing(p: Position, price: float, s: Settings) -> Position:
    """Raise the high-water mark; once up ``trailing_start_pct`` trail the stop by
    ``trailing_pct``. A stop only ever moves up."""
    high = max(p.high_water or p.avg_price, price)
    active = p.trailing_active or high >= p.avg_price * (1 + s.trailing_start_pct)
    stop = p.stop_price if p.stop_price is not None else initial_stop(p.avg_price, s)
    if active:
        stop = max(stop, round(high * (1 - s.trailing_pct), 4))
    return p.marked(price, stop, active, high)


def exit_reason(p: Position, price: float, s: Settings) -> str:
    """Why a position must be closed at ``price`` now, or '' to keep it."""
    if p.stop_price is not None and price <= p.stop_price:
        return "trailing stop" if p.trailing_active else "stop loss"
    if s.take_profit_pct > 0 and price >= p.avg_price * (1 + s.take_profit_pct):
        return "take profit"
    return ""
