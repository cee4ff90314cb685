"""Labels that are the bot's trade: walked with its own stop, trailing stop, take-profit and
end-of-day flatten, after costs, never across the close, and with causal inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.engine.clock import NY
from app.engine.data.frame import make_frame
from app.engine.ml.dataset import build_dataset
from app.engine.ml.labels import TradeRules, primary_signal, trade_outcomes
from app.engine.settings import Settings

FREE = TradeRules(cost_bps=0.0)


def session_bars(days: int = 2, price: float = 100.0) -> pd.DataFrame:
    """Flat 5-minute sessions (09:30-16:00 New York) at ``price``; tests bend single bars."""
    starts = [pd.Timestamp(f"2026-03-0{2 + d} 09:30", tz=NY) for d in range(days)]
    idx = pd.DatetimeIndex([s + pd.Timedelta(minutes=5 * i) for s in starts for i in range(78)]).tz_convert("UTC")
    n = len(idx)
    c = np.full(n, price)
    return pd.DataFrame({"open": c.copy(), "high": c + 0.05, "low": c - 0.05, "close": c.copy(),
                         "volume": np.full(n, 1_000.0)}, index=idx)


def test_the_initial_stop_ends_the_trade_at_the_stop_after_costs() -> None:
    bars = session_bars()
    bars.iloc[10, bars.columns.get_loc("low")] = 96.0  # through the 3% stop at 97
    out = trade_outcomes(bars, True, TradeRules(cost_bps=4.0))
    assert out.ret[0] == pytest.approx(97 / 100 - 1 - 4e-4) and out.exit_pos[0] == 10 and out.win[0] == 0
    assert out.exit_pos[9] == 10, "a trade entered at bar 10's open is stopped in it"


def test_a_gap_through_the_stop_fills_at_the_open_not_the_stop() -> None:
    bars = session_bars()
    bars.iloc[10, [bars.columns.get_loc(k) for k in ("open", "low")]] = [95.0, 94.0]
    out = trade_outcomes(bars, True, FREE)
    assert out.ret[0] == pytest.approx(95 / 100 - 1)


def test_the_trailing_stop_follows_the_high_from_the_next_bar() -> None:
    bars = session_bars()
    col = bars.columns.get_loc
    bars.iloc[5, col("high")] = 106.0  # +6%: the trail (2% under the high) starts at 103.88
    bars.iloc[6, [col("open"), col("low")]] = [105.0, 103.0]  # the next bar opens above it, falls through
    out = trade_outcomes(bars, True, FREE)
    assert out.exit_pos[0] == 6 and out.ret[0] == pytest.approx(106 * 0.98 / 100 - 1)
    same_bar = session_bars()
    same_bar.iloc[5, [col("high"), col("low")]] = [106.0, 103.0]  # high and low in one bar: order unknown
    assert trade_outcomes(same_bar, True, FREE).exit_pos[0] != 5, "never stopped by a trail raised in-bar"


def test_take_profit_when_set_and_a_stop_in_the_same_bar_counts_as_the_stop() -> None:
    bars = session_bars()
    col = bars.columns.get_loc
    bars.iloc[8, col("high")] = 104.5
    rules = TradeRules(cost_bps=0.0, take_profit_pct=0.04)
    out = trade_outcomes(bars, True, rules)
    assert out.exit_pos[0] == 8 and out.ret[0] == pytest.approx(0.04) and out.win[0] == 1
    bars.iloc[8, col("low")] = 96.0
    assert trade_outcomes(bars, True, rules).ret[0] == pytest.approx(-0.03)


def test_no_label_crosses_the_close_and_none_is_entered_near_it() -> None:
    bars = session_bars()
    bars.iloc[76, bars.columns.get_loc("close")] = 101.0  # the 15:50 bar: the last that ends by 15:55
    out = trade_outcomes(bars, True, FREE)
    day = pd.DatetimeIndex(bars.index).tz_convert(NY).date
    known = np.flatnonzero(out.exit_pos >= 0)
    assert (day[out.exit_pos[known]] == day[known]).all(), "every trade ends the day it began"
    assert out.exit_pos[0] == 76 and out.ret[0] == pytest.approx(0.01), "flattened at 15:55"
    # the 15:35 bar's close (15:40) is the last entry signal: the desk refuses one with 15 minutes to go
    assert np.isfinite(out.ret[73]) and np.isnan(out.ret[74:78]).all()
    assert np.isnan(out.ret[-4:]).all() and np.isfinite(out.ret[78:78 + 73]).all()


def test_a_daily_trade_is_held_from_the_next_open_until_an_exit_ends_it() -> None:
    """The desk flattens intraday positions only: a daily one lives until its stops end it."""
    idx = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=4)).tz_localize("UTC")
    bars = pd.DataFrame({"open": [10, 10, 10.9, 10.6], "high": [10, 11, 11.2, 10.7],
                         "low": [10, 9.8, 10.7, 10.4], "close": [10, 10.8, 11, 10.5]}, index=idx, dtype=float)
    out = trade_outcomes(bars, False, FREE)
    # day two's high (+10%) starts the trail at 10.78; day three falls through it
    assert out.ret[0] == pytest.approx(0.078) and out.exit_pos[0] == 2
    assert out.ret[1] == pytest.approx(-0.03) and out.exit_pos[1] == 3, "bought at 10.90, stopped at 10.573"
    assert np.isnan(out.ret[2:]).all() and list(out.exit_pos[2:]) == [-1, -1], "the data ends first: no label"
    capped = trade_outcomes(bars, False, TradeRules(cost_bps=0.0, max_bars=1))
    assert capped.ret[2] == pytest.approx(10.5 / 10.6 - 1) and capped.exit_pos[2] == 3, "a one-day time stop"


def test_rewriting_later_bars_changes_no_earlier_label_s_inputs_and_no_label_past_its_exit() -> None:
    rng = np.random.default_rng(4)
    bars = session_bars(days=5)
    walk = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, len(bars))))
    bars["open"], bars["close"] = np.r_[100, walk[:-1]], walk
    bars["high"] = np.maximum(bars["open"], bars["close"]) * 1.001
    bars["low"] = np.minimum(bars["open"], bars["close"]) * 0.999
    frame = make_frame(bars.index, *(bars[k].to_numpy() for k in ("open", "high", "low", "close", "volume")))
    ds = build_dataset(frame, "5m")
    cut = 200
    later = frame.copy()
    later.iloc[cut:, :4] *= 1.5
    ds2 = build_dataset(later, "5m")
    assert np.array_equal(ds.X[:cut], ds2.X[:cut], equal_nan=True), "features read no later bar"
    assert np.array_equal(ds.primary[:cut], ds2.primary[:cut])
    done = (ds.exit_pos >= 0) & (ds.exit_pos < cut)
    assert done[:100].any() and np.array_equal(ds.ret[done], ds2.ret[done]), "a label reads only to its exit"


def test_the_primary_rule_is_the_rules_model_s_buy() -> None:
    from app.engine.strategy.rules import RulesModel

    rng = np.random.default_rng(2)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    fires = primary_signal(close)
    rules = RulesModel()
    calls = [rules.predict(close[: i + 1]) for i in range(300)]
    said = np.array([c is not None and c.p_up > 0.5 for c in calls])
    assert not fires[:19].any() and np.array_equal(fires[20:], said[20:])  # the rules model wants 21 closes


def test_the_desk_s_settings_are_the_labels_exits_and_costs() -> None:
    s = Settings(stop_loss_pct=0.02, slippage_bps=3.0, commission_per_share=0.01, take_profit_pct=0.05)
    rules = TradeRules.from_settings(s, max_bars=6)
    assert (rules.stop_pct, rules.take_profit_pct, rules.max_bars) == (0.02, 0.05, 6)
    assert rules.cost_bps == 6.0 and rules.commission_per_share == 0.01
    cheap, dear = session_bars(price=5.0), session_bars(price=500.0)
    # a cent a share in and out is 40 bps of a $5 stock and 0.4 bps of a $500 one
    assert trade_outcomes(cheap, True, rules).ret[0] == pytest.approx(-6e-4 - 0.02 / 5)
    assert trade_outcomes(dear, True, rules).ret[0] == pytest.approx(-6e-4 - 0.02 / 500)
    bars = session_bars()
    bars.iloc[20, bars.columns.get_loc("close")] = 101.0
    capped = trade_outcomes(bars, True, TradeRules(cost_bps=0.0, max_bars=6))
    assert capped.exit_pos[14] == 20 and capped.ret[14] == pytest.approx(0.01), "a time stop of six bars"


def test_a_session_whose_last_bars_are_missing_has_no_flatten_to_label_with() -> None:
    """Real data once ended a day at 10:30 (an upstream gap): the flatten was inferred at
    10:25, a close the desk would never see. The close comes from the NYSE calendar."""
    bars = session_bars(days=2).drop(index=session_bars(days=2).index[20:78])  # day one ends at 11:05
    bars.iloc[5, bars.columns.get_loc("low")] = 96.0  # a stop inside what is there
    out = trade_outcomes(bars, True, FREE)
    assert out.exit_pos[0] == 5 and out.ret[0] == pytest.approx(-0.03), "a trade stopped early keeps its label"
    assert np.isnan(out.ret[6:20]).all(), "held to a flatten the data does not reach: no label"
    assert np.isfinite(out.ret[20:20 + 73]).all(), "the next, whole session is labelled"


def test_a_half_day_flattens_before_its_early_close() -> None:
    start = pd.Timestamp("2025-11-28 09:30", tz=NY)  # the day after Thanksgiving: the close is at 13:00
    idx = pd.DatetimeIndex([start + pd.Timedelta(minutes=5 * i) for i in range(42)]).tz_convert("UTC")
    c = np.full(42, 50.0)
    c[40] = 51.0  # the 12:50 bar: the last that ends by 12:55
    bars = pd.DataFrame({"open": 50.0, "high": c + 0.01, "low": c - 0.01, "close": c}, index=idx)
    out = trade_outcomes(bars, True, FREE)
    assert out.exit_pos[0] == 40 and out.ret[0] == pytest.approx(0.02)
    assert np.isfinite(out.ret[37]) and np.isnan(out.ret[38:]).all(), "the 12:35 bar signals the last entry"
