"""Risk rules: whatever the market and the account look like, an accepted entry
stays inside every limit; refusals say why; stops only ever move up."""

from __future__ import annotations

from dataclasses import replace

import pytest
from conftest import utc
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.engine import risk
from app.engine.risk import RiskContext
from app.engine.settings import Settings
from app.engine.types import Position, Side

T0 = utc(2025, 3, 4, 15, 0)


def ctx(**over: object) -> RiskContext:
    base = RiskContext(symbol="PLTR", side=Side.BUY, price=20.0, equity=100_000.0,
                       buying_power=100_000.0, positions=(), day_start_equity=100_000.0,
                       round_trips_today=0, market_open=True, minutes_to_close=120.0)
    return replace(base, **over)  # type: ignore[arg-type]


def pos(symbol: str, qty: float, price: float) -> Position:
    return Position(symbol, qty, price, price, T0)


# ------------------------------------------------------------ invariants
prices = st.floats(min_value=0.5, max_value=5_000.0)
money = st.floats(min_value=1_000.0, max_value=5_000_000.0)
other_positions = st.lists(
    st.tuples(st.sampled_from(["AAPL", "MSFT", "NVDA", "AMD", "TSLA", "META", "AMZN"]),
              st.floats(min_value=1, max_value=2_000), st.floats(min_value=1.0, max_value=500.0)),
    max_size=7, unique_by=lambda t: t[0],
).map(lambda ts: tuple(pos(s, q, p) for s, q, p in ts))
risk_settings = st.builds(
    Settings,
    risk_per_trade=st.floats(0.001, 0.05),
    max_positions=st.integers(1, 8),
    max_position_pct=st.floats(0.01, 1.0),
    max_exposure_pct=st.floats(0.01, 1.0),
    stop_loss_pct=st.floats(0.005, 0.20),
    slippage_bps=st.floats(0.0, 100.0),
    fractional=st.booleans(),
)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(price=prices, equity=money, buying_power=st.floats(0.0, 5_000_000.0),
       positions=other_positions, s=risk_settings)
def test_an_accepted_entry_never_breaks_a_limit(price: float, equity: float, buying_power: float,
                                                positions: tuple[Position, ...], s: Settings) -> None:
    c = ctx(price=price, equity=equity, buying_power=buying_power, positions=positions,
            day_start_equity=equity)
    d = risk.check_entry(c, s)
    if not d.accepted:
        assert d.qty == 0 and d.reason
        return
    cost = d.qty * price
    tol = 1e-6 * max(equity, cost)  # float rounding only
    assert d.qty > 0
    assert s.fractional or float(d.qty).is_integer()
    assert cost <= equity * s.max_position_pct + tol
    assert risk.exposure(positions) + cost <= equity * s.max_exposure_pct + tol
    assert cost * (1 + s.slippage_bps / 10_000) <= buying_power  # slippage cannot overdraw
    assert len(positions) < s.max_positions
    # and the risked amount at the stop is within the risk budget
    assert cost * s.stop_loss_pct <= equity * s.risk_per_trade + tol


@settings(max_examples=150, deadline=None, database=None)
@given(price=prices, equity=money, s=risk_settings)
def test_a_held_symbol_or_a_full_book_is_always_refused(price: float, equity: float, s: Settings) -> None:
    held = ctx(price=price, equity=equity, buying_power=equity, day_start_equity=equity,
               positions=(pos("PLTR", 1, price),))
    assert not risk.check_entry(held, s).accepted
    full = tuple(pos(f"S{i}", 1, 1.0) for i in range(s.max_positions))
    d = risk.check_entry(ctx(price=price, equity=equity, buying_power=equity, day_start_equity=equity,
                             positions=full), s)
    assert not d.accepted and "maximum" in d.reason


@settings(max_examples=200, deadline=None, database=None)
@given(market_open=st.booleans(), stale=st.booleans(), breaker=st.booleans(),
       minutes_to_close=st.one_of(st.none(), st.floats(0.0, 390.0)),
       day_change=st.floats(-0.2, 0.2), round_trips=st.integers(0, 20),
       holding=st.booleans(), s=risk_settings)
def test_an_entry_is_accepted_only_when_every_gate_is_open(
        market_open: bool, stale: bool, breaker: bool, minutes_to_close: float | None,
        day_change: float, round_trips: int, holding: bool, s: Settings) -> None:
    assume(abs(day_change + s.daily_loss_limit) > 1e-9)  # not exactly on the limit (float rounding)
    c = ctx(market_open=market_open, data_stale=stale, breaker_tripped=breaker,
            minutes_to_close=minutes_to_close, equity=100_000.0 * (1 + day_change),
            buying_power=100_000.0 * (1 + day_change), round_trips_today=round_trips,
            positions=(pos("PLTR", 5, 20.0),) if holding else ())
    d = risk.check_entry(c, s)
    gates_open = (market_open and not stale and not breaker and not holding
                  and (minutes_to_close is None or minutes_to_close > s.no_entry_minutes_before_close)
                  and day_change > -s.daily_loss_limit and round_trips < s.max_round_trips)
    if not gates_open:
        assert not d.accepted
    else:
        assert d.accepted or "zero shares" in d.reason


