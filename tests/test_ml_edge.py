"""The edge gate: a model is granted an edge only by its own out-of-sample numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from app.engine.ml.edge import MIN_TRADES, assess, deflated_sharpe
from app.engine.ml.ensemble import PlattCalibrator

SLOPE = PlattCalibrator(1.2, 0.0, 1_000)


def oof(n: int = 2_000, skill: float = 0.0, seed: int = 1, scale: float = 1.0, mean: float = 0.0,
        payoff: tuple[float, float] = (80.0, -80.0)) -> pd.DataFrame:
    """Out-of-fold rows of the primary rule's trades: returns after costs of 1% sd, and a
    P(profit) that reads them with ``skill``; the expected return from the stated payoff."""
    rng = np.random.default_rng(seed)
    ret = rng.normal(mean, 0.01, n)
    z = skill * ret / 0.01 + rng.normal(0.0, 1.0, n)
    p = 1 / (1 + np.exp(-scale * z))
    cal = p.copy()
    cal[: n // 4] = np.nan  # the first fold has no calibration of its own
    return pd.DataFrame({"y": (ret > 0).astype(float), "ret": ret, "primary": True, "ensemble": p,
                         "ensemble_calibrated": cal, "expected_bps": cal * payoff[0] + (1 - cal) * payoff[1],
                         "always_up": 0.5})


def test_a_planted_edge_is_granted_with_its_numbers() -> None:
    v = assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    s = v.out_of_sample
    assert v.edge, v.reason
    assert s["rank_ic_ci"][0] > 0 and s["auc"] > 0.6 and s["trades"] >= MIN_TRADES
    assert s["expectancy_bps"] > s["rules_expectancy_bps"] and s["expectancy_bps"] > 0
    assert s["ece_constant_baseline"] is not None and 0 <= s["deflated_sharpe"] <= 1
    assert v == assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1), "pinned bootstrap"


def test_noise_is_refused_because_its_interval_includes_zero() -> None:
    v = assess(oof(skill=0.0, scale=3.0), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    assert not v.edge and "includes 0" in v.reason
    lo, hi = v.out_of_sample["rank_ic_ci"]
    assert lo <= 0 <= hi


def test_a_flat_calibrator_is_no_edge_whatever_else_it_shows() -> None:
    """Slope 0 states the base rate on every bar: a constant P(up) that must never trade."""
    for cal in (PlattCalibrator(0.0, 0.1, 500), None):
        v = assess(oof(skill=1.5), cal, threshold=0.7, cost_bps=4.0, horizon=1)
        assert not v.edge and ("flat" in v.reason or "calibrate" in v.reason)


def test_too_few_gated_trades_or_costs_that_eat_the_edge_are_no_edge() -> None:
    shy = assess(oof(skill=1.5, scale=0.15), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    assert not shy.edge and "out-of-sample trades reach P(profit) 70%" in shy.reason
    costly = oof(skill=1.5)
    costly["ret"] -= 0.05  # costs that eat every trade (the labels' returns are after costs)
    v = assess(costly, SLOPE, threshold=0.7, cost_bps=500.0, horizon=1)
    assert not v.edge and "no profit" in v.reason


def test_a_trade_expected_to_lose_after_costs_never_counts() -> None:
    """However high its P(profit), a trade whose wins pay nothing after costs expects a loss: none counts."""
    v = assess(oof(skill=1.5, payoff=(0.0, -100.0)), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    assert v.out_of_sample["trades"] == 0 and not v.edge and "positive expected return" in v.reason


def test_no_better_than_the_primary_rule_alone_is_no_edge() -> None:
    rows = oof(mean=0.002)
    ret = rows["ret"].to_numpy()
    p = np.where(ret < 0, 0.1, np.where(ret < 0.003, 0.9, 0.5))  # it picks the small winners only
    rows["ensemble"] = p
    rows["ensemble_calibrated"] = np.where(rows["ensemble_calibrated"].notna(), p, np.nan)
    rows["expected_bps"] = rows["ensemble_calibrated"] * 80 - (1 - rows["ensemble_calibrated"]) * 80
    v = assess(rows, SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    s = v.out_of_sample
    assert s["rank_ic_ci"][0] > 0 and s["trades"] >= MIN_TRADES and s["expectancy_bps"] > 0
    assert not v.edge and "no better than the rule without it" in v.reason


def test_only_the_primary_rule_s_bars_are_judged() -> None:
    rows = oof(skill=1.5)
    rows["primary"] = np.arange(len(rows)) % 2 == 0
    v = assess(rows, SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    assert v.out_of_sample["bars"] == len(rows) // 2 and v.out_of_sample["rules_trades"] <= len(rows) // 2


def test_every_score_carries_its_interval_and_its_constant_baseline() -> None:
    s = assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1).out_of_sample
    for name in ("auc", "ic", "rank_ic", "brier", "log_loss"):
        lo, hi = s[f"{name}_ci"]
        assert lo is not None and lo <= s[name] <= hi, name
    assert s["brier"] < s["brier_constant_baseline"] and s["log_loss"] < s["log_loss_constant_baseline"]


def test_the_deflated_sharpe_falls_as_more_configurations_were_tried() -> None:
    r = np.random.default_rng(3).normal(0.001, 0.01, 200)
    one, many = deflated_sharpe(r, 1), deflated_sharpe(r, 1_000)
    assert one is not None and many is not None and 0 < many < one < 1
    assert deflated_sharpe(np.array([1.0, 1.0]), 1) is None


def test_a_file_made_of_copies_of_one_stretch_is_no_edge() -> None:
    """Out-of-sample bars that repeat the training bars (a file pasted together from scaled
    copies) let a model score on what it memorised: once granted an edge of +215 bps a trade."""
    rng = np.random.default_rng(5)
    stretch = np.cumsum(rng.normal(0, 0.02, 900))
    close = 20 * np.exp(np.concatenate([stretch, stretch + stretch[-1], stretch + 2 * stretch[-1]]))
    from app.engine.ml.edge import repeated_share

    assert repeated_share(close, 1_800) > 0.9
    walk = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, 2_700)))
    assert repeated_share(walk, 1_800) == 0.0
    v = assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1, repeated=0.95)
    assert not v.edge and "repeat sequences of its training bars" in v.reason


def test_a_verdict_edited_by_hand_is_checked_against_the_numbers_saved_beside_it() -> None:
    from app.engine.ml.edge import recheck

    v = assess(oof(skill=0.0, scale=3.0), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    meta = {"edge": True, "out_of_sample": v.out_of_sample, "calibrator": SLOPE.to_dict()}
    assert not v.edge and "say otherwise" in (recheck(meta) or "")
    good = assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    assert recheck({"edge": True, "out_of_sample": good.out_of_sample, "calibrator": SLOPE.to_dict()}) is None
    assert "missing" in (recheck({"edge": True}) or "")


def test_copies_jittered_or_under_another_symbol_s_name_are_caught_and_real_prices_are_not() -> None:
    rng = np.random.default_rng(9)
    from app.engine.ml.edge import repeated_share

    walk = np.exp(np.cumsum(rng.normal(0, 0.02, 300)))
    tiled = np.concatenate([walk * walk[-1] ** k for k in range(5)]) * np.exp(rng.normal(0, 2e-5, 1_500))
    assert repeated_share(tiled, 750) > 0.5, "five copies of one stretch, each price jittered by 0.002%"
    a = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, 1_500)))
    b = 3 * a[750:]  # another "symbol": the second half of the first, tripled
    assert repeated_share(b, 300) == 0.0, "alone it is new"
    assert repeated_share(b, 300, others=[(a, 1_500)]) > 0.9, "beside the symbol it was copied from it is not"
    c = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, 1_500)))
    assert repeated_share(c, 750, others=[(a, 750)]) == 0.0


def test_a_saved_verdict_missing_a_number_or_with_an_edited_pooled_verdict_is_refused() -> None:
    from app.engine.ml.edge import recheck

    good = assess(oof(skill=1.5), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    noise = assess(oof(skill=0.0, scale=3.0), SLOPE, threshold=0.7, cost_bps=4.0, horizon=1)
    cal = SLOPE.to_dict()
    trimmed = {k: v for k, v in good.out_of_sample.items() if k != "repeated_share"}
    assert "incomplete (no repeated_share)" in (recheck({"out_of_sample": trimmed, "calibrator": cal}) or "")
    copy = {"symbols": ["A", "B"], "out_of_sample": good.out_of_sample, "calibrator": cal}
    assert "pooled verdict" in (recheck(copy) or "")
    assert "say otherwise" in (recheck({**copy, "pooled": noise.to_dict()}) or "")
    assert recheck({**copy, "pooled": good.to_dict()}) is None