# --------------------------------------------------------------- sizing
def test_sizing_example_is_capped_at_twenty_percent() -> None:
    # the 2% risk budget over a 3% stop would buy 3333 shares; the 20% cap allows 1000
    d = risk.check_entry(ctx(price=20.0), Settings())
    assert d.accepted and d.qty == 1000


def test_sizing_by_risk_budget_when_the_cap_is_loose() -> None:
    s = Settings(max_position_pct=1.0, max_exposure_pct=1.0, slippage_bps=0.0)
    # 2% of 100k = 2000 at risk; a 3% stop on $20 risks $0.60 a share
    assert risk.check_entry(ctx(price=20.0), s).qty == 3333


def test_buying_power_limits_the_size() -> None:
    d = risk.check_entry(ctx(price=20.0, buying_power=5_000.0), Settings())
    assert d.accepted and d.qty * 20.0 <= 5_000.0 and d.qty >= 240


def test_exposure_room_limits_the_size() -> None:
    s = Settings(max_exposure_pct=0.5)
    held = (pos("AAPL", 200, 200.0),)  # 40k of a 50k exposure budget
    d = risk.check_entry(ctx(positions=held), s)
    assert d.accepted and d.qty == 500


# ------------------------------------------------------------ refusals
@pytest.mark.parametrize(
    ("over", "words"),
    [
        ({"market_open": False}, "market is closed"),
        ({"minutes_to_close": 15.0}, "last 15 minutes"),
        ({"minutes_to_close": 3.0}, "last 15 minutes"),
        ({"breaker_tripped": True}, "daily loss limit"),
        ({"equity": 94_000.0, "buying_power": 94_000.0}, "daily loss limit"),  # -6% on the day
        ({"data_stale": True}, "stale"),
        ({"positions": (pos("PLTR", 10, 20.0),)}, "already holding"),
        ({"round_trips_today": 10}, "round trips"),
        ({"side": Side.SELL}, "long-only"),
        ({"price": float("nan")}, "invalid price"),
        ({"price": 0.0}, "invalid price"),
        ({"equity": 0.0}, "equity"),
        ({"buying_power": 10.0}, "zero shares"),
    ],
)
def test_entries_are_refused_with_a_reason(over: dict[str, object], words: str) -> None:
    d = risk.check_entry(ctx(**over), Settings())
    assert not d.accepted and d.qty == 0
    assert words in d.reason


def test_entries_allowed_just_outside_the_no_entry_window() -> None:
    assert risk.check_entry(ctx(minutes_to_close=15.5), Settings()).accepted


def test_breaker_trips_at_the_limit_not_before() -> None:
    assert not risk.breaker_should_trip(95_100.0, 100_000.0, 0.05)
    assert risk.breaker_should_trip(95_000.0, 100_000.0, 0.05)
    assert risk.breaker_should_trip(90_000.0, 100_000.0, 0.05)
    assert not risk.breaker_should_trip(90_000.0, 0.0, 0.05)


def test_exit_only_reduces_what_is_held() -> None:
    p = pos("PLTR", 100, 20.0)
    assert not risk.check_exit(None, 10).accepted
    assert not risk.check_exit(p, 0).accepted
    assert risk.check_exit(p, 500).qty == 100


# --------------------------------------------------------------- stops
def held(avg: float = 100.0) -> Position:
    s = Settings()
    return Position("PLTR", 10, avg, avg, T0, stop_price=risk.initial_stop(avg, s), high_water=avg)


def test_initial_stop_is_three_percent_below_entry() -> None:
    assert risk.initial_stop(20.0, Settings()) == pytest.approx(19.4)


def test_trailing_activates_at_plus_five_percent_and_trails_by_two() -> None:
    s = Settings()
    p = risk.update_trailing(held(), 104.9, s)
    assert not p.trailing_active and p.stop_price == pytest.approx(97.0)
    p = risk.update_trailing(p, 105.0, s)
    assert p.trailing_active and p.stop_price == pytest.approx(102.9)
    p = risk.update_trailing(p, 110.0, s)
    assert p.stop_price == pytest.approx(107.8)
    p = risk.update_trailing(p, 106.0, s)  # a pull-back leaves the stop where it was
    assert p.stop_price == pytest.approx(107.8) and p.trailing_active and p.high_water == 110.0


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.floats(min_value=50.0, max_value=200.0), min_size=1, max_size=40))
def test_a_stop_only_ever_moves_up(path: list[float]) -> None:
    s = Settings()
    p = held()
    for price in path:
        moved = risk.update_trailing(p, price, s)
        assert moved.stop_price is not None and p.stop_price is not None
        assert moved.stop_price >= p.stop_price
        assert moved.stop_price < max(moved.high_water, 0) or not moved.trailing_active
        assert moved.trailing_active >= p.trailing_active  # once on, it stays on
        p = moved
    assert p.trailing_active == (max(path) >= 105.0)


def test_exit_reasons() -> None:
    s = Settings()
    p = held()
    assert risk.exit_reason(p, 97.5, s) == ""
    assert risk.exit_reason(p, 97.0, s) == "stop loss"
    trailing = risk.update_trailing(p, 110.0, s)
    assert risk.exit_reason(trailing, 107.8, s) == "trailing stop"
    assert risk.exit_reason(p, 130.0, s) == ""  # take profit off by default
    tp = s.updated(take_profit_pct=0.08)
    assert risk.exit_reason(p, 107.9, tp) == ""
    assert risk.exit_reason(p, 108.0, tp) == "take profit"
